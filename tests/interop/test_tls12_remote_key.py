"""TLS 1.2 with the private key behind a real key-server process, reached through the client library
(``KeylessClient.remote_key``): a full handshake makes exactly one key operation at the key server (a
signature for ECDHE, a raw RSA decryption for RSA key exchange), resumptions make none."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from keyless.tls.config import CertifiedKey, ServerConfig, static_certificate
from keyless.tls.tickets import TicketKey, TicketKeyRing
from tests.conftest import require, require_tool
from tests.interop.test_tls12_interop import AdapterServer


def _client_library() -> Any:
    """The client library, or a skip (a failure under KEYLESS_REQUIRE_ALL=1) while it is missing."""
    try:
        client = importlib.import_module("keyless.client")
    except ImportError:
        client = None
    require(hasattr(client, "KeylessClient"), "keyless.client.KeylessClient (the client library) is not available")
    return client


CASES = [
    ("ecdsa-p256", "ECDHE-ECDSA-AES128-GCM-SHA256", False),
    ("rsa-2048", "ECDHE-RSA-AES256-GCM-SHA384", False),
    ("rsa-2048", "AES128-GCM-SHA256", True),
]


@pytest.mark.parametrize(("site", "cipher", "enable_rsa_key_exchange"), CASES, ids=[c[1] for c in CASES])
def test_remote_key_one_operation_per_full_handshake(
    tmp_path: Path, site: str, cipher: str, enable_rsa_key_exchange: bool
) -> None:
    client_library = _client_library()
    openssl = require_tool("openssl")
    from keyless.pki import create_demo_pki
    from tests.support.keyserver import start_keyserver

    pki = create_demo_pki(tmp_path / "pki")
    with start_keyserver(pki, tmp_path) as keyserver:
        chain = tuple(x509.load_pem_x509_certificates(pki.site_cert(site).read_bytes()))

        cleanups: list[Any] = []

        async def make_config() -> ServerConfig:
            # Built on the server's event loop: the client's connections live there.
            ssl_context = client_library.make_ssl_context(pki.edge_cert, pki.edge_key, pki.ca)
            keyless_client = client_library.KeylessClient([f"127.0.0.1:{keyserver.port}"], ssl_context)
            cleanups.append(keyless_client.close)
            key = keyless_client.remote_key(chain[0])
            return ServerConfig(
                certificate_callback=static_certificate(CertifiedKey(chain=chain, key=key)),
                ticket_keys=TicketKeyRing([TicketKey.generate()]),
                enable_rsa_key_exchange=enable_rsa_key_exchange,
            )

        before = keyserver.sign_count()
        adapter = AdapterServer(None, make_config=make_config)
        adapter.cleanups = cleanups
        with adapter as server:
            command = [openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername", pki.hostname,
                       "-CAfile", str(pki.ca), "-verify_return_error", "-tls1_2", "-cipher", cipher, "-reconnect"]
            proc = subprocess.run(command, input=b"", capture_output=True, timeout=60)
            done = server.wait_for(6)
        out = proc.stdout.decode(errors="replace")
        assert out.count("Reused, TLSv1.2") == 5, out + proc.stderr.decode(errors="replace")
        assert [d.resumed for d in done] == [False] + [True] * 5
        assert [d.key_operations for d in done] == [1, 0, 0, 0, 0, 0]
        assert keyserver.sign_count() - before == 1
