"""TLS 1.3 with the private key behind a real key-server process, through the client library
(``KeylessClient.remote_key``) and the asyncio adapter: a full handshake makes exactly one signature at
the key server, a resumed one none; Python's ssl and openssl s_client are the clients."""

from __future__ import annotations

import importlib
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from keyless.tls.config import CertifiedKey, ServerConfig, static_certificate
from keyless.tls.tickets import TicketKey, TicketKeyRing
from tests.conftest import require_tool
from tests.interop.test_tls12_interop import AdapterServer


def _client_library() -> Any:
    try:
        client = importlib.import_module("keyless.client")
    except ImportError:
        pytest.skip("keyless.client is not available yet")
    if not hasattr(client, "KeylessClient"):
        pytest.skip("keyless.client.KeylessClient (the client library) is not available yet")
    return client


def remote_adapter_server(client_library: Any, pki: Any, port: int, site: str) -> AdapterServer:
    """An ``AdapterServer`` whose key is remote; its client is closed on the server's loop at exit."""
    chain = tuple(x509.load_pem_x509_certificates(pki.site_cert(site).read_bytes()))
    server = AdapterServer(None)

    async def make_config() -> ServerConfig:
        # Built on the server's event loop: the client library's connections live there.
        ssl_context = client_library.make_ssl_context(pki.edge_cert, pki.edge_key, pki.ca)
        keyless_client = client_library.KeylessClient([f"127.0.0.1:{port}"], ssl_context)
        server.cleanups.append(keyless_client.close)
        return ServerConfig(
            certificate_callback=static_certificate(CertifiedKey(chain=chain, key=keyless_client.remote_key(chain[0]))),
            ticket_keys=TicketKeyRing([TicketKey.generate()]),
            enable_tls12=False,
        )

    server.make_config = make_config
    return server


@pytest.mark.parametrize("site", ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"])
def test_remote_key_openssl_resumption(tmp_path: Path, site: str) -> None:
    client_library = _client_library()
    openssl = require_tool("openssl")
    from keyless.pki import create_demo_pki
    from tests.support.keyserver import start_keyserver

    pki = create_demo_pki(tmp_path / "pki")
    session = tmp_path / "session.pem"
    with start_keyserver(pki, tmp_path) as keyserver:
        before = keyserver.sign_count()
        with remote_adapter_server(client_library, pki, keyserver.port, site) as server:
            base = [openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername", pki.hostname,
                    "-CAfile", str(pki.ca), "-verify_return_error", "-tls1_3", "-ign_eof"]
            first = subprocess.run([*base, "-sess_out", str(session)], input=b"one\n", capture_output=True,
                                   timeout=60)
            second = subprocess.run([*base, "-sess_in", str(session)], input=b"two\n", capture_output=True,
                                    timeout=60)
            done = server.wait_for(2)
        out1, out2 = first.stdout.decode(errors="replace"), second.stdout.decode(errors="replace")
        assert "New, TLSv1.3" in out1 and "Verification: OK" in out1, out1 + first.stderr.decode()
        assert "Reused, TLSv1.3" in out2, out2 + second.stderr.decode()
        assert [(d.resumed, d.key_operations) for d in done] == [(False, 1), (True, 0)]
        assert keyserver.sign_count() - before == 1


def test_remote_key_python_ssl_full_handshakes(tmp_path: Path) -> None:
    client_library = _client_library()
    from keyless.pki import create_demo_pki
    from tests.support.keyserver import start_keyserver

    pki = create_demo_pki(tmp_path / "pki")
    with start_keyserver(pki, tmp_path) as keyserver:
        before = keyserver.sign_count()
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        with remote_adapter_server(client_library, pki, keyserver.port, "ecdsa-p256") as server:
            import socket

            for _ in range(3):
                with socket.create_connection(("127.0.0.1", server.port)) as raw, ctx.wrap_socket(
                    raw, server_hostname=pki.hostname
                ) as tls:
                    tls.sendall(b"hello\n")
                    assert tls.recv(100) == b"hello\n"
                    assert tls.version() == "TLSv1.3"
            done = server.wait_for(3)
        assert [d.key_operations for d in done] == [1, 1, 1]
        assert keyserver.sign_count() - before == 3
