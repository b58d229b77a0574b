"""ML-DSA certificates through a real key server: tlslite-ng 0.9.0b2 (which offers mldsa44/65/87) does full
TLS 1.3 handshakes against each ML-DSA certificate, the key server signing the external μ (one operation per
handshake, by its own counters); openssl and curl (no ML-DSA) get the classical certificate of the same names;
μ of the wrong length gets the key server's format error.

Every party is a real process on 127.0.0.1: key server, origin, edge, and the clients.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keyless.pki import DemoPKI, create_demo_pki
from tests.conftest import require_tool
from tests.edge.edgeproc import EdgeProcess
from tests.edge.support import OriginProcess, s_client_get
from tests.support.keyserver import KeyServerProcess, start_keyserver
from tests.support.waiting import wait_until

HOST = "keyless.test"
PARAMETER_SETS = ("mldsa44", "mldsa65", "mldsa87")

TLSLITE_CLIENT = r"""
import socket, sys
from tlslite.api import TLSConnection, HandshakeSettings
settings = HandshakeSettings()
settings.minVersion = (3, 4)
settings.maxVersion = (3, 4)
conn = TLSConnection(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
conn.handshakeClientCert(serverName=sys.argv[2], settings=settings)
print("version", conn.version)
print("certificate", conn.session.serverCertChain.x509List[0].certAlg)
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
print("body", body.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip())
"""


def require_tlslite_mldsa() -> None:
    """Dev dependencies, so missing ones fail (the client itself runs in a subprocess: no import here)."""
    try:
        version = importlib.metadata.version("tlslite-ng")
    except importlib.metadata.PackageNotFoundError:
        version = "none"
    if not version.startswith("0.9"):
        pytest.fail(f"tlslite-ng 0.9.0b2 is a dev dependency (found {version}): pip install -e '.[dev]'")
    if importlib.util.find_spec("dilithium_py") is None:
        pytest.fail("tlslite-ng's ML-DSA needs dilithium-py, a dev dependency: pip install -e '.[dev]'")


def edge_config(pki: DemoPKI, origin_port: int, key_server: str) -> dict[str, Any]:
    certificates = []
    for name in PARAMETER_SETS:  # each ML-DSA certificate and a classical one share the names
        names = [f"{name}.{HOST}"]
        certificates.append({"names": names, "chain": str(pki.site_cert(name)), "key_servers": [key_server]})
        certificates.append({"names": names, "chain": str(pki.site_cert("ecdsa-p256")), "key_servers": [key_server],
                             "default": name == "mldsa65"})
    return {
        "listen": [{"address": "127.0.0.1", "port": 0}],
        "metrics_addr": "127.0.0.1:0",
        "key_server_tls": {"client_cert": str(pki.edge_cert), "client_key": str(pki.edge_key), "ca": str(pki.ca),
                           "timeout": 60},
        "certificates": certificates,
        "origin": {"mode": "http", "address": f"127.0.0.1:{origin_port}"},
        "limits": {"drain_timeout": 2, "handshake_timeout": 60},
    }


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    return create_demo_pki(tmp_path_factory.mktemp("pki"), HOST, site_keys=("ecdsa-p256",), pq=True)


@pytest.fixture(scope="module")
def keyserver(pki: DemoPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyServerProcess]:
    with start_keyserver(pki, tmp_path_factory.mktemp("ks")) as ks:
        yield ks


@pytest.fixture(scope="module")
def edge(pki: DemoPKI, keyserver: KeyServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    before = keyserver.sign_count()
    with OriginProcess() as origin, EdgeProcess(
        edge_config(pki, origin.port, f"127.0.0.1:{keyserver.port}"), tmp_path_factory.mktemp("edge")
    ) as process:
        wait_until(lambda: process.status("/readyz") == 200, "/readyz to answer 200")
        # The edge's key check signs once per certificate in the background after start: let it finish, so
        # that the tests' counts of the key server's operations see only their own handshakes.
        sites = len(edge_config(pki, 0, "")["certificates"])
        wait_until(lambda: keyserver.sign_count() >= before + sites,
                   f"the edge's key check of its {sites} certificates")
        yield process


def requests_by_opcode(ks: KeyServerProcess, fragment: str) -> float:
    total = 0.0
    for line in ks.metrics().splitlines():
        if not line.startswith("keyless_requests") or 'opcode="' not in line:
            continue
        if line.split("{", 1)[0].endswith("_created"):
            continue
        if fragment in line.split('opcode="', 1)[1].split('"', 1)[0]:
            total += float(line.rpartition(" ")[2])
    return total


@pytest.mark.parametrize("name", PARAMETER_SETS)
def test_tlslite_full_tls13_handshake_against_the_mldsa_certificate(
    name: str, edge: EdgeProcess, keyserver: KeyServerProcess
) -> None:
    require_tlslite_mldsa()
    before, before_mu = keyserver.sign_count(), requests_by_opcode(keyserver, f"{name.upper()}_SIGN_MU")
    proc = subprocess.run([sys.executable, "-c", TLSLITE_CLIENT, str(edge.port), f"{name}.{HOST}"],
                          capture_output=True, timeout=240)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out + proc.stderr.decode(errors="replace")
    assert "version (3, 4)" in out, out
    assert f"certificate {name}" in out, out
    assert "Hello through a keyless edge" in out, out
    assert keyserver.sign_count() == before + 1
    assert requests_by_opcode(keyserver, f"{name.upper()}_SIGN_MU") == before_mu + 1


@pytest.mark.parametrize("name", PARAMETER_SETS)
def test_openssl_without_mldsa_gets_the_classical_certificate(
    name: str, edge: EdgeProcess, pki: DemoPKI, keyserver: KeyServerProcess
) -> None:
    before = requests_by_opcode(keyserver, "SIGN_MU")
    out = s_client_get(edge.port, pki.ca, f"{name}.{HOST}", "-tls1_3")
    assert "Verification: OK" in out and "Hello through a keyless edge" in out, out
    assert "Peer signature type: ECDSA" in out or "ecdsa_secp256r1_sha256" in out, out
    assert requests_by_opcode(keyserver, "SIGN_MU") == before


def test_curl_without_mldsa_gets_the_classical_certificate(edge: EdgeProcess, pki: DemoPKI) -> None:
    curl = require_tool("curl")
    host = f"mldsa65.{HOST}"
    proc = subprocess.run(
        [curl, "-sS", "--cacert", str(pki.ca), "--resolve", f"{host}:{edge.port}:127.0.0.1", "-w", "%{http_code}",
         f"https://{host}:{edge.port}/"], capture_output=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout.decode().endswith("200"), proc.stdout


@pytest.mark.parametrize("length", [0, 32, 63, 65, 200])
def test_mu_of_the_wrong_length_gets_the_key_servers_format_error(
    length: int, pki: DemoPKI, keyserver: KeyServerProcess
) -> None:
    from cryptography import x509

    from keyless.client import FormatError, KeylessClient, make_ssl_context
    from keyless.client.core import Request
    from keyless.keys.ski import ski_of

    ski = ski_of(x509.load_pem_x509_certificate(pki.site_cert("mldsa65").read_bytes()).public_key())

    async def call() -> BaseException | bytes:
        client = KeylessClient([f"127.0.0.1:{keyserver.port}"], make_ssl_context(pki.edge_cert, pki.edge_key, pki.ca))
        try:
            return await client.call(Request(0xC1, bytes(length), ski), timeout=60)
        except Exception as exc:
            return exc
        finally:
            await client.close()

    outcome = asyncio.run(call())
    assert isinstance(outcome, FormatError), outcome
    assert outcome.code == 0x07
    # and the key still signs a μ of the right length on the same key server
    async def good() -> bytes:
        client = KeylessClient([f"127.0.0.1:{keyserver.port}"], make_ssl_context(pki.edge_cert, pki.edge_key, pki.ca))
        try:
            return await client.call(Request(0xC1, bytes(64), ski), timeout=60)
        finally:
            await client.close()

    assert len(asyncio.run(good())) == 3309  # an ML-DSA-65 signature


def test_pki_pq_certificates_are_readable_by_ping(pki: DemoPKI, keyserver: KeyServerProcess) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "keyless", "ping", "--server", f"127.0.0.1:{keyserver.port}", "--pki",
         str(pki.directory), "--server-name", "localhost"], capture_output=True, timeout=120,
    )
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out + proc.stderr.decode(errors="replace")
    for name in PARAMETER_SETS:
        assert f"{name}.pem" in out and name in out, out
    assert out.count("signature verified") == 4, out


def test_bench_signs_with_an_mldsa_key(pki: DemoPKI, keyserver: KeyServerProcess) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "keyless", "bench", "-s", f"localhost:{keyserver.port}", "--pki", str(pki.directory),
         "--key-cert", str(pki.site_cert("mldsa65")), "-d", "1", "-w", "4", "--json", "-", "--quiet"],
        capture_output=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    report = json.loads(proc.stdout)
    assert report["errors"] == 0 and report["completed"] > 0, report
    assert "mldsa65" in report["operation"], report


def test_pki_init_pq_cli(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "keyless", "pki", "init", str(tmp_path / "pki"), "--pq"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ML-DSA CA" in proc.stdout
    for name in (*PARAMETER_SETS, "ecdsa-p256"):
        assert (tmp_path / "pki" / "certs" / f"{name}.pem").is_file()
        assert (tmp_path / "pki" / "keys" / f"{name}.key").stat().st_mode & 0o077 == 0
    assert (tmp_path / "pki" / "pq-ca.pem").is_file()


def test_tls12_clients_get_the_classical_certificate(edge: EdgeProcess, pki: DemoPKI) -> None:
    out = s_client_get(edge.port, pki.ca, f"mldsa87.{HOST}", "-tls1_2")  # TLS 1.2 has no ML-DSA at all
    assert "Verification: OK" in out and "Hello through a keyless edge" in out, out
    assert "ECDHE-ECDSA" in out, out
