"""The ML-DSA part of ``keyless demo``: a site with an ML-DSA-65 certificate and a classical one of the same
names, and a tlslite-ng client (the one common TLS client that offers mldsa44/65/87) doing a full keyless TLS 1.3
handshake against the ML-DSA certificate, in a subprocess like every other demo client.

tlslite-ng 0.9.0b2 with dilithium-py is a dev dependency, not a runtime one: without it the demo says so and
skips that row.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys

MLDSA_SITE_KEY = "mldsa65"
MLDSA_SITE_PREFIX = "pq"  # pq.<hostname>: the ML-DSA-65 certificate and, for clients without ML-DSA, ECDSA

TLSLITE_CLIENT = r"""
import socket, sys
from tlslite.api import TLSConnection, HandshakeSettings
settings = HandshakeSettings()
settings.minVersion = settings.maxVersion = (3, 4)
if len(sys.argv) > 3:  # a key share for this group only (as Chromium sends X25519MLKEM768 first)
    settings.eccCurves = [sys.argv[3], "x25519"]
    settings.keyShares = [sys.argv[3]]
conn = TLSConnection(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60))
conn.handshakeClientCert(serverName=sys.argv[2], settings=settings)
certificate = conn.session.serverCertChain.x509List[0].certAlg
conn.write(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % sys.argv[2]).encode())
body = b""
while True:
    try:
        chunk = conn.read()
    except Exception:
        break
    if not chunk:
        break
    body += chunk
print(certificate, "page" if b"Hello through a keyless edge" in body else "no-page")
"""


def tlslite_unavailable() -> str | None:
    """Why the tlslite-ng row cannot run, or None when it can."""
    try:
        version = importlib.metadata.version("tlslite-ng")
    except importlib.metadata.PackageNotFoundError:
        return "tlslite-ng is not installed (pip install 'tlslite-ng==0.9.0b2' dilithium-py)"
    if not version.startswith("0.9"):
        return f"tlslite-ng {version} has no ML-DSA (needs 0.9.0b2)"
    if importlib.util.find_spec("dilithium_py") is None:
        return "tlslite-ng's ML-DSA needs dilithium-py (pip install dilithium-py)"
    return None


def tlslite_run(port: int, host: str, *group: str) -> tuple[str, str]:
    """A full TLS 1.3 handshake and one GET by tlslite-ng (offering ``group`` first when given): the
    certificate's algorithm and whether the page came through, or ``RuntimeError``."""
    result = subprocess.run([sys.executable, "-c", TLSLITE_CLIENT, str(port), host, *group], capture_output=True,
                            timeout=120)
    out = result.stdout.decode(errors="replace").split()
    if result.returncode != 0 or len(out) != 2:
        last = (result.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"tlslite-ng failed: {last}")
    certificate, page = out
    if page != "page":
        raise RuntimeError("the page did not come through")
    return certificate, page


def tlslite_handshake(port: int, host: str) -> str:
    """The ML-DSA row: tlslite-ng against the ML-DSA-65 certificate; what it negotiated, or ``RuntimeError``."""
    certificate, _ = tlslite_run(port, host)
    if certificate != MLDSA_SITE_KEY:
        raise RuntimeError(f"got the {certificate} certificate, not ML-DSA-65")
    return "TLSv1.3 mldsa65 CertificateVerify (the key server signed the 64-byte μ)"


__all__ = ["MLDSA_SITE_KEY", "MLDSA_SITE_PREFIX", "tlslite_handshake", "tlslite_run", "tlslite_unavailable"]
