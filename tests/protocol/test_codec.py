"""The codec against the spec's worked bytes, byte for byte, plus round-trip and fuzz properties."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyless.protocol import (
    NEED_DATA,
    ErrorCode,
    Message,
    MessageDecoder,
    Opcode,
    ProtocolError,
    decode_message,
    encode_message,
)


def padded(prefix_hex: str, zeros: int) -> bytes:
    data = bytes.fromhex(prefix_hex.replace(" ", "")) + bytes(zeros)
    assert len(data) == 1024
    return data


PING_ID0 = padded("01 00 03 f8 00 00 00 00 11 00 01 f1 20 03 f1", 1009)
PONG_ID0 = padded("01 00 03 f8 00 00 00 00 11 00 01 f2 20 03 f1", 1009)
PING_HELLO = padded("01 00 03 f8 00 00 00 05 11 00 01 f1 12 00 06 48 65 6c 6c 6f 21 20 03 e8", 1000)
ECDSA_SIGN = padded(
    "01 00 03 f8 00 00 00 07"
    "11 00 01 15"
    "12 00 20 334d016f755cd6dc58c53a86e183882f8ec14f52fb05345887c8a5edd42c87b7"
    "04 00 14 d9c69b8e23abba7c26fd5d0e282f3dd679741036"
    "02 00 0b 6578616d706c652e636f6d"
    "20 03 a9",
    937,
)
KEY_NOT_FOUND = padded("01 00 03 f8 00 00 00 05 11 00 01 ff 12 00 01 02 20 03 ed", 1005)


def test_ping_id0_is_the_spec_bytes() -> None:
    assert encode_message(Message(id=0, opcode=Opcode.PING)) == PING_ID0
    assert decode_message(PING_ID0) == Message(id=0, opcode=Opcode.PING)


def test_pong_id0_is_the_spec_bytes() -> None:
    assert encode_message(Message.pong(0, None)) == PONG_ID0


def test_ping_with_payload_is_the_spec_bytes() -> None:
    message = Message(id=5, opcode=Opcode.PING, payload=b"Hello!")
    assert encode_message(message) == PING_HELLO
    assert decode_message(PING_HELLO) == message


def test_ecdsa_sign_request_is_the_spec_bytes() -> None:
    digest = hashlib.sha256(b"Hello!").digest()
    assert digest.hex() == "334d016f755cd6dc58c53a86e183882f8ec14f52fb05345887c8a5edd42c87b7"
    message = Message(
        id=7,
        opcode=Opcode.ECDSA_SIGN_SHA256,
        payload=digest,
        ski=bytes.fromhex("d9c69b8e23abba7c26fd5d0e282f3dd679741036"),
        sni=b"example.com",
    )
    assert encode_message(message) == ECDSA_SIGN
    assert decode_message(ECDSA_SIGN) == message


def test_key_not_found_error_is_the_spec_bytes() -> None:
    assert encode_message(Message.error(5, ErrorCode.KEY_NOT_FOUND)) == KEY_NOT_FOUND
    decoded = decode_message(KEY_NOT_FOUND)
    assert decoded.error_code == ErrorCode.KEY_NOT_FOUND


def test_large_message_is_not_padded() -> None:
    message = Message(id=1, opcode=Opcode.RSA_DECRYPT, payload=bytes(range(256)) * 4)
    encoded = encode_message(message)
    assert len(encoded) == 8 + 4 + 3 + 1024
    assert decode_message(encoded) == message


def test_near_boundary_gets_empty_padding_item() -> None:
    # 8 + 4 + (3 + n) = 1022 -> 1024 - (1022 + 3) < 0 -> a zero-length padding item is still appended
    message = Message(id=1, opcode=Opcode.PING, payload=bytes(1022 - 15))
    encoded = encode_message(message)
    assert len(encoded) == 1025
    assert encoded[-3:] == b"\x20\x00\x00"


def test_any_version_bytes_and_any_padding_are_accepted() -> None:
    frame = bytearray(PING_HELLO)
    frame[0:2] = b"\x07\x09"
    assert decode_message(bytes(frame)).version == (7, 9)
    # the old 1027-byte padding
    body = bytes.fromhex("110001f1") + b"\x20\x03\xf4" + bytes(0x3F4)
    old = bytes.fromhex("0100") + len(body).to_bytes(2, "big") + bytes(4) + body
    assert len(old) == 1027
    assert decode_message(old).opcode == Opcode.PING


def test_unknown_tags_are_skipped_and_kept() -> None:
    body = bytes.fromhex("110001f1") + bytes.fromhex("3f0002abcd") + bytes.fromhex("3f0000")
    frame = bytes.fromhex("0100") + len(body).to_bytes(2, "big") + bytes(4) + body
    message = decode_message(frame)
    assert message.opcode == Opcode.PING
    assert message.unknown == ((0x3F, b"\xab\xcd"), (0x3F, b""))


def _frame(body_hex: str) -> bytes:
    body = bytes.fromhex(body_hex.replace(" ", ""))
    return bytes.fromhex("0100") + len(body).to_bytes(2, "big") + (9).to_bytes(4, "big") + body


@pytest.mark.parametrize(
    "body_hex, why",
    [
        ("110001f1 110001f1", "duplicate opcode"),
        ("110002f1f1", "opcode of two bytes"),
        ("110001f1 030003 010203", "client IP of 3 bytes"),
        ("110001f1 050005 0102030405", "server IP of 5 bytes"),
        ("110001f1 120010 00", "item runs past the body"),
        ("110001f1 020001 61 020001 62", "duplicate SNI"),
    ],
)
def test_malformed_frames_raise_protocol_error_with_the_id(body_hex: str, why: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_message(_frame(body_hex))
    assert info.value.code == ErrorCode.FORMAT, why
    assert info.value.message_id == 9


def test_wrong_size_ski_and_digest_are_treated_as_absent() -> None:
    message = decode_message(_frame("110001 15 040003 010203 010002 aaaa"))
    assert message.ski is None
    assert message.digest is None


def test_trailing_bytes_shorter_than_an_item_header_are_ignored() -> None:
    assert decode_message(_frame("110001f1 0000")).opcode == Opcode.PING


def test_stream_decoder_byte_at_a_time_equals_one_chunk() -> None:
    stream = PING_ID0 + ECDSA_SIGN + KEY_NOT_FOUND
    whole = MessageDecoder()
    whole.receive_data(stream)
    expected = []
    while (m := whole.next_message()) is not NEED_DATA:
        expected.append(m)
    assert len(expected) == 3

    drip = MessageDecoder()
    got = []
    for i in range(len(stream)):
        drip.receive_data(stream[i : i + 1])
        while (m := drip.next_message()) is not NEED_DATA:
            got.append(m)
    assert got == expected
    assert drip.buffered == 0


optional_bytes = st.none() | st.binary(max_size=300)
messages = st.builds(
    Message,
    id=st.integers(0, 0xFFFFFFFF),
    opcode=st.none() | st.integers(0, 255),
    payload=optional_bytes,
    ski=st.none() | st.binary(min_size=20, max_size=20),
    sni=optional_bytes,
    client_ip=st.none() | st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16),
    server_ip=st.none() | st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16),
    cert_id=optional_bytes,
    digest=st.none() | st.binary(min_size=32, max_size=32),
    custom_func_name=optional_bytes,
    extra=optional_bytes,
    span_context=optional_bytes,
    request_context=optional_bytes,
    compliance_region=st.none() | st.integers(1, 255),
    unknown=st.lists(st.tuples(st.integers(0x30, 0x3F), st.binary(max_size=50)), max_size=3).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_any_message_round_trips(message: Message) -> None:
    encoded = encode_message(message)
    assert len(encoded) >= 1024
    assert decode_message(encoded) == message


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    decoder = MessageDecoder()
    decoder.receive_data(data)
    for _ in range(100):
        try:
            if decoder.next_message() is NEED_DATA:
                break
        except ProtocolError:
            break


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=8, max_size=600), st.integers(0, 0xFFFF))
def test_random_bodies_behind_a_valid_header_raise_only_protocol_error(body: bytes, message_id: int) -> None:
    frame = bytes.fromhex("0100") + len(body).to_bytes(2, "big") + message_id.to_bytes(4, "big") + body
    try:
        decode_message(frame)
    except ProtocolError as exc:
        assert exc.message_id == message_id
def test_padding_item_is_the_one_padding_rule() -> None:
    from keyless.protocol.constants import HEADER_SIZE, PADDED_SIZE
    from keyless.protocol.message import padding_item

    for body_size in range(0, PADDED_SIZE - HEADER_SIZE - 2):  # room for the item header: exactly 1024
        item = padding_item(body_size)
        assert item[0] == 0x20 and HEADER_SIZE + body_size + len(item) == PADDED_SIZE
    for body_size in (PADDED_SIZE - HEADER_SIZE, PADDED_SIZE, 5000):  # already long enough: no item
        assert padding_item(body_size) == b""
