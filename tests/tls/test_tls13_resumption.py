"""PSK resumption with session tickets (RFC 8446 §4.2.11, §4.6.1) against Python's OpenSSL client."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import NEED_DATA, ConnectionClosed, HandshakeComplete, KeyOperationRequired
from keyless.tls.suites import TLS13_SUITES_BY_CODE
from keyless.tls.tickets import TicketKey, TicketKeyRing
from tests.tls.tls13_helpers import Exchange, client_context, exchange, server_config


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def ring(clock: Clock | None = None) -> TicketKeyRing:
    if clock is None:
        return TicketKeyRing([TicketKey.generate()])
    return TicketKeyRing([TicketKey.generate()], now=clock)


def first_session(config: Any, ctx: ssl.SSLContext | None = None) -> tuple[Exchange, Any]:
    ex = exchange(config, ctx)
    ex.handshake()
    with pytest.raises(ssl.SSLWantReadError):
        ex.client.read(1)  # processes the NewSessionTickets
    session = ex.client.session
    assert session is not None and session.has_ticket
    return ex, session


def complete(ex: Exchange) -> HandshakeComplete:
    return next(e for e in ex.events if isinstance(e, HandshakeComplete))


@pytest.mark.parametrize("suite_code", sorted(TLS13_SUITES_BY_CODE))
def test_resumption_for_every_suite(suite_code: int) -> None:
    config = server_config(ticket_keys=ring(), tls13_cipher_suites=(TLS13_SUITES_BY_CODE[suite_code],))
    ctx = client_context()
    ex, session = first_session(config, ctx)
    info = complete(ex)
    assert info.session_ticket_sent and not info.resumed and info.key_operations == 1

    again = exchange(config, ctx, session=session)
    again.handshake()
    assert again.client.session_reused
    info = complete(again)
    assert info.resumed and info.key_operations == 0
    assert not [e for e in again.events if isinstance(e, KeyOperationRequired)]
    again.client_write(b"resumed data")
    assert again.events[-1] == type(again.events[-1])(b"resumed data")  # ApplicationData


def test_resumed_session_issues_new_tickets_and_chains() -> None:
    config = server_config(ticket_keys=ring())
    ctx = client_context()
    _, session = first_session(config, ctx)
    for _ in range(3):
        ex = exchange(config, ctx, session=session)
        ex.handshake()
        assert ex.client.session_reused
        with pytest.raises(ssl.SSLWantReadError):
            ex.client.read(1)
        session = ex.client.session


def test_resumption_after_hello_retry_request() -> None:
    config = server_config(ticket_keys=ring(), groups=(0x0018,))
    ctx = client_context()
    _, session = first_session(config, ctx)
    ex = exchange(config, ctx, session=session)
    ex.handshake()
    assert ex.client.session_reused
    info = complete(ex)
    assert info.resumed and info.group == "secp384r1" and info.key_operations == 0


def test_ticket_with_other_hash_means_full_handshake() -> None:
    keys = ring()
    ctx = client_context()
    sha384_only = (TLS13_SUITES_BY_CODE[0x1302],)
    _, session = first_session(server_config(ticket_keys=keys, tls13_cipher_suites=sha384_only), ctx)
    ex = exchange(server_config(ticket_keys=keys, tls13_cipher_suites=(TLS13_SUITES_BY_CODE[0x1301],)), ctx,
                  session=session)
    ex.handshake()
    assert not ex.client.session_reused
    assert complete(ex).key_operations == 1


def test_expired_ticket_means_full_handshake() -> None:
    clock = Clock()
    config = server_config(ticket_keys=ring(clock), clock=clock, ticket_lifetime=60)
    ctx = client_context()
    _, session = first_session(config, ctx)
    clock.now += 61
    ex = exchange(config, ctx, session=session)
    ex.handshake()
    assert not ex.client.session_reused
    assert not complete(ex).resumed


def test_ticket_from_unknown_key_means_full_handshake() -> None:
    ctx = client_context()
    _, session = first_session(server_config(ticket_keys=ring()), ctx)
    ex = exchange(server_config(ticket_keys=ring()), ctx, session=session)
    ex.handshake()
    assert not ex.client.session_reused


def test_ticket_for_other_server_name_is_not_resumed() -> None:
    config = server_config(ticket_keys=ring())
    ctx = client_context()
    ctx.check_hostname = False
    _, session = first_session(config, ctx)
    ex = exchange(config, ctx, session=session, server_hostname="localhost")
    ex.handshake()
    assert not complete(ex).resumed


def test_no_tickets_without_ring_or_when_count_is_zero() -> None:
    for config in (server_config(), server_config(ticket_keys=ring(), tickets_per_handshake=0)):
        ex = exchange(config)
        ex.handshake()
        assert not complete(ex).session_ticket_sent


def test_bad_binder_is_decrypt_error() -> None:
    keys = ring()
    config = server_config(ticket_keys=keys)
    ctx = client_context()
    _, session = first_session(config, ctx)
    ex = exchange(config, ctx, session=session)
    try:
        ex.client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    flight = bytearray(ex.to_server.read())
    record_end = 5 + int.from_bytes(flight[3:5], "big")
    flight[record_end - 1] ^= 0x01  # the binder is the last thing in the ClientHello
    conn = TLSServerConnection(config)
    conn.receive_data(bytes(flight))
    event = conn.next_event()
    assert isinstance(event, ConnectionClosed) and event.alert_sent == 51, event
    assert conn.next_event() is NEED_DATA
