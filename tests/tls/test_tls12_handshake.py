"""TLS 1.2 handshakes of our engine against Python's OpenSSL client, in memory (no sockets)."""

from __future__ import annotations

import ssl

import pytest

from keyless.keys.base import KeyOperationError
from keyless.tls.alerts import AlertDescription
from keyless.tls.events import ApplicationData, ConnectionClosed, KeyOperationRequired
from keyless.tls.session_cache import MemorySessionCache
from keyless.tls.tickets import TicketKey, TicketKeyRing
from tests.tls.tls12_helpers import HOSTNAME, client_context12, exchange12, server_config

ECDHE_SUITES = [
    ("ecdsa-p256", "ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    ("ecdsa-p256", "ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    ("ecdsa-p256", "ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("rsa-2048", "ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("rsa-2048", "ECDHE-RSA-AES256-GCM-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    ("rsa-2048", "ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("ecdsa-p384", "ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    ("rsa-pss", "ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("ed25519", "ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
]
RSA_SUITES = [
    ("AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256"),
    ("AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384"),
]


def ring() -> TicketKeyRing:
    return TicketKeyRing([TicketKey.generate()])


@pytest.mark.parametrize(("kind", "openssl_name", "iana_name"), ECDHE_SUITES)
def test_ecdhe_suite_with_one_signature(kind: str, openssl_name: str, iana_name: str) -> None:
    ex = exchange12(server_config(kind), client_context12(openssl_name))
    ex.handshake()
    info = ex.complete
    assert (info.version, info.cipher_suite, info.resumed, info.key_operations) == (0x0303, iana_name, False, 1)
    assert info.sni == HOSTNAME and info.group == "x25519"
    assert ex.client.version() == "TLSv1.2" and ex.client.cipher()[0] == openssl_name
    ops = [e for e in ex.events if isinstance(e, KeyOperationRequired)]
    assert [op.kind for op in ops] == ["sign"]
    # What was signed: client_random + server_random + ECDHE params (named_curve x25519, 32-byte point).
    assert len(ops[0].data) == 64 + 4 + 32 and ops[0].data[64:67] == b"\x03\x00\x1d"
    ex.client_write(b"ping")
    assert [e.data for e in ex.events if isinstance(e, ApplicationData)] == [b"ping"]
    ex.conn.send(b"pong" * 5000)  # more than one record
    ex.server_step()
    received = b""
    while len(received) < 20000:
        received += ex.client_read()
    assert received == b"pong" * 5000


@pytest.mark.parametrize(("openssl_name", "iana_name"), RSA_SUITES)
def test_rsa_key_exchange_decrypts_once(openssl_name: str, iana_name: str) -> None:
    ex = exchange12(server_config("rsa-2048", enable_rsa_key_exchange=True), client_context12(openssl_name))
    ex.handshake()
    assert (ex.complete.cipher_suite, ex.complete.key_operations, ex.complete.group) == (iana_name, 1, None)
    ops = [e for e in ex.events if isinstance(e, KeyOperationRequired)]
    assert [(op.kind, op.scheme, len(op.data)) for op in ops] == [("decrypt", None, 256)]
    ex.client_write(b"over rsa kx")
    assert [e.data for e in ex.events if isinstance(e, ApplicationData)] == [b"over rsa kx"]


def test_rsa_key_exchange_is_off_by_default() -> None:
    ex = exchange12(server_config("rsa-2048"), client_context12("AES128-GCM-SHA256"))
    with pytest.raises((AssertionError, ssl.SSLError)):
        ex.handshake()
    closed = [e for e in ex.events if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].alert_sent == AlertDescription.handshake_failure


def test_ecdhe_preferred_over_rsa_key_exchange() -> None:
    ex = exchange12(server_config("rsa-2048", enable_rsa_key_exchange=True), client_context12())
    ex.handshake()
    assert ex.complete.cipher_suite == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"


@pytest.mark.parametrize("kind", ["ecdsa-p256", "rsa-2048"])
def test_ticket_resumption_makes_no_key_operation(kind: str) -> None:
    config = server_config(kind, ticket_keys=ring())
    ctx = client_context12()
    first = exchange12(config, ctx)
    first.handshake()
    first.client_write(b"x")  # the client processes the ticket
    assert first.complete.session_ticket_sent and first.client.session is not None
    second = exchange12(config, ctx, session=first.client.session)
    second.handshake()
    assert second.client.session_reused
    info = second.complete
    assert (info.resumed, info.key_operations, info.cipher_suite) == (True, 0, first.complete.cipher_suite)
    assert not any(isinstance(e, KeyOperationRequired) for e in second.events)
    second.client_write(b"resumed")
    assert [e.data for e in second.events if isinstance(e, ApplicationData)] == [b"resumed"]


def test_session_id_resumption_makes_no_key_operation() -> None:
    config = server_config("ecdsa-p256", session_cache=MemorySessionCache())
    ctx = client_context12()
    ctx.options |= ssl.OP_NO_TICKET
    first = exchange12(config, ctx)
    first.handshake()
    assert not first.complete.session_ticket_sent
    second = exchange12(config, ctx, session=first.client.session)
    second.handshake()
    assert second.client.session_reused and second.complete.resumed and second.complete.key_operations == 0


def test_rsa_key_exchange_session_resumes() -> None:
    config = server_config("rsa-2048", enable_rsa_key_exchange=True, ticket_keys=ring())
    ctx = client_context12("AES256-GCM-SHA384")
    first = exchange12(config, ctx)
    first.handshake()
    first.client_write(b"x")
    second = exchange12(config, ctx, session=first.client.session)
    second.handshake()
    assert second.client.session_reused and second.complete.key_operations == 0


def test_resumption_refused_for_another_server_name() -> None:
    config = server_config("ecdsa-p256", ticket_keys=ring())
    ctx = client_context12(check_hostname=False)
    first = exchange12(config, ctx)
    first.handshake()
    first.client_write(b"x")
    other = exchange12(config, ctx, session=first.client.session, server_hostname="localhost")
    other.handshake()
    assert not other.complete.resumed and other.complete.key_operations == 1


def test_no_ticket_and_no_cache_means_full_handshakes() -> None:
    config = server_config("ecdsa-p256")
    ctx = client_context12()
    first = exchange12(config, ctx)
    first.handshake()
    first.client_write(b"x")
    second = exchange12(config, ctx, session=first.client.session)
    second.handshake()
    assert not second.client.session_reused and second.complete.key_operations == 1


def test_alpn_and_sni() -> None:
    ctx = client_context12()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    ex = exchange12(server_config("ecdsa-p256", alpn_protocols=("http/1.1",)), ctx)
    ex.handshake()
    assert ex.complete.alpn == "http/1.1" and ex.client.selected_alpn_protocol() == "http/1.1"
    assert ex.complete.sni == HOSTNAME


def test_no_common_alpn_is_fatal() -> None:
    ctx = client_context12()
    ctx.set_alpn_protocols(["h2"])
    ex = exchange12(server_config("ecdsa-p256", alpn_protocols=("http/1.1",)), ctx)
    with pytest.raises((AssertionError, ssl.SSLError)):
        ex.handshake()
    closed = [e for e in ex.events if isinstance(e, ConnectionClosed)]
    assert closed[0].alert_sent == AlertDescription.no_application_protocol


def test_downgrade_sentinel_when_tls13_is_enabled() -> None:
    for enable_tls13, expected in ((True, b"DOWNGRD\x01"), (False, None)):
        ex = exchange12(server_config("ecdsa-p256", enable_tls13=enable_tls13))
        try:
            ex.client.do_handshake()
        except ssl.SSLWantReadError:
            pass
        ex.conn.receive_data(ex.to_server.read())
        while not isinstance(ex.conn.next_event(), KeyOperationRequired):
            pass
        flight = ex.conn.data_to_send()
        assert flight[0] == 22 and flight[5] == 2  # a handshake record holding ServerHello
        server_random_tail = flight[5 + 4 + 2 + 24 : 5 + 4 + 2 + 32]
        if expected is not None:
            assert server_random_tail == expected
        else:
            assert server_random_tail != b"DOWNGRD\x01"


def test_signing_failure_is_handshake_failure() -> None:
    ex = exchange12(server_config("ecdsa-p256"))
    ex.key_error = KeyOperationError("key server unavailable")
    with pytest.raises((AssertionError, ssl.SSLError)):
        ex.handshake()
    closed = [e for e in ex.events if isinstance(e, ConnectionClosed)]
    assert closed[0].alert_sent == AlertDescription.handshake_failure


def test_scheme_follows_client_signature_algorithms() -> None:
    ctx = client_context12("ECDHE-RSA-AES128-GCM-SHA256")
    ex = exchange12(server_config("rsa-2048"), ctx)
    ex.handshake()
    op = next(e for e in ex.events if isinstance(e, KeyOperationRequired))
    assert op.scheme is not None and op.scheme.name.startswith("RSA_PSS_RSAE")


def test_client_certificate_authentication() -> None:
    from tests.tls.tls13_helpers import client_identity, pki

    cert, key = client_identity()
    config = server_config("ecdsa-p256", client_ca=(pki().ca_cert,), ticket_keys=ring())
    ctx = client_context12()
    ctx.load_cert_chain(cert, key)
    first = exchange12(config, ctx)
    first.handshake()
    first.client_write(b"x")
    assert first.complete.client_certificates and first.complete.key_operations == 1
    # Resumption keeps the authenticated identity and needs no key operation.
    second = exchange12(config, ctx, session=first.client.session)
    second.handshake()
    assert second.complete.resumed and second.complete.client_certificates == first.complete.client_certificates
    # A client without a certificate is refused.
    anonymous = exchange12(config, client_context12())
    with pytest.raises((AssertionError, ssl.SSLError)):
        anonymous.handshake()
    closed = [e for e in anonymous.events if isinstance(e, ConnectionClosed)]
    assert closed[0].alert_sent == AlertDescription.handshake_failure


def test_configured_suite_order_and_unknown_codes() -> None:
    # A list (not a tuple) works too; a CBC code (0xC009 ECDHE-ECDSA-AES128-SHA) is ignored, never enabled.
    config = server_config("ecdsa-p256", tls12_cipher_suites=[0xC009, 0xCCA9, 0xC02B])
    ex = exchange12(config, client_context12("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"))
    ex.handshake()
    assert ex.complete.cipher_suite == "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
    cbc_only = exchange12(config, client_context12("ECDHE-ECDSA-AES128-SHA"))
    with pytest.raises((AssertionError, ssl.SSLError)):
        cbc_only.handshake()
    closed = [e for e in cbc_only.events if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].alert_sent == AlertDescription.handshake_failure
