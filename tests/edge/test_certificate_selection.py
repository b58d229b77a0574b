"""Issue 12 §1.8: several certificates on the same names, chosen by what the client offers (as nginx/OpenSSL).

A real edge process holds an ECDSA (default), an RSA and an Ed25519 certificate for the same names; real
clients (``openssl s_client``, Python ``ssl``) that can use only one kind must each get that kind, with and
without SNI, in TLS 1.3 and 1.2. Neighbours: a TLS 1.2 client whose groups exclude the ECDSA certificate's
curve, PKCS#1-only signature lists, RSA key exchange where it is enabled and where it is not.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.conftest import require_tool
from tests.edge.certs import SitePKI, make_pki
from tests.edge.edgeproc import EdgeProcess
from tests.edge.support import OriginProcess

NAME = "multi.edge.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SitePKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def origin() -> Iterator[OriginProcess]:
    with OriginProcess() as process:
        yield process


def config(pki: SitePKI, origin_port: int, *, rsa_key_exchange: bool) -> dict[str, Any]:
    def cert(kind: str, names: list[str], **extra: Any) -> dict[str, Any]:
        return {"names": names, "chain": str(pki.chain(kind)), "key_file": str(pki.key(kind)), **extra}

    return {
        "listen": [{"address": "127.0.0.1", "port": 0}],
        "metrics_addr": "127.0.0.1:0",
        "certificates": [
            cert("ecdsa", [NAME, "www.multi.edge.test"], default=True),  # the layout examples/edge.yaml shows
            cert("rsa", [NAME, "www.multi.edge.test"]),
            cert("ed25519", [NAME]),
            cert("ecdsa", ["solo.edge.test"]),
        ],
        "rsa_key_exchange": rsa_key_exchange,
        "origin": {"mode": "http", "address": f"127.0.0.1:{origin_port}"},
        "limits": {"drain_timeout": 1},
    }


@pytest.fixture(scope="module")
def edge(pki: SitePKI, origin: OriginProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    with EdgeProcess(config(pki, origin.port, rsa_key_exchange=False), tmp_path_factory.mktemp("edge")) as process:
        yield process


@pytest.fixture(scope="module")
def rsa_kx_edge(
    pki: SitePKI, origin: OriginProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EdgeProcess]:
    with EdgeProcess(config(pki, origin.port, rsa_key_exchange=True), tmp_path_factory.mktemp("edge")) as process:
        yield process


def s_client(port: int, pki: SitePKI, sni: str | None, *args: str) -> tuple[str | None, str]:
    """One ``openssl s_client`` handshake; (the leaf's CN, or None when it failed; the whole output)."""
    openssl = require_tool("openssl")
    name_args = ["-servername", sni] if sni else ["-noservername"]
    result = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", *name_args, "-CAfile", str(pki.ca),
         "-verify_return_error", "-brief", *args],
        input=b"", capture_output=True, timeout=30,
    )
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    match = re.search(r"Peer certificate: .*CN\s*=\s*([\w.]+)", output)
    if result.returncode != 0 or match is None or "CONNECTION ESTABLISHED" not in output:
        return None, output
    return match.group(1), output


TLS13 = ("-tls1_3",)
TLS12 = ("-tls1_2",)
# (label, s_client arguments, expected leaf: a key kind or None for a refused handshake)
CASES: list[tuple[str, tuple[str, ...], str | None]] = [
    ("1.3 any", TLS13, "ecdsa"),
    ("1.3 rsa_pss_rsae only", (*TLS13, "-sigalgs", "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384"), "rsa"),
    ("1.3 ecdsa only", (*TLS13, "-sigalgs", "ecdsa_secp256r1_sha256"), "ecdsa"),
    ("1.3 ed25519 only", (*TLS13, "-sigalgs", "ed25519"), "ed25519"),
    ("1.3 ecdsa P-384 only: nothing fits", (*TLS13, "-sigalgs", "ecdsa_secp384r1_sha384"), None),
    ("1.2 any", TLS12, "ecdsa"),
    ("1.2 ECDHE-RSA only", (*TLS12, "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"), "rsa"),
    ("1.2 ECDHE-RSA AES-256 only", (*TLS12, "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"), "rsa"),
    ("1.2 ECDHE-RSA ChaCha only", (*TLS12, "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"), "rsa"),
    ("1.2 ECDHE-ECDSA only", (*TLS12, "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"), "ecdsa"),
    (
        "1.2 both suites, PKCS#1 signatures only",
        (*TLS12, "-sigalgs", "RSA+SHA256:RSA+SHA384"),
        "rsa",
    ),
    (
        "1.2 both suites, groups without the ECDSA certificate's curve",
        (*TLS12, "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256", "-groups", "secp384r1",
         "-sigalgs", "ECDSA+SHA256:RSA+SHA256"),
        "rsa",
    ),
    (
        "1.2 both suites, P-384 only: Ed25519 has no curve to check",
        (*TLS12, "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256", "-groups", "secp384r1",
         "-sigalgs", "ed25519:RSA+SHA256"),
        "ed25519",
    ),
    ("1.2 RSA key exchange only, not enabled", (*TLS12, "-cipher", "AES128-GCM-SHA256"), None),
]


@pytest.mark.parametrize("sni", [NAME, "www.multi.edge.test", None], ids=["sni", "sni-second-name", "no-sni"])
@pytest.mark.parametrize(("label", "args", "expected"), CASES, ids=[c[0] for c in CASES])
def test_certificate_chosen_by_what_the_client_offers(
    edge: EdgeProcess, pki: SitePKI, sni: str | None, label: str, args: tuple[str, ...], expected: str | None
) -> None:
    if sni == "www.multi.edge.test" and expected == "ed25519":
        # The Ed25519 certificate is listed for multi.edge.test only: TLS 1.3 has nothing else; TLS 1.2 RSA.
        expected = "rsa" if "-tls1_2" in args else None
    cn, output = s_client(edge.port, pki, sni, *args)
    wanted = f"{expected}.edge.test" if expected else None
    assert cn == wanted, output


def test_names_with_one_certificate_keep_it(edge: EdgeProcess, pki: SitePKI) -> None:
    assert s_client(edge.port, pki, "solo.edge.test", *TLS12, "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")[0] is None
    assert s_client(edge.port, pki, "solo.edge.test", *TLS13)[0] == "ecdsa.edge.test"


@pytest.mark.parametrize("sni", [NAME, None], ids=["sni", "no-sni"])
def test_rsa_key_exchange_where_enabled(rsa_kx_edge: EdgeProcess, pki: SitePKI, sni: str | None) -> None:
    cn, output = s_client(rsa_kx_edge.port, pki, sni, *TLS12, "-cipher", "AES128-GCM-SHA256")
    assert cn == "rsa.edge.test", output
    assert "AES128-GCM-SHA256" in output
    # Forward secrecy still wins when the client offers it.
    both = "AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
    cn, output = s_client(rsa_kx_edge.port, pki, sni, *TLS12, "-cipher", both)
    assert cn == "rsa.edge.test" and "ECDHE-RSA-AES128-GCM-SHA256" in output, output


def leaf_cn(sock: ssl.SSLSocket) -> str:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    attribute = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0]
    return str(attribute.value)


@pytest.mark.parametrize(
    ("ciphers", "expected"),
    [("ECDHE-RSA-AES128-GCM-SHA256", "rsa.edge.test"), ("ECDHE-ECDSA-AES256-GCM-SHA384", "ecdsa.edge.test")],
)
def test_python_tls12_client_without_sni(edge: EdgeProcess, pki: SitePKI, ciphers: str, expected: str) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.check_hostname = False
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    raw = socket.create_connection(("127.0.0.1", edge.port), timeout=30)
    with context.wrap_socket(raw) as tls:  # no server_hostname: no SNI
        assert tls.version() == "TLSv1.2"
        assert leaf_cn(tls) == expected


def test_check_config_accepts_the_layout(pki: SitePKI, tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config(pki, 1, rsa_key_exchange=False)))
    result = subprocess.run(
        [sys.executable, "-m", "keyless", "edge", "--config", str(path), "--check-config"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and "configuration OK: 4 certificates" in result.stdout, result.stdout
