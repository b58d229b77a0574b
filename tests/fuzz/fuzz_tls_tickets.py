"""Session resumption state that comes back from clients: tickets (TLS 1.3 PSK identities, TLS 1.2
SessionTicket) and TLS 1.2 session IDs.

``tickets``: the first byte picks the path. (0) ``TicketKeyRing.open`` on arbitrary bytes: forged names,
nonces and tags, truncations. (1) ``SessionState.from_bytes`` on arbitrary bytes, i.e. what a ticket holds
once its tag checked (a key leak or a bug in an older release could produce it); it must be the strict
inverse of ``to_bytes``. (2) A genuine ticket sealed now from fuzzer-chosen session fields, then cut or
flipped at a fuzzer-chosen position: only the untouched ticket may open, and to the state sealed. (3) A
session ID looked up in the TLS 1.2 session cache (lengths 0..255, the one stored ID, near misses).

Invariant: a state or None (or ValueError for ``from_bytes``), never another exception, and an opened
state is always one that was sealed.
"""

from __future__ import annotations

import functools
import struct

from keyless.tls.session_cache import MemorySessionCache
from keyless.tls.tickets import SessionState, TicketKey, TicketKeyRing
from tests.fuzz import keys
from tests.fuzz.harness import Target, check


def _now() -> float:
    return keys.FIXED_NOW


@functools.cache
def ring() -> TicketKeyRing:
    return TicketKeyRing([TicketKey.from_material(keys.TICKET_KEY_MATERIAL),
                          TicketKey.from_material(bytes(range(80, 128)))], now=_now)


CACHED_ID = bytes([0x11]) * 32


def _open(data: bytes) -> None:
    state = ring().open(data)
    if state is not None:
        check(not state.expired(keys.FIXED_NOW), "an expired ticket opened")


def _from_bytes(data: bytes) -> None:
    try:
        state = SessionState.from_bytes(data)
    except ValueError:
        return
    check(state.to_bytes() == data, "from_bytes accepted bytes that to_bytes would not produce")


def _state_from(data: bytes) -> SessionState | None:
    if len(data) < 16:
        return None
    version, suite, age_add, lifetime = struct.unpack(">HHII", data[:12])
    secret_length = data[12] % 64 + 1
    secret = data[13 : 13 + secret_length].ljust(secret_length, b"\0")
    rest = data[13 + secret_length :]
    sni = rest[:40].decode("ascii", errors="ignore") or None
    try:
        return SessionState(version=version, cipher_suite=suite, secret=secret, created_at=keys.FIXED_NOW,
                            age_add=age_add, lifetime=lifetime % 604801, sni=sni,
                            alpn="h2" if data[0] & 1 else None, ems=bool(data[1] & 1),
                            client_certificates=(rest[40:],) if rest[40:] else ())
    except ValueError:
        return None


def _tamper(data: bytes) -> None:
    if len(data) < 3:
        return
    how, where = data[0], data[1]
    state = _state_from(data[2:])
    if state is None:
        return
    ticket = ring().seal(state)
    opened = ring().open(ticket)
    check(opened == state, "a genuine ticket did not open to the state sealed")
    position = where * len(ticket) // 256
    if how & 1:
        forged = ticket[:position]  # truncated
    else:
        forged = bytearray(ticket)
        forged[position] ^= 1 << (how >> 1) % 8
        forged = bytes(forged)
    check(ring().open(forged) is None, f"a ticket changed at byte {position} still opened")
    check(ring().open(ticket + b"\0") is None, "a ticket with a trailing byte opened")


def _session_id(data: bytes) -> None:
    cache = MemorySessionCache(now=_now)
    cache.put(CACHED_ID, SessionState(0x0303, 0xC02B, bytes(48), keys.FIXED_NOW))
    cache.put(data, SessionState(0x0303, 0xC02F, bytes(48), keys.FIXED_NOW))
    found = cache.get(data)
    if found is not None:
        check(0 < len(data) <= 32, f"a {len(data)}-byte session ID was cached")
    check(cache.get(CACHED_ID) is not None or data == CACHED_ID, "the stored session was lost")


PATHS = (_open, _from_bytes, _tamper, _session_id)


def one_input(data: bytes) -> None:
    if not data:
        return
    PATHS[data[0] % len(PATHS)](data[1:])


TARGETS = [
    Target("tickets", one_input, "tls_tickets",
           "ticket open (forged/truncated), session state decoding, TLS 1.2 session-ID cache", setup=ring,
           max_len=2048),
]
