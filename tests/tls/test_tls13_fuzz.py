"""The h11 invariant for our engine: whatever bytes arrive, the only ways a connection ends are a
TLSAlert-driven ConnectionClosed (with the alert queued) or waiting for more data; never an exception,
and feeding the same bytes whole or one byte at a time gives the same outcome."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import NEED_DATA, ConnectionClosed, Event, KeyOperationRequired
from tests.tls.tls13_helpers import server_config

DATA = Path(__file__).parent / "data"
HELLOS = [p.read_bytes() for p in sorted(DATA.glob("client_hello_*.bin"))]
CONFIG = server_config(enable_tls12=False, groups=(0x001D, 0x0017, 0x0018))


def frame(hello: bytes) -> bytes:
    return b"\x16\x03\x01" + len(hello).to_bytes(2, "big") + hello


def outcome(data: bytes, chunk: int | None) -> tuple[str, int | None]:
    conn = TLSServerConnection(CONFIG)
    events: list[Event] = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            events.append(event)
            if isinstance(event, KeyOperationRequired):
                return ("key-operation", None)
            if isinstance(event, ConnectionClosed):
                assert event.alert_sent is not None and event.alert_sent != 80, event  # never internal_error
                sent = conn.data_to_send()
                assert sent.endswith(bytes((2, event.alert_sent)))
                return ("alert", event.alert_sent)
    return ("need-data", None)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        op = rng.randrange(4)
        pos = rng.randrange(len(buf))
        if op == 0:
            buf[pos] = rng.getrandbits(8)
        elif op == 1:
            del buf[pos : pos + rng.randrange(1, 8)]
        elif op == 2:
            buf[pos:pos] = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 8)))
        else:
            buf[pos] ^= 1 << rng.randrange(8)
    return bytes(buf)


@pytest.mark.parametrize("seed", range(8))
def test_mutated_hellos_whole_and_byte_at_a_time(seed: int, caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(seed)
    caplog.set_level(logging.ERROR, logger="keyless")
    for _ in range(60):
        data = mutate(rng, frame(rng.choice(HELLOS)))
        whole = outcome(data, None)
        assert outcome(data, 1) == whole, data.hex()
        assert outcome(data, rng.randrange(2, 64)) == whole
    assert not [r for r in caplog.records if "bug" in r.getMessage()]


def test_random_garbage_never_raises() -> None:
    rng = random.Random(1234)
    for _ in range(400):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300)))
        if rng.random() < 0.5:
            data = b"\x16\x03\x01" + len(data).to_bytes(2, "big") + data
        outcome(data, None)


def test_unmodified_hellos_reach_the_key_operation() -> None:
    for hello in HELLOS:
        assert outcome(frame(hello), None) == ("key-operation", None)
        assert outcome(frame(hello), 1) == ("key-operation", None)
