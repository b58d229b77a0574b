"""Optional client-certificate authentication (RFC 8446 §4.3.2, §4.4.2.4) and the OCSP staple."""

from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from keyless.tls.config import CertifiedKey, ServerConfig, static_certificate
from keyless.tls.events import ConnectionClosed, HandshakeComplete
from keyless.tls.tickets import TicketKey, TicketKeyRing
from tests.tls.tls13_helpers import client_context, client_identity, exchange, pki, server_config, site


def auth_config(**overrides: object) -> ServerConfig:
    return server_config(client_ca=(pki().ca_cert,), **overrides)  # type: ignore[arg-type]


def complete(events: list[object]) -> HandshakeComplete:
    return next(e for e in events if isinstance(e, HandshakeComplete))


def test_client_certificate_is_verified_and_reported() -> None:
    ctx = client_context()
    cert_path, key_path = client_identity()
    ctx.load_cert_chain(cert_path, key_path)
    ex = exchange(auth_config(), ctx)
    ex.handshake()
    info = complete(ex.events)  # type: ignore[arg-type]
    leaf = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert info.client_certificates[0] == leaf.public_bytes(serialization.Encoding.DER)  # OpenSSL adds the CA
    ex.client_write(b"authenticated")


def test_missing_client_certificate_is_certificate_required() -> None:
    ex = exchange(auth_config())
    with pytest.raises(AssertionError, match="server closed"):
        ex.handshake()
    closed = ex.events[-1]
    assert isinstance(closed, ConnectionClosed) and closed.alert_sent == 116


def test_optional_client_certificate() -> None:
    ex = exchange(auth_config(require_client_certificate=False))
    ex.handshake()
    assert complete(ex.events).client_certificates == ()  # type: ignore[arg-type]


def test_client_certificate_from_unknown_ca_is_unknown_ca(tmp_path: object) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    directory = pki().directory
    (directory / "stranger.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "stranger.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    ctx = client_context()
    ctx.load_cert_chain(directory / "stranger.pem", directory / "stranger.key")
    ex = exchange(auth_config(), ctx)
    with pytest.raises(AssertionError, match="server closed"):
        ex.handshake()
    closed = ex.events[-1]
    assert isinstance(closed, ConnectionClosed) and closed.alert_sent == 48  # unknown_ca, as OpenSSL


def test_client_identity_survives_resumption() -> None:
    ctx = client_context()
    cert_path, key_path = client_identity()
    ctx.load_cert_chain(cert_path, key_path)
    config = auth_config(ticket_keys=TicketKeyRing([TicketKey.generate()]))
    ex = exchange(config, ctx)
    ex.handshake()
    with pytest.raises(ssl.SSLWantReadError):
        ex.client.read(1)
    again = exchange(config, ctx, session=ex.client.session)
    again.handshake()
    info = complete(again.events)  # type: ignore[arg-type]
    assert info.resumed and info.client_certificates == complete(ex.events).client_certificates  # type: ignore[arg-type]


def ocsp_response_for(certified: CertifiedKey) -> bytes:
    authority = pki()
    now = datetime.datetime.now(datetime.UTC)
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=certified.chain[0], issuer=authority.ca_cert, algorithm=hashes.SHA256(),
        cert_status=ocsp.OCSPCertStatus.GOOD, this_update=now, next_update=now + datetime.timedelta(days=1),
        revocation_time=None, revocation_reason=None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, authority.ca_cert)
    return builder.sign(authority.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def stapled_config() -> tuple[ServerConfig, bytes]:
    base = site("ecdsa-p256")[0]
    response = ocsp_response_for(base)
    certified = CertifiedKey(chain=base.chain, key=base.key, ocsp_response=response)
    return ServerConfig(certificate_callback=static_certificate(certified)), response


def test_ocsp_staple_in_certificate_entry() -> None:
    config, response = stapled_config()
    certified = config.certificate_callback(None)  # type: ignore[arg-type]
    assert certified is not None
    assert response in certified.certificate_message_with_ocsp
    assert response not in certified.certificate_message
    ex = exchange(config, client_context())
    ex.handshake()  # Python's client does not ask for a staple: the plain message is used


def test_openssl_s_client_sees_the_staple() -> None:
    from tests.conftest import require_tool
    from tests.interop.test_tls13_clients import s_client
    from tests.interop.tls13_server_driver import EngineServer

    require_tool("openssl")
    config, _ = stapled_config()
    with EngineServer(config) as server:
        out = s_client(server.port, "-tls1_3", "-status", stdin=b"")
    assert "OCSP Response Status: successful" in out, out
    assert "Cert Status: good" in out, out
