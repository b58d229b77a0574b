"""Full TLS 1.3 handshakes of our engine against Python's OpenSSL client, in memory (no sockets)."""

from __future__ import annotations

import ssl

import pytest

from keyless.tls.config import ServerConfig, static_certificate
from keyless.tls.events import ApplicationData, ConnectionClosed, HandshakeComplete, KeyOperationRequired
from tests.tls.tls13_helpers import HOSTNAME, KEY_KINDS, client_context, exchange, server_config, site

SUITES = {
    "TLS_AES_128_GCM_SHA256": "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384": "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256": "TLS_CHACHA20_POLY1305_SHA256",
}


def complete_event(ex_events: list[object]) -> HandshakeComplete:
    done = [e for e in ex_events if isinstance(e, HandshakeComplete)]
    assert len(done) == 1, ex_events
    return done[0]


def test_default_handshake_and_echo() -> None:
    ex = exchange(server_config())
    ex.handshake()
    info = complete_event(ex.events)
    assert info.version == 0x0304
    assert info.cipher_suite == "TLS_AES_128_GCM_SHA256"
    assert info.group == "x25519"
    assert info.sni == HOSTNAME
    assert not info.resumed
    assert info.key_operations == 1
    assert ex.key_operations == 1
    assert ex.client.version() == "TLSv1.3"
    ex.client_write(b"ping")
    assert [e for e in ex.events if isinstance(e, ApplicationData)] == [ApplicationData(b"ping")]
    ex.conn.send(b"pong" * 10000)
    ex.server_step()
    received = b""
    while len(received) < 40000:
        received += ex.client_read()
    assert received == b"pong" * 10000


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_cipher_suite(suite: str) -> None:
    # Python ssl cannot restrict TLS 1.3 suites; restrict the server instead.
    from keyless.tls.suites import TLS13_SUITES_BY_CODE

    chosen = tuple(s for s in TLS13_SUITES_BY_CODE.values() if s.name == suite)
    ex = exchange(server_config(tls13_cipher_suites=chosen))
    ex.handshake()
    assert complete_event(ex.events).cipher_suite == suite
    cipher = ex.client.cipher()
    assert cipher is not None and cipher[0] == suite
    ex.client_write(b"x" * 20000)
    assert b"".join(e.data for e in ex.events if isinstance(e, ApplicationData)) == b"x" * 20000


@pytest.mark.parametrize(("group", "curve"), [("x25519", "X25519"), ("secp256r1", "prime256v1"),
                                              ("secp384r1", "secp384r1")])
def test_every_group(group: str, curve: str) -> None:
    ctx = client_context()
    ctx.set_ecdh_curve(curve)  # the client offers (and sends a share for) only this group
    ex = exchange(server_config(), ctx)
    ex.handshake()
    assert complete_event(ex.events).group == group


def test_hello_retry_request_when_no_usable_share() -> None:
    # The server only accepts P-384; OpenSSL sends an X25519 share first and must retry.
    ex = exchange(server_config(groups=(0x0018,)))
    ex.handshake()
    info = complete_event(ex.events)
    assert info.group == "secp384r1"
    assert info.key_operations == 1
    ex.client_write(b"after retry")
    assert ApplicationData(b"after retry") in ex.events


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_every_key_type(kind: str) -> None:
    ex = exchange(server_config(kind))
    ex.handshake()
    ops = [e for e in ex.events if isinstance(e, KeyOperationRequired)]
    assert len(ops) == 1
    expected = {
        "ecdsa-p256": "ECDSA_SECP256R1_SHA256",
        "ecdsa-p384": "ECDSA_SECP384R1_SHA384",
        "rsa-2048": "RSA_PSS_RSAE_SHA256",
        "rsa-pss": "RSA_PSS_PSS_SHA256",
        "ed25519": "ED25519",
    }[kind]
    assert ops[0].scheme is not None and ops[0].scheme.name == expected
    assert ops[0].key is site(kind)[0].key
    assert ops[0].data.startswith(b" " * 64 + b"TLS 1.3, server CertificateVerify\x00")


def test_alpn_negotiated_and_mismatch_refused() -> None:
    ctx = client_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    ex = exchange(server_config(alpn_protocols=("http/1.1",)), ctx)
    ex.handshake()
    assert complete_event(ex.events).alpn == "http/1.1"
    assert ex.client.selected_alpn_protocol() == "http/1.1"

    ctx = client_context()
    ctx.set_alpn_protocols(["spdy/3"])
    ex = exchange(server_config(alpn_protocols=("http/1.1",)), ctx)
    with pytest.raises(AssertionError):
        ex.handshake()
    closed = ex.events[-1]
    assert isinstance(closed, ConnectionClosed) and closed.alert_sent == 120
    with pytest.raises(ssl.SSLError, match="no application protocol"):
        ex.client.do_handshake()


def test_sni_reaches_certificate_callback() -> None:
    seen: list[str | None] = []
    certified = site("ecdsa-p256")[0]

    def callback(info: object) -> object:
        seen.append(info.server_name)  # type: ignore[attr-defined]
        return certified

    ex = exchange(ServerConfig(certificate_callback=callback))  # type: ignore[arg-type]
    ex.handshake()
    assert seen == [HOSTNAME]


def test_no_certificate_means_handshake_failure() -> None:
    ex = exchange(ServerConfig(certificate_callback=lambda info: None))
    with pytest.raises(AssertionError):
        ex.handshake()
    closed = ex.events[-1]
    assert isinstance(closed, ConnectionClosed) and closed.alert_sent == 40


def test_key_operation_error_is_handshake_failure() -> None:
    ex = exchange(server_config())
    try:
        ex.client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    ex.conn.receive_data(ex.to_server.read())
    event = ex.conn.next_event()
    assert isinstance(event, KeyOperationRequired)
    ex.conn.complete_key_operation(event.op_id, RuntimeError("key server down"))
    closed = ex.conn.next_event()
    assert isinstance(closed, ConnectionClosed) and closed.alert_sent == 40
    ex.to_client.write(ex.conn.data_to_send())
    with pytest.raises(ssl.SSLError):
        ex.client.do_handshake()


def test_close_notify_both_ways() -> None:
    ex = exchange(server_config())
    ex.handshake()
    ex.conn.close()
    ex.server_step()
    assert ex.client.read(10) == b""  # Python's SSLObject reports close_notify as EOF
    try:
        ex.client.unwrap()
    except ssl.SSLError:
        pass
    ex.server_step()
    assert isinstance(ex.events[-1], ConnectionClosed)
    assert ex.events[-1].alert_sent is None


def test_server_key_update_then_data() -> None:
    ex = exchange(server_config())
    ex.handshake()
    ex.conn.update_key(request_peer_update=True)
    ex.conn.send(b"after update")
    ex.server_step()
    assert ex.client_read() == b"after update"
    ex.client_write(b"client after update")  # the client updated its key as requested
    assert ApplicationData(b"client after update") in ex.events


def test_certified_key_precomputes() -> None:
    certified = site("rsa-2048")[0]
    assert certified.key_type == "rsa"
    assert certified.tls13_schemes[0] == 0x0804
    assert site("rsa-pss")[0].key_type == "rsa-pss"
    assert "key=" not in repr(certified)
    _ = static_certificate(certified)


def test_certificate_chain_with_intermediate() -> None:
    """The client trusts only the root: the handshake succeeds only if the intermediate is sent too."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from keyless.keys.local import LocalKey
    from keyless.tls.config import CertifiedKey
    from tests.tls.tls13_helpers import pki

    root = pki()
    now = datetime.datetime.now(datetime.UTC)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyless intermediate")])
    inter = (
        x509.CertificateBuilder().subject_name(inter_name).issuer_name(root.ca_cert.subject)
        .public_key(inter_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.ca_key.public_key()), critical=False)
        .sign(root.ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)]))
        .issuer_name(inter_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOSTNAME)]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(inter_key.public_key()), critical=False)
        .sign(inter_key, hashes.SHA256())
    )
    chained = CertifiedKey(chain=(leaf, inter), key=LocalKey(leaf_key))
    ex = exchange(ServerConfig(certificate_callback=static_certificate(chained)))
    ex.handshake()
    assert ex.client.getpeercert()["subject"] == ((("commonName", HOSTNAME),),)

    alone = CertifiedKey(chain=(leaf,), key=LocalKey(leaf_key))
    ex = exchange(ServerConfig(certificate_callback=static_certificate(alone)))
    with pytest.raises(ssl.SSLCertVerificationError):
        ex.handshake()


def test_certified_key_refuses_a_mismatched_key() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from keyless.keys.local import LocalKey
    from keyless.tls.config import CertifiedKey

    leaf = site("ecdsa-p256")[0].chain[0]
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="does not match"):
        CertifiedKey(chain=(leaf,), key=LocalKey(other))
    with pytest.raises(TypeError):
        CertifiedKey(chain=(leaf,), key=other)
