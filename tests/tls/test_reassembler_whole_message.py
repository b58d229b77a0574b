"""HandshakeReassembler.whole_message: the no-copy path for a record holding exactly one message must
apply the same size limits as feed() and step aside whenever the buffer is involved."""

from __future__ import annotations

import pytest

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.record import HandshakeReassembler


def message(msg_type: int, body: bytes) -> bytes:
    return bytes((msg_type,)) + len(body).to_bytes(3, "big") + body


def test_exactly_one_message_is_handed_over() -> None:
    raw = message(20, b"f" * 32)
    assert HandshakeReassembler().whole_message(raw) == (20, b"f" * 32, raw)


@pytest.mark.parametrize("payload", [b"\x14\x00", message(20, b"x") + b"\x14", message(20, b"xy")[:-1]])
def test_partial_or_coalesced_records_go_through_the_buffer(payload: bytes) -> None:
    assert HandshakeReassembler().whole_message(payload) is None


def test_not_used_while_a_message_is_buffered() -> None:
    r = HandshakeReassembler()
    r.feed(message(20, b"abcd")[:3])
    assert r.whole_message(message(20, b"x")) is None


def test_same_size_limits_as_feed() -> None:
    small = HandshakeReassembler(max_message_size=8, max_certificate_size=16)
    assert small.whole_message(message(20, b"x" * 8)) is not None
    with pytest.raises(TLSAlert) as failed:
        small.whole_message(message(20, b"x" * 9))
    assert failed.value.description == AlertDescription.illegal_parameter
    assert small.whole_message(message(11, b"c" * 16)) is not None  # Certificate has its own limit
    with pytest.raises(TLSAlert):
        small.whole_message(message(11, b"c" * 17))
