"""Sans-IO connection core: ID allocation, correlation in any order, framing splits, protocol violations."""

from __future__ import annotations

import pytest

from keyless.client.core import MAX_ABANDONED, NEED_DATA, Answer, ClientConnection, Request
from keyless.client.errors import ResponseError
from keyless.protocol import Message, MessageDecoder, Opcode, decode_message, encode_message

SKI = bytes.fromhex("d9c69b8e23abba7c26fd5d0e282f3dd679741036")
DIGEST = bytes.fromhex("334d016f755cd6dc58c53a86e183882f8ec14f52fb05345887c8a5edd42c87b7")


def sent_messages(conn: ClientConnection) -> list[Message]:
    decoder = MessageDecoder()
    decoder.receive_data(conn.data_to_send())
    out = []
    while (m := decoder.next_message()) is not NEED_DATA:
        assert isinstance(m, Message)
        out.append(m)
    return out


def test_spec_worked_bytes_for_ecdsa_sign() -> None:
    conn = ClientConnection(first_id=7)
    message_id = conn.send(Request(Opcode.ECDSA_SIGN_SHA256, DIGEST, SKI, sni=b"example.com"))
    assert message_id == 7
    data = conn.data_to_send()
    expected = bytes.fromhex(
        "010003f800000007" "11000115" "120020" + DIGEST.hex() + "040014" + SKI.hex() + "02000b6578616d706c652e636f6d"
        "2003a9"
    ) + bytes(937)
    assert data == expected
    assert conn.data_to_send() == b""


def test_ids_count_up_and_a_burst_is_one_write() -> None:
    conn = ClientConnection()
    ids = [conn.send(Request(Opcode.PING, b"%d" % i)) for i in range(50)]
    assert ids == list(range(1, 51))
    data = conn.data_to_send()
    assert len(data) == 50 * 1024
    messages = sent_messages_from(data)
    assert [m.id for m in messages] == ids
    assert [m.payload for m in messages] == [b"%d" % i for i in range(50)]
    assert conn.in_flight == 50


def sent_messages_from(data: bytes) -> list[Message]:
    return [decode_message(data[i : i + 1024]) for i in range(0, len(data), 1024)]


def test_only_the_configured_items_are_sent() -> None:
    conn = ClientConnection()
    conn.send(Request(Opcode.RSA_SIGN_SHA256, DIGEST, SKI, sni=b"a.test", server_ip=bytes(4), cert_id=b"c1"))
    (message,) = sent_messages(conn)
    assert message.client_ip is None and message.request_context is None and message.unknown == ()
    assert (message.opcode, message.payload, message.ski, message.sni, message.server_ip, message.cert_id) == (
        Opcode.RSA_SIGN_SHA256, DIGEST, SKI, b"a.test", bytes(4), b"c1")


def test_answers_in_any_order_match_their_requests() -> None:
    conn = ClientConnection()
    ids = [conn.send(Request(Opcode.ECDSA_SIGN_SHA256, bytes([i]) * 32, SKI)) for i in range(5)]
    conn.data_to_send()
    reply = b"".join(encode_message(Message.response(i, b"sig%d" % i)) for i in reversed(ids))
    conn.receive_data(reply)
    answers = []
    while (event := conn.next_event()) is not NEED_DATA:
        assert isinstance(event, Answer)
        answers.append(event)
    assert [(a.request_id, a.payload) for a in answers] == [(i, b"sig%d" % i) for i in reversed(ids)]
    assert conn.in_flight == 0


def test_byte_at_a_time_equals_one_chunk() -> None:
    conn = ClientConnection()
    ids = [conn.send(Request(Opcode.PING, b"p")) for _ in range(3)]
    frames = encode_message(Message.pong(ids[1], b"p")) + encode_message(Message.error(ids[0], 2)) + encode_message(
        Message.pong(ids[2], b"p"))
    got = []
    for i in range(len(frames)):
        conn.receive_data(frames[i : i + 1])
        while (event := conn.next_event()) is not NEED_DATA:
            assert isinstance(event, Answer)
            got.append((event.request_id, event.opcode, event.error_code))
    assert got == [(ids[1], Opcode.PONG, None), (ids[0], Opcode.ERROR, 2), (ids[2], Opcode.PONG, None)]


def test_answer_to_unknown_id_poisons_the_connection() -> None:
    conn = ClientConnection()
    conn.send(Request(Opcode.PING))
    conn.receive_data(encode_message(Message.pong(99, b"")))
    with pytest.raises(ResponseError, match="99"):
        conn.next_event()
    with pytest.raises(ResponseError):
        conn.next_event()
    with pytest.raises(ResponseError):
        conn.send(Request(Opcode.PING))


def test_wrong_answer_opcode_is_a_violation() -> None:
    conn = ClientConnection()
    message_id = conn.send(Request(Opcode.ECDSA_SIGN_SHA256, DIGEST, SKI))
    conn.receive_data(encode_message(Message.pong(message_id, b"")))  # a pong to a sign request
    with pytest.raises(ResponseError, match="0xf2"):
        conn.next_event()


def test_malformed_frame_is_a_violation() -> None:
    conn = ClientConnection()
    message_id = conn.send(Request(Opcode.PING))
    frame = bytearray(encode_message(Message.pong(message_id, b"x")))
    frame[8:11] = b"\x11\x00\x02"  # opcode item of 2 bytes
    conn.receive_data(bytes(frame))
    with pytest.raises(ResponseError, match="malformed"):
        conn.next_event()


def test_abandoned_request_answer_is_dropped_quietly() -> None:
    conn = ClientConnection()
    first = conn.send(Request(Opcode.PING))
    second = conn.send(Request(Opcode.PING))
    conn.abandon(first)
    assert conn.in_flight == 1 and conn.abandoned == 1
    conn.receive_data(encode_message(Message.pong(first, b"")) + encode_message(Message.pong(second, b"")))
    event = conn.next_event()
    assert isinstance(event, Answer) and event.request_id == second
    assert conn.next_event() is NEED_DATA
    assert conn.abandoned == 0


def test_too_many_abandoned_requests_poison_the_connection() -> None:
    conn = ClientConnection()
    ids = [conn.send(Request(Opcode.PING)) for _ in range(MAX_ABANDONED + 1)]
    for message_id in ids[:-1]:
        conn.abandon(message_id)
    with pytest.raises(ResponseError, match="unanswered"):
        conn.abandon(ids[-1])


def test_ids_wrap_and_skip_those_in_flight() -> None:
    conn = ClientConnection(first_id=0xFFFFFFFE)
    a = conn.send(Request(Opcode.PING))
    b = conn.send(Request(Opcode.PING))
    assert (a, b) == (0xFFFFFFFE, 0xFFFFFFFF)
    conn2 = ClientConnection(first_id=0xFFFFFFFF)
    first = conn2.send(Request(Opcode.PING))  # 0xFFFFFFFF
    zero = conn2.send(Request(Opcode.PING))
    assert (first, zero) == (0xFFFFFFFF, 0)
    # Force a wrap onto an ID still in flight: it must be skipped.
    conn3 = ClientConnection(first_id=5)
    held = conn3.send(Request(Opcode.PING))
    conn3._next_id = held  # as if the counter had wrapped around to it
    assert conn3.send(Request(Opcode.PING)) == held + 1


def test_error_answer_with_bad_payload_has_code_zero() -> None:
    conn = ClientConnection()
    message_id = conn.send(Request(Opcode.PING))
    conn.receive_data(encode_message(Message(id=message_id, opcode=Opcode.ERROR, payload=b"\x01\x02")))
    event = conn.next_event()
    assert isinstance(event, Answer) and event.error_code == 0


def test_fast_request_encoder_matches_the_codec() -> None:
    requests = [
        Request(Opcode.PING),
        Request(Opcode.ECDSA_SIGN_SHA256, DIGEST, SKI, sni=b"example.com", server_ip=bytes(16), cert_id=b"x",
                client_ip=b"\x7f\x00\x00\x01", request_context=b'{"request_id":"r"}'),
        Request(Opcode.RSA_DECRYPT, bytes(range(256)) * 4, SKI),  # no padding needed
        Request(Opcode.RSA_DECRYPT, bytes(1009 - 3 - 4), None),  # exactly 1024 without padding data
    ]
    for request in requests:
        reference = Message(id=42, opcode=request.opcode, payload=request.payload, ski=request.ski, sni=request.sni,
                            server_ip=request.server_ip, cert_id=request.cert_id, client_ip=request.client_ip,
                            request_context=request.request_context)
        assert request.encode(42) == encode_message(reference)


def test_answer_with_extra_items_goes_through_the_full_decoder() -> None:
    conn = ClientConnection()
    message_id = conn.send(Request(Opcode.PING, b"x"))
    # Unknown tag 0x30 before the payload: still a valid answer.
    conn.receive_data(encode_message(Message(id=message_id, opcode=Opcode.PONG, payload=b"x", unknown=((0x30, b"?"),))))
    event = conn.next_event()
    assert isinstance(event, Answer) and event.payload == b"x"
    conn2 = ClientConnection()
    message_id = conn2.send(Request(Opcode.PING))
    frame = encode_message(Message(id=message_id, opcode=Opcode.PONG))
    doubled = frame[:8] + b"\x11\x00\x01\xf2" + frame[8:-4]  # opcode twice
    conn2.receive_data(doubled[:2] + (len(doubled) - 8).to_bytes(2, "big") + doubled[4:])
    with pytest.raises(ResponseError, match="twice"):
        conn2.next_event()


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("ks.example.net", "ks.example.net", 2407),
        ("ks.example.net:3407", "ks.example.net", 3407),
        ("127.0.0.1:9", "127.0.0.1", 9),
        ("[2001:db8::1]:2407", "2001:db8::1", 2407),
        ("[2001:db8::1]", "2001:db8::1", 2407),
        ("2001:db8::1", "2001:db8::1", 2407),
    ],
)
def test_server_address_parsing(text: str, host: str, port: int) -> None:
    from keyless.client import ServerAddress

    assert ServerAddress.parse(text) == ServerAddress(host, port)


@pytest.mark.parametrize("text", ["", ":2407", "host:0", "host:65536", "host:http", "[::1]:x"])
def test_bad_server_addresses(text: str) -> None:
    from keyless.client import ServerAddress

    with pytest.raises(ValueError):
        ServerAddress.parse(text)


def drain(conn: ClientConnection) -> list[Answer]:
    out = []
    while (event := conn.next_event()) is not NEED_DATA:
        assert isinstance(event, Answer)
        out.append(event)
    return out


def test_fuzz_only_answers_or_response_error() -> None:
    """h11's invariant for our side: whatever the key server sends, the core returns answers,
    NEED_DATA, or raises ResponseError; nothing else escapes. Whole input == byte-at-a-time."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    valid = b"".join(encode_message(Message.response(i, b"r%d" % i)) for i in range(1, 4))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), max_size=6),
           st.binary(max_size=64), st.integers(1, 64))
    def check(flips: list[tuple[int, int]], tail: bytes, chunk: int) -> None:
        data = bytearray(valid)
        for index, value in flips:
            data[index] = value
        data += tail
        outcomes = []
        for step in (len(data), chunk):
            conn = ClientConnection()
            for _ in range(3):
                conn.send(Request(Opcode.ECDSA_SIGN_SHA256, DIGEST, SKI))
            got: list[tuple[int, int, bytes]] = []
            try:
                for i in range(0, len(data), step):
                    conn.receive_data(bytes(data[i : i + step]))
                    while (event := conn.next_event()) is not NEED_DATA:
                        assert isinstance(event, Answer)
                        got.append((event.request_id, event.opcode, event.payload))
                outcomes.append(("ok", got))
            except ResponseError:
                outcomes.append(("error", got))
        (kind_whole, got_whole), (kind_split, got_split) = outcomes
        assert kind_whole == kind_split
        assert got_whole == got_split

    check()
