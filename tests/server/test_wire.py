"""The server's fast framer agrees with the reference codec on every input."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from keyless.protocol import Message, MessageDecoder, ProtocolError, Tag, decode_message, encode_message
from keyless.server.wire import Request, RequestFramer, decode_request

FIELDS = Request._fields

TAGS = st.sampled_from([int(t) for t in Tag] + [0x07, 0x30, 0x99, 0xFF])
ITEM_DATA = st.one_of(st.binary(max_size=40), st.sampled_from([bytes(1), bytes(4), bytes(16), bytes(20), bytes(32)]))


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(st.tuples(TAGS, ITEM_DATA), max_size=8))
    body = b"".join(struct.pack(">BH", tag, len(data)) + data for tag, data in items)
    if draw(st.booleans()):
        body += draw(st.binary(max_size=4))  # trailing bytes, possibly a cut-off item
    return struct.pack(">BBHI", draw(st.integers(0, 255)), draw(st.integers(0, 255)), len(body),
                       draw(st.integers(0, 2**32 - 1))) + body


def reference(frame: bytes) -> tuple[str, object]:
    try:
        message = decode_message(frame)
    except ProtocolError as exc:
        return ("error", exc.message_id)
    return ("ok", tuple(getattr(message, name) for name in FIELDS))


def fast(frame: bytes) -> tuple[str, object]:
    try:
        request = decode_request(frame, 0, len(frame))
    except ProtocolError as exc:
        return ("error", exc.message_id)
    return ("ok", tuple(request))


@settings(max_examples=500)
@given(frames())
def test_fast_decoder_agrees_with_the_codec(frame: bytes) -> None:
    assert fast(frame) == reference(frame)


@given(st.lists(st.builds(Message, id=st.integers(0, 2**32 - 1), opcode=st.integers(0, 255),
                          payload=st.one_of(st.none(), st.binary(max_size=300)),
                          ski=st.one_of(st.none(), st.binary(min_size=20, max_size=20)),
                          sni=st.one_of(st.none(), st.binary(max_size=50))), max_size=5),
       st.integers(1, 1500))
def test_framer_in_any_chunks_equals_the_reference_decoder(messages: list[Message], chunk: int) -> None:
    data = b"".join(encode_message(m) for m in messages)
    framer = RequestFramer()
    got = []
    for start in range(0, len(data), chunk):
        framer.receive_data(data[start : start + chunk])
        while (request := framer.next_request()) is not None:
            got.append(tuple(request))
    decoder = MessageDecoder()
    decoder.receive_data(data)
    expected = []
    for _ in messages:
        message = decoder.next_message()
        assert isinstance(message, Message)
        expected.append(tuple(getattr(message, name) for name in FIELDS))
    assert got == expected and framer.buffered == 0
