"""The sans-IO connection: reply encoding, the in-flight cap, malformed frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyless.protocol import ErrorCode, Message, MessageDecoder, Opcode, decode_message, encode_message
from keyless.server.connection import PAUSED, FrameRejected, ServerConnection, encode_reply
from keyless.server.wire import Request


@given(st.integers(0, 2**32 - 1), st.sampled_from([Opcode.RESPONSE, Opcode.PONG, Opcode.ERROR]),
       st.one_of(st.none(), st.binary(max_size=3000), st.binary(min_size=1000, max_size=1012)))
def test_fast_reply_encoder_matches_the_codec(message_id: int, opcode: int, payload: bytes | None) -> None:
    assert encode_reply(message_id, opcode, payload) == encode_message(Message(message_id, opcode, payload))


def test_spec_worked_bytes_for_pong_and_error() -> None:
    pong = encode_reply(0, Opcode.PONG, None)
    assert len(pong) == 1024 and pong[:15] == bytes.fromhex("010003f8 00000000 110001f2 2003f1".replace(" ", ""))
    error = encode_reply(5, Opcode.ERROR, bytes((ErrorCode.KEY_NOT_FOUND,)))
    assert error[:19] == bytes.fromhex("010003f8 00000005 110001ff 12000102 2003ed".replace(" ", ""))
    assert error[19:] == bytes(1005)


def ping(i: int) -> bytes:
    return encode_message(Message(i, Opcode.PING, b"%d" % i))


def test_in_flight_cap_pauses_until_a_reply_frees_a_slot() -> None:
    conn = ServerConnection(max_in_flight=3)
    conn.receive_data(b"".join(ping(i) for i in range(5)))
    events = [conn.next_event() for _ in range(4)]
    assert [type(e) for e in events[:3]] == [Request] * 3
    assert events[3] is PAUSED and not conn.can_accept
    assert conn.buffered == 2 * 1024  # the rest waits, undecoded
    first = events[0]
    assert isinstance(first, Request)
    conn.send_reply(first.id, Opcode.PONG, first.payload)
    event = conn.next_event()
    assert isinstance(event, Request) and event.id == 3
    reply = decode_message(conn.data_to_send())
    assert (reply.id, reply.opcode, reply.payload) == (0, Opcode.PONG, b"0")


def test_byte_at_a_time_equals_one_chunk() -> None:
    data = b"".join(ping(i) for i in range(3))
    conn = ServerConnection()
    ids = []
    for byte in data:
        conn.receive_data(bytes((byte,)))
        event = conn.next_event()
        if isinstance(event, Request):
            ids.append(event.id)
    assert ids == [0, 1, 2]


@pytest.mark.parametrize("frame", [
    bytes.fromhex("01000005 00000009 110002f1ff"),       # opcode item of 2 bytes
    bytes.fromhex("01000008 00000009 110001f1 120005aa"),  # item runs past the body
    bytes.fromhex("01000008 00000009 110001f1 110001f1"),  # opcode twice
    bytes.fromhex("01000005 00000009 03000201ff"),        # client IP of 2 bytes
])
def test_malformed_frame_answers_0x07_with_its_id_and_stops(frame: bytes) -> None:
    conn = ServerConnection()
    conn.receive_data(frame + ping(1))
    event = conn.next_event()
    assert isinstance(event, FrameRejected) and event.message_id == 9
    decoder = MessageDecoder()
    decoder.receive_data(conn.data_to_send())
    reply = decoder.next_message()
    assert isinstance(reply, Message) and reply.id == 9 and reply.error_code == ErrorCode.FORMAT
    assert conn.next_event() is not None and conn.finished
    assert not isinstance(conn.next_event(), Request)  # the ping after it is never served


@given(st.binary(max_size=3000), st.integers(1, 64))
def test_random_bytes_only_ever_yield_requests_rejections_or_need_data(data: bytes, chunk: int) -> None:
    """The h11 invariant: any input is parsed or rejected with the connection's own event; nothing
    else escapes, whether it arrives whole or in pieces."""
    conn = ServerConnection(max_in_flight=10_000)
    for start in range(0, len(data), chunk):
        conn.receive_data(data[start : start + chunk])
        for _ in range(len(data) + 1):
            event = conn.next_event()
            if isinstance(event, Request):
                conn.send_reply(event.id, Opcode.PONG, None)
                continue
            assert isinstance(event, FrameRejected) or event is not PAUSED
            break
    conn.data_to_send()
