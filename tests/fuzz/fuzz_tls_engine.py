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

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from keyless.keys.local import LocalKey
from keyless.sentinel import NeedData
from keyless.tls import key_schedule as ks
from keyless.tls import tls12_prf
from keyless.tls.alerts import AlertDescription
from keyless.tls.codec import handshake_message
from keyless.tls.config import CertifiedKey, ServerConfig, static_certificate
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import ConnectionClosed, KeyOperationRequired
from keyless.tls.record import RecordLayer
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
    conn = _new_connection(version, variant)
    seen: list[object] = []
    for piece in [*chunks(data, size_byte), b""]:
        conn.receive_data(piece)
        for _ in range(MAX_EVENTS):
            event = conn.next_event()
            if isinstance(event, NeedData):
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


# ---- peer mode: the harness plays a client that knows the keys -----------------------------------------
# Bit 0x80 of the first byte: the input is a recorded client prefix (u16 length + bytes: the ClientHello; for
# TLS 1.2 up to and including the client's ChangeCipherSpec), then a program the harness runs as the client: it
# captures every read key the server installs (TLS 1.3 handshake and application traffic secrets, the TLS 1.2
# client write key) and seals each step under the newest, so the fuzzer's bytes reach the parsers of the
# client's encrypted messages (Certificate, CertificateVerify, Finished, KeyUpdate, post-handshake records,
# renegotiation attempts) instead of dying at the record MAC. Steps (first byte % 7): 0 handshake payload (u16
# length; in clear before any key), 1 application data (u8 length), 2 alert (2 bytes), 3 raw unsealed bytes (u8
# length), 4 the correct client Finished, 5 a change_cipher_spec, 6 a correct TLS 1.3 client CertificateVerify.


def _sealer(version: int, keys_seen: list[tuple[Any, ...]], current: list[Any]) -> RecordLayer | None:
    if not keys_seen:
        return None
    if current and current[0] is keys_seen[-1]:
        return current[1]  # type: ignore[no-any-return]
    layer = RecordLayer()
    if version == 13:
        layer.set_write_key_tls13(*keys_seen[-1])
    else:
        layer.set_write_key_tls12(*keys_seen[-1])
    current[:] = [keys_seen[-1], layer]
    return layer


def _client_finished(version: int, conn: TLSServerConnection) -> bytes | None:
    """The client Finished the server expects now, read from the driver's phase object (None: not yet)."""
    state: Any = getattr(conn._driver, "state", None)
    if version == 12:
        session, keys = getattr(state, "session", None), getattr(state, "keys", None)
        if session is None or keys is None:
            return None
        verify = tls12_prf.finished_verify_data(session.suite.hash_name, keys.prf, tls12_prf.CLIENT_FINISHED,
                                                session.transcript_hash())
        return handshake_message(20, verify)
    negotiated = getattr(state, "negotiated", None)
    secret = getattr(getattr(state, "keys", None), "client", None)
    if negotiated is None or not secret:
        return None
    suite = negotiated.suite
    return handshake_message(20, ks.finished_verify_data(suite.hash_name, secret, negotiated.transcript.digest()))


def _client_certificate_verify(conn: TLSServerConnection) -> bytes | None:
    negotiated: Any = getattr(getattr(conn._driver, "state", None), "negotiated", None)
    if negotiated is None or conn.version != 0x0304:
        return None
    signed = ks.certificate_verify_input(negotiated.transcript.digest(), server=False)
    signature = keys.fuzz_ca()[1].sign(signed, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    return handshake_message(15, b"\x04\x03" + len(signature).to_bytes(2, "big") + signature)


def _drain(conn: TLSServerConnection, seen: list[object]) -> bool:
    """Process events; False once the connection closed."""
    for _ in range(MAX_EVENTS):
        event = conn.next_event()
        if isinstance(event, NeedData):
            conn.data_to_send()
            return True
        seen.append(type(event).__name__)
        if isinstance(event, KeyOperationRequired):
            conn.complete_key_operation(event.op_id, _answer(event))
        elif isinstance(event, ConnectionClosed):
            if event.alert_sent is not None:
                check(event.alert_sent != AlertDescription.internal_error, f"internal_error: {event.reason}")
                check(bool(conn.data_to_send()), "closed with an alert but queued nothing")
            seen.append(event.alert_sent)
            return False
    raise AssertionError(f"more than {MAX_EVENTS} events from one step")


class _CapturingRecordLayer(RecordLayer):
    """The connection's record layer, also telling the harness each TLS 1.2 read key (RecordLayer has slots)."""

    def __init__(self, keys_seen: list[tuple[Any, ...]]) -> None:
        super().__init__()
        self.keys_seen = keys_seen

    def set_read_key_tls12(self, suite: Any, key: bytes, fixed_iv: bytes) -> None:
        super().set_read_key_tls12(suite, key, fixed_iv)
        self.keys_seen.append((suite, key, fixed_iv))


def _new_connection(version: int, variant: int) -> TLSServerConnection:
    cfg = config(version, variant)
    if version == 12:
        cache = MemorySessionCache(now=_now)
        cache.put(CACHED_SESSION_ID, cached_session())
        cfg = _with_cache(cfg, cache)
    return TLSServerConnection(cfg)


def peer_outcome(version: int, variant: int, data: bytes) -> list[object]:
    conn = _new_connection(version, variant)
    keys_seen: list[tuple[Any, ...]] = []
    if version == 13:
        install13 = conn.set_read_key_tls13

        def capture13(suite: Any, secret: bytes) -> None:
            install13(suite, secret)
            keys_seen.append((suite, secret))

        conn.set_read_key_tls13 = capture13  # type: ignore[method-assign]
    else:
        conn.record = _CapturingRecordLayer(keys_seen)
    prefix_length = int.from_bytes(data[:2], "big")
    seen: list[object] = []
    conn.receive_data(data[2 : 2 + prefix_length])
    if not _drain(conn, seen):
        return seen
    program, i, current = data[2 + prefix_length :], 0, []
    while i < len(program):
        op = program[i] % 7
        i += 1
        sealer = _sealer(version, keys_seen, current)
        wire = b""
        if op == 3:
            n = program[i] if i < len(program) else 0
            wire, i = program[i + 1 : i + 1 + n], i + 1 + n
        elif op == 5:
            wire = b"\x14\x03\x03\x00\x01\x01"
        elif op == 0 and sealer is None:
            n = int.from_bytes(program[i : i + 2], "big")
            payload = program[i + 2 : i + 2 + n]
            i += 2 + n
            wire = b"\x16\x03\x03" + len(payload).to_bytes(2, "big") + payload if payload else b""
        elif sealer is not None:
            if op == 0:
                n = int.from_bytes(program[i : i + 2], "big")
                sealer.write(22, program[i + 2 : i + 2 + n])
                i += 2 + n
            elif op == 1:
                n = program[i] if i < len(program) else 0
                sealer.write(23, program[i + 1 : i + 1 + n] or b"x")
                i += 1 + n
            elif op == 2:
                sealer.write(21, program[i : i + 2].ljust(2, b"\0"))
                i += 2
            else:
                message = _client_finished(version, conn) if op == 4 else _client_certificate_verify(conn)
                if message is not None:
                    sealer.write(22, message)
            wire = sealer.data_to_send()
        if wire:
            conn.receive_data(wire)
            if not _drain(conn, seen):
                return seen
    conn.receive_data(b"")
    _drain(conn, seen)
    return seen


def _one_input(version: int, data: bytes) -> None:
    if len(data) < 2:
        return
    if data[0] & 0x80:
        peer_outcome(version, data[0] % 4, data[2:])
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
