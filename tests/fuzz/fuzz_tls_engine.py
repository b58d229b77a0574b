"""Client bytes into the whole TLS server engine (``TLSServerConnection``), TLS 1.3 and TLS 1.2.

``tls13_engine``: ClientHello(s) and what follows into a TLS 1.3-only server with resumption on: the
HelloRetryRequest path (one config prefers P-384, so most hellos get one and the second hello follows in
the seed), PSK offers with real binders (the seeds carry tickets sealed under the fixed fuzz ticket key,
opened at the fixed fuzz clock), refused early data, client authentication and ALPN. Key operations are
answered with real signatures so the handshake continues to the client's second flight; in the fuzz
process ephemeral keys, server randoms and signatures are deterministic (``tests.fuzz.deterministic``), so a
recorded flight replays to the end: Finished, application data, close_notify.

``tls12_engine``: the same into a TLS 1.2-only server: ECDHE-ECDSA and RSA key exchange (raw decryption
answered by the real key), session-ID resumption (the cache holds a session under a fixed ID), session
tickets, renegotiation_info and extended master secret, client authentication.

Invariants: ``next_event`` never raises; the engine never logs "bug: unexpected exception" (it would turn
such an exception into internal_error); a connection that ends with an alert has queued exactly that alert
in clear or sealed; the same events come out whether the bytes arrive whole or in pieces.
"""

from __future__ import annotations

import functools
from typing import Any

from keyless.keys.local import LocalKey
from keyless.tls.alerts import AlertDescription
from keyless.tls.config import CertifiedKey, ServerConfig, static_certificate
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import ConnectionClosed, KeyOperationRequired, _NeedData
from keyless.tls.session_cache import MemorySessionCache
from keyless.tls.tickets import SessionState, TicketKey, TicketKeyRing
from tests.fuzz import deterministic, keys
from tests.fuzz.harness import Target, check, chunks, raise_on_bug_logs

CACHED_SESSION_ID = bytes([0x11]) * 32
MAX_EVENTS = 200


def _now() -> float:
    return keys.FIXED_NOW


def _random(n: int) -> bytes:
    return bytes((0x5A,)) * n  # deterministic server randoms: a crash replays exactly


@functools.cache
def ring() -> TicketKeyRing:
    return TicketKeyRing([TicketKey.from_material(keys.TICKET_KEY_MATERIAL)], now=_now)


@functools.cache
def certified(kind: str) -> CertifiedKey:
    cert, private = keys.site_certificate(kind)
    return CertifiedKey(chain=(cert, keys.fuzz_ca()[0]), key=LocalKey(private))


def cached_session() -> SessionState:
    return SessionState(version=0x0303, cipher_suite=0xC02B, secret=bytes(range(48)), created_at=keys.FIXED_NOW,
                        sni=keys.HOSTNAME, ems=True)


@functools.cache
def config(version: int, variant: int) -> ServerConfig:
    """Variant 0: defaults; 1: P-384 only (a HelloRetryRequest for every client that sent another share); 2: asks for a
    client certificate (optional); 3: ALPN, a record size limit, psk_ke allowed. TLS 1.2 variants 1 and 3 use
    the RSA certificate with RSA key exchange on."""
    overrides: dict[str, Any] = {}
    kind = "ed25519" if version == 13 and variant < 3 else "ecdsa"  # Ed25519 signs deterministically
    if variant == 1:
        overrides["groups"] = (0x0018,) if version == 13 else (0x0018, 0x0017, 0x001D)
        if version == 12:
            kind = "rsa"
            overrides["enable_rsa_key_exchange"] = True
    elif variant == 2:
        overrides["client_ca"] = (keys.fuzz_ca()[0],)
        overrides["require_client_certificate"] = False
    elif variant == 3:
        overrides.update(alpn_protocols=("h2", "http/1.1"), record_size_limit=1024, allow_psk_ke=True)
        if version == 12:
            kind = "rsa"
            overrides["enable_rsa_key_exchange"] = True
    return ServerConfig(
        certificate_callback=static_certificate(certified(kind)),
        enable_tls13=version == 13,
        enable_tls12=version == 12,
        ticket_keys=ring(),
        clock=_now,
        random_bytes=_random,
        **overrides,
    )


_answer = deterministic.answer


def outcome(version: int, variant: int, data: bytes, size_byte: int) -> list[object]:
    cfg = config(version, variant)
    if version == 12:
        cache = MemorySessionCache(now=_now)
        cache.put(CACHED_SESSION_ID, cached_session())
        cfg = _with_cache(cfg, cache)
    conn = TLSServerConnection(cfg)
    seen: list[object] = []
    for piece in [*chunks(data, size_byte), b""]:
        conn.receive_data(piece)
        for _ in range(MAX_EVENTS):
            event = conn.next_event()
            if isinstance(event, _NeedData):
                break
            seen.append(type(event).__name__)
            if isinstance(event, KeyOperationRequired):
                conn.complete_key_operation(event.op_id, _answer(event))
            elif isinstance(event, ConnectionClosed):
                if event.alert_sent is not None:
                    check(event.alert_sent != AlertDescription.internal_error, f"internal_error: {event.reason}")
                    check(bool(conn.data_to_send()), "closed with an alert but queued nothing")
                seen.append(event.alert_sent)
                return seen
        else:
            raise AssertionError(f"more than {MAX_EVENTS} events from one read")
        conn.data_to_send()
    return seen


def _with_cache(cfg: ServerConfig, cache: MemorySessionCache) -> ServerConfig:
    from dataclasses import replace

    return replace(cfg, session_cache=cache)


def _one_input(version: int, data: bytes) -> None:
    if len(data) < 2:
        return
    variant, size_byte = data[0] % 4, data[1]
    whole = outcome(version, variant, data[2:], 0xFF)
    if size_byte < 0x40:  # a quarter of the inputs also go in pieces (a handshake costs a key operation)
        split = outcome(version, variant, data[2:], size_byte)
        check(split == whole, f"split read changed the outcome: {whole} vs {split}")


def tls13_one_input(data: bytes) -> None:
    _one_input(13, data)


def tls12_one_input(data: bytes) -> None:
    _one_input(12, data)


def setup() -> None:
    deterministic.install()
    raise_on_bug_logs("keyless")
    for version in (12, 13):
        for variant in range(4):
            config(version, variant)


TARGETS = [
    Target("tls13_engine", tls13_one_input, "tls_engine",
           "TLS 1.3 server: ClientHello, HelloRetryRequest, PSK binders, early-data refusal, client flight",
           setup=setup, max_len=8192),
    Target("tls12_engine", tls12_one_input, "tls_engine",
           "TLS 1.2 server: ECDHE/RSA key exchange, session IDs, tickets, client flight", setup=setup,
           max_len=8192),
]
