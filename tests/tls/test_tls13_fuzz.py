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


# ---- after the handshake: random protected records from a client that knows its keys ----------------


@pytest.mark.parametrize("seed", range(4))
def test_random_post_handshake_records(seed: int, tmp_path: Path) -> None:
    from tests.tls.test_tls13_negative import established

    rng = random.Random(seed)
    for _ in range(15):
        ex, forged = established(tmp_path)
        conn: TLSServerConnection = ex.conn  # type: ignore[attr-defined]
        for _ in range(rng.randrange(1, 6)):
            content_type = rng.choice((20, 21, 22, 23, 24, 0, 255))
            body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
            if content_type == 22 and rng.random() < 0.7:
                msg_type = rng.choice((1, 2, 4, 5, 8, 11, 13, 15, 20, 24, 254))
                length = len(body) if rng.random() < 0.7 else rng.randrange(0, 100)
                body = bytes((msg_type,)) + length.to_bytes(3, "big") + body
            if body or content_type == 23:
                forged.write(content_type, body) if body else forged.write(23, b"")
        data = forged.data_to_send()
        conn.receive_data(data)
        for _ in range(100):
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, ConnectionClosed):
                assert event.alert_sent != 80, event
                break


def test_handshake_byte_at_a_time_matches_whole() -> None:
    from tests.tls.tls13_helpers import exchange

    ex = exchange(server_config())
    original_step = ex.server_step

    def dribble() -> None:
        data = ex.to_server.read()
        for i in range(len(data)):
            ex.to_server.write(data[i : i + 1])
            original_step()

    ex.server_step = dribble  # type: ignore[method-assign]
    ex.handshake(max_rounds=40)
    assert ex.conn.handshake_complete and ex.key_operations == 1


hypothesis = pytest.importorskip("hypothesis")


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(
    hypothesis.strategies.sampled_from(HELLOS),
    hypothesis.strategies.lists(
        hypothesis.strategies.tuples(hypothesis.strategies.integers(0, 600), hypothesis.strategies.integers(0, 255)),
        min_size=1, max_size=6,
    ),
    hypothesis.strategies.integers(1, 50),
)
def test_hypothesis_mutated_hellos(hello: bytes, edits: list[tuple[int, int]], chunk: int) -> None:
    data = bytearray(frame(hello))
    for position, value in edits:
        data[position % len(data)] = value
    assert outcome(bytes(data), None) == outcome(bytes(data), chunk)
