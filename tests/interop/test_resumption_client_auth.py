"""Issue 12 §2, engine part: a session never resumes into a configuration that asks for a client certificate
unless the session itself carries one, and a resumed session keeps its client identity (it is inside the
ticket). Real ``openssl s_client`` sessions carried between two real servers that share ticket keys."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyless.tls.config import ServerConfig
from keyless.tls.events import HandshakeComplete
from keyless.tls.tickets import TicketKey, TicketKeyRing
from tests.interop.tls13_server_driver import EngineServer, ServedConnection
from tests.tls.tls13_helpers import HOSTNAME, client_identity, pki, server_config

RING = TicketKeyRing([TicketKey.generate()])
VERSIONS = {"tls13": "-tls1_3", "tls12": "-tls1_2"}


def config(*, client_ca: bool, required: bool = True) -> ServerConfig:
    return server_config(ticket_keys=RING, client_ca=(pki().ca_cert,) if client_ca else None,
                         require_client_certificate=required)


def s_client(port: int, version: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", HOSTNAME, "-CAfile",
         str(pki().ca_pem), "-ign_eof", VERSIONS[version], *args],
        input="hello\n", capture_output=True, text=True, timeout=30,
    )


def with_certificate() -> tuple[str, ...]:
    cert, key = client_identity()
    return ("-cert", str(cert), "-key", str(key))


def finished(server: EngineServer, count: int) -> list[ServedConnection]:
    """The first ``count`` connections once each has ended (polled: the server thread records them)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = [c for c in server.connections if c.complete is not None or c.closed is not None]
        if len(done) >= count:
            return done[:count]
        time.sleep(0.02)
    raise AssertionError(f"{len(server.connections)} connections, fewer than {count} ended")


@pytest.mark.parametrize("version", VERSIONS)
def test_a_session_without_a_certificate_does_not_resume_where_one_is_required(tmp_path: Path,
                                                                            version: str) -> None:
    session = tmp_path / "session.pem"
    with EngineServer(config(client_ca=False)) as open_site:
        first = s_client(open_site.port, version, "-sess_out", str(session))
        assert "hello" in first.stdout, first.stderr
    with EngineServer(config(client_ca=True)) as mtls_site:
        second = s_client(mtls_site.port, version, "-sess_in", str(session))
        (served,) = finished(mtls_site, 1)
    assert "Reused" not in second.stdout
    assert served.complete is None and served.closed is not None
    # TLS 1.3: certificate_required (RFC 8446 §4.4.2.4); TLS 1.2: handshake_failure (RFC 5246 §7.4.6)
    assert served.closed.alert_sent == (116 if version == "tls13" else 40)


@pytest.mark.parametrize("version", VERSIONS)
def test_optional_client_auth_does_a_full_handshake_for_such_a_session(tmp_path: Path, version: str) -> None:
    session = tmp_path / "session.pem"
    with EngineServer(config(client_ca=False)) as open_site:
        s_client(open_site.port, version, "-sess_out", str(session))
    with EngineServer(config(client_ca=True, required=False)) as optional_site:
        second = s_client(optional_site.port, version, "-sess_in", str(session))
        (served,) = finished(optional_site, 1)
    assert "New," in second.stdout and "Reused" not in second.stdout, second.stdout
    info = served.complete
    assert info is not None and not info.resumed and info.key_operations == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_a_resumed_session_keeps_its_client_identity(tmp_path: Path, version: str) -> None:
    session = tmp_path / "session.pem"
    leaf = x509.load_pem_x509_certificate(client_identity()[0].read_bytes()).public_bytes(serialization.Encoding.DER)
    with EngineServer(config(client_ca=True)) as mtls_site:
        first = s_client(mtls_site.port, version, *with_certificate(), "-sess_out", str(session))
        assert "hello" in first.stdout, first.stderr
        second = s_client(mtls_site.port, version, "-sess_in", str(session))  # no certificate offered now
        full, resumed = finished(mtls_site, 2)
    assert "Reused" in second.stdout, second.stdout
    assert isinstance(full.complete, HandshakeComplete) and isinstance(resumed.complete, HandshakeComplete)
    assert not full.complete.resumed and full.complete.client_certificates[0] == leaf
    assert resumed.complete.resumed and resumed.complete.key_operations == 0
    assert resumed.complete.client_certificates[0] == leaf
