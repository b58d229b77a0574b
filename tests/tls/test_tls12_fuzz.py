"""The h11 invariant for the TLS 1.2 path: mutated handshakes end in a TLS alert, never in an escaped
exception or an internal_error (which the connection reports for any unexpected Python exception)."""

from __future__ import annotations

import random

import pytest

from keyless.tls.alerts import AlertDescription
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import NEED_DATA, ConnectionClosed, KeyOperationRequired
from tests.tls.tls12_helpers import answer, server_config
from tests.tls.tls12_raw_client import RSA_AES128, RawClient12

ROUNDS = 300


def _recorded_flights(rsa: bool) -> tuple[object, list[bytes]]:
    """A real handshake's client records (ClientHello, ClientKeyExchange, CCS, Finished, app data)."""
    config = server_config("rsa-2048" if rsa else "ecdsa-p256", enable_rsa_key_exchange=rsa)
    c = RawClient12(TLSServerConnection(config), suites=(RSA_AES128,) if rsa else (0xC02B,))
    sent: list[bytes] = []
    original = c.conn.receive_data

    def tap(data: bytes) -> None:
        sent.append(bytes(data))
        original(data)

    c.conn.receive_data = tap  # type: ignore[method-assign]
    c.full_handshake()
    c.application_data(b"hello")
    return config, sent


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(4)
        if action == 0 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif action == 1 and buf:
            del buf[rng.randrange(len(buf)) :]
        elif action == 2:
            buf.insert(rng.randrange(len(buf) + 1), rng.randrange(256))
        elif buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def _drive(config: object, chunks: list[bytes]) -> list[object]:
    conn = TLSServerConnection(config)  # type: ignore[arg-type]
    events: list[object] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        for _ in range(100):
            event = conn.next_event()
            if event is NEED_DATA:
                break
            events.append(event)
            if isinstance(event, KeyOperationRequired):
                conn.complete_key_operation(event.op_id, answer(event))
        conn.data_to_send()
        if any(isinstance(e, ConnectionClosed) for e in events):
            break
    return events


@pytest.mark.parametrize("rsa", [False, True], ids=["ecdhe", "rsa-kx"])
def test_mutated_handshakes_only_end_in_alerts(rsa: bool) -> None:
    config, flights = _recorded_flights(rsa)
    rng = random.Random(1234 + rsa)
    for _ in range(ROUNDS // 3 if rsa else ROUNDS):  # RSA rounds pay a pure-Python RSA decryption each
        chunks = list(flights)
        index = rng.randrange(len(chunks))
        chunks[index] = _mutate(rng, chunks[index])
        events = _drive(config, chunks)
        closed = [e for e in events if isinstance(e, ConnectionClosed)]
        assert not closed or closed[0].alert_sent != AlertDescription.internal_error, closed


def test_random_bytes_after_client_hello() -> None:
    config, flights = _recorded_flights(False)
    rng = random.Random(99)
    for _ in range(ROUNDS):
        garbage = rng.randbytes(rng.randrange(1, 300))
        events = _drive(config, [flights[0], garbage])
        closed = [e for e in events if isinstance(e, ConnectionClosed)]
        assert not closed or closed[0].alert_sent != AlertDescription.internal_error, closed
