"""Headless Chromium loads a page through the edge; the page's content is checked.

Chromium trusts the edge's certificate through ``--ignore-certificate-errors-spki-list`` (the SHA-256 of
the leaf's SubjectPublicKeyInfo) — trust for exactly that key, not a blanket ignore — and resolves the
site's name to 127.0.0.1 with ``--host-resolver-rules``.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyless.pki import create_demo_pki
from tests.conftest import require_tool
from tests.edge.certs import make_pki
from tests.edge.edgeproc import EdgeProcess
from tests.edge.support import OriginProcess
from tests.support.keyserver import start_keyserver


def spki_pin(chain: Path) -> str:
    leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    der = leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def chromium_dump_dom(url: str, pins: list[str], host: str, profile: Path) -> subprocess.CompletedProcess[str]:
    binary = require_tool("chromium", "chromium")
    args = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--ignore-certificate-errors-spki-list={','.join(pins)}",
        f"--host-resolver-rules=MAP {host} 127.0.0.1",
        "--virtual-time-budget=5000",
        "--dump-dom",
        url,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=90)


@pytest.mark.parametrize("key", ["ecdsa-p256", "rsa-2048"])
def test_chromium_loads_page_through_keyless_edge(tmp_path: Path, key: str) -> None:
    """The site's key is on a key server; Chromium's full handshake makes exactly one key operation."""
    pki = create_demo_pki(tmp_path / "pki", "keyless.test")
    with start_keyserver(pki, tmp_path) as keyserver, OriginProcess() as origin:
        config = {
            "listen": [{"address": "127.0.0.1", "port": 0}],
            "metrics_addr": "127.0.0.1:0",
            "key_server_tls": {"client_cert": str(pki.edge_cert), "client_key": str(pki.edge_key), "ca": str(pki.ca)},
            "certificates": [
                {
                    "names": ["keyless.test"],
                    "chain": str(pki.site_cert(key)),
                    "key_servers": [f"127.0.0.1:{keyserver.port}"],
                }
            ],
            "origin": {"mode": "http", "address": f"127.0.0.1:{origin.port}"},
            "limits": {"drain_timeout": 2},
        }
        with EdgeProcess(config, tmp_path) as edge:
            before = keyserver.sign_count()
            result = chromium_dump_dom(
                f"https://keyless.test:{edge.port}/",
                [spki_pin(pki.site_cert(key))],
                "keyless.test",
                tmp_path / "profile",
            )
            assert '<h1 id="greeting">Hello through a keyless edge</h1>' in result.stdout, result.stderr[-2000:]
            assert edge.metric("keyless_edge_handshakes_total", version="TLSv1.3") >= 1
            assert keyserver.sign_count() > before


def test_chromium_with_local_key_ed25519_site_falls_back_cleanly(tmp_path: Path) -> None:
    """Chromium does not accept Ed25519 certificates: with an ECDSA site beside it on the same name,
    SNI + signature-scheme selection serves the ECDSA one and the page loads."""
    pki = make_pki(tmp_path / "pki")
    with OriginProcess() as origin:
        config = {
            "listen": [{"address": "127.0.0.1", "port": 0}],
            "metrics_addr": "127.0.0.1:0",
            "certificates": [
                {"names": ["both.edge.test"], "chain": str(pki.chain(k)), "key_file": str(pki.key(k))}
                for k in ("ed25519", "ecdsa")
            ],
            "origin": {"mode": "http", "address": f"127.0.0.1:{origin.port}"},
            "limits": {"drain_timeout": 2},
        }
        with EdgeProcess(config, tmp_path) as edge:
            pins = [spki_pin(pki.chain("ecdsa"))]
            result = chromium_dump_dom(f"https://both.edge.test:{edge.port}/", pins, "both.edge.test", tmp_path / "p")
            assert '<h1 id="greeting">Hello through a keyless edge</h1>' in result.stdout, result.stderr[-2000:]
