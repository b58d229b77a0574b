"""The h11 invariant for the record layer and the reassembler: any input gives records or a TLSAlert, nothing
else, and the same outcome whether it arrives whole or in pieces."""

from __future__ import annotations

import random

import pytest

from keyless.tls.alerts import TLSAlert
from keyless.tls.record import HandshakeReassembler, Record, RecordLayer
from tests.tls.test_record import layers

Outcome = tuple[list[Record], int | None]


def feed(receiver: RecordLayer, wire: bytes, splits: list[int]) -> Outcome:
    records: list[Record] = []
    position = 0
    try:
        for step in [*splits, len(wire)]:
            receiver.receive_data(wire[position : position + step])
            position += step
            for _ in range(10_000):
                record = receiver.next_record()
                if record is None:
                    break
                records.append(record)
            if position >= len(wire):
                break
    except TLSAlert as alert:
        return records, int(alert.description)
    return records, None


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.5 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif choice < 0.7:
            at = rng.randrange(len(buf) + 1)
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        elif choice < 0.9 and buf:
            at = rng.randrange(len(buf))
            del buf[at : at + rng.randint(1, 8)]
        else:
            header_at = rng.choice([0, 5 + ((buf[3] << 8) | buf[4])]) if len(buf) > 5 else 0
            buf[header_at : header_at + 1] = bytes((rng.choice([20, 21, 22, 23, 24, 0, 255]),))
    return bytes(buf)


@pytest.mark.parametrize("kind", ["tls13", "gcm12", "chacha12"])
def test_mutated_protected_streams(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(150):
        sender, whole, split = layers(kind)
        for _ in range(rng.randint(1, 3)):
            sender.write(rng.choice([21, 22, 23]), rng.randbytes(rng.randint(1, 3000)))
        wire = mutate(rng, sender.data_to_send())
        splits = [rng.randint(1, 600) for _ in range(20)]
        assert feed(whole, wire, []) == feed(split, wire, splits)


def test_random_bytes_into_a_fresh_layer() -> None:
    rng = random.Random(7)
    for _ in range(300):
        prefix = rng.choice([b"", b"\x16\x03\x01", b"\x16\x03\x03\x00\x05", b"\x15\x03\x03\x00\x02"])
        wire = prefix + rng.randbytes(rng.randint(0, 400))
        splits = [rng.randint(1, 50) for _ in range(10)]
        assert feed(RecordLayer(), wire, []) == feed(RecordLayer(), wire, splits)


def test_reassembler_random_input_only_alerts() -> None:
    rng = random.Random(11)
    for _ in range(300):
        data = rng.randbytes(rng.randint(0, 300))
        if rng.random() < 0.5 and len(data) >= 4:
            data = bytes((data[0], 0, 0, rng.randint(0, 40))) + data[4:]
        reassembler = HandshakeReassembler(max_message_size=200)
        try:
            for start in range(0, len(data), 17):
                reassembler.feed(data[start : start + 17])
                while (message := reassembler.next_message()) is not None:
                    msg_type, body, raw = message
                    assert raw[0] == msg_type and raw[4:] == body and len(body) <= 200
        except TLSAlert:
            pass
