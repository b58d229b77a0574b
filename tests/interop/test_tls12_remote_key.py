"""TLS 1.2 with the private key behind a real key-server process, reached through the client library:
a full handshake makes exactly one key operation at the key server (a signature for ECDHE, a raw RSA
decryption for RSA key exchange), resumptions make none."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from keyless.tls.config import CertifiedKey, ServerConfig, static_certificate
from keyless.tls.tickets import TicketKey, TicketKeyRing
from tests.conftest import require_tool
from tests.interop.test_tls12_interop import AdapterServer


def _connect_remote_key() -> Any:
    try:
        client = importlib.import_module("keyless.client")
    except ImportError:
        pytest.skip("keyless.client is not available yet")
    factory = getattr(client, "connect_remote_key", None)
    if factory is None:
        pytest.skip("keyless.client.connect_remote_key (the client library) is not available yet")
    return factory


@pytest.mark.parametrize(
    ("site", "cipher", "enable_rsa_key_exchange"),
    [
        ("ecdsa-p256", "ECDHE-ECDSA-AES128-GCM-SHA256", False),
        ("rsa-2048", "ECDHE-RSA-AES256-GCM-SHA384", False),
        ("rsa-2048", "AES128-GCM-SHA256", True),
    ],
)
def test_remote_key_one_operation_per_full_handshake(
    tmp_path: Path, site: str, cipher: str, enable_rsa_key_exchange: bool
) -> None:
    import subprocess

    connect_remote_key = _connect_remote_key()
    openssl = require_tool("openssl")
    from keyless.pki import create_demo_pki
    from tests.support.keyserver import start_keyserver

    pki = create_demo_pki(tmp_path / "pki")
    with start_keyserver(pki, tmp_path) as keyserver:
        chain = tuple(x509.load_pem_x509_certificates(pki.site_cert(site).read_bytes()))

        async def make_config() -> ServerConfig:
            key = await connect_remote_key(
                chain[0],
                host="127.0.0.1",
                port=keyserver.port,
                ca=str(pki.ca),
                cert=str(pki.edge_cert),
                key=str(pki.edge_key),
            )
            return ServerConfig(
                certificate_callback=static_certificate(CertifiedKey(chain=chain, key=key)),
                ticket_keys=TicketKeyRing([TicketKey.generate()]),
                enable_rsa_key_exchange=enable_rsa_key_exchange,
            )

        before = keyserver.sign_count()
        with AdapterServer(None, make_config=make_config) as server:
            proc = subprocess.run(
                [
                    openssl,
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{server.port}",
                    "-servername",
                    pki.hostname,
                    "-CAfile",
                    str(pki.ca),
                    "-verify_return_error",
                    "-tls1_2",
                    "-cipher",
                    cipher,
                    "-reconnect",
                ],
                input=b"",
                capture_output=True,
                timeout=60,
            )
            done = server.wait_for(6)
        out = proc.stdout.decode(errors="replace")
        assert out.count("Reused, TLSv1.2") == 5, out + proc.stderr.decode(errors="replace")
        assert [d.resumed for d in done] == [False] + [True] * 5
        assert [d.key_operations for d in done] == [1, 0, 0, 0, 0, 0]
        assert keyserver.sign_count() - before == 1
