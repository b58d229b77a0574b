"""The bounds-checked Reader and the length-prefixing Writer."""

from __future__ import annotations

import pytest

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.codec import Reader, Writer, handshake_message, unpack_u16s


def test_writer_nested_blocks_round_trip() -> None:
    w = Writer()
    w.u8(1)
    with w.block(2):
        w.u16(0x0304)
        with w.block(1):
            w.raw(b"abc")
        w.opaque24(b"xy")
    w.u32(7)
    data = w.getvalue()
    assert data == b"\x01\x00\x0b\x03\x04\x03abc\x00\x00\x02xy\x00\x00\x00\x07"
    r = Reader(data)
    assert r.u8() == 1
    inner = r.vec16()
    assert inner.u16() == 0x0304
    assert inner.opaque8() == b"abc"
    assert inner.opaque24() == b"xy"
    inner.expect_end()
    assert r.u32() == 7
    r.expect_end()


def test_block_overflow_is_a_programming_error() -> None:
    w = Writer()
    with pytest.raises(ValueError), w.block(1):
        w.raw(bytes(256))


@pytest.mark.parametrize("method", ["u8", "u16", "u24", "u32", "vec8", "vec16", "vec24", "opaque8"])
def test_every_read_is_bounded(method: str) -> None:
    with pytest.raises(TLSAlert) as info:
        getattr(Reader(b""), method)()
    assert info.value.description == AlertDescription.decode_error


def test_sub_reader_cannot_read_past_its_end() -> None:
    r = Reader(b"\x01\xaa\xbb")
    sub = r.vec8()
    assert sub.u8() == 0xAA
    with pytest.raises(TLSAlert):
        sub.u8()
    assert r.u8() == 0xBB


def test_u16_list_rules() -> None:
    assert Reader(b"\x00\x04\x13\x01\x13\x02").u16_list("x") == (0x1301, 0x1302)
    for bad in (b"\x00\x00", b"\x00\x03\x00\x00\x00", b"\x00\x04\x00\x00"):
        with pytest.raises(TLSAlert):
            Reader(bad).u16_list("x")
    assert unpack_u16s(b"") == ()


def test_handshake_message_header() -> None:
    assert handshake_message(20, b"abc") == b"\x14\x00\x00\x03abc"
