"""Record layer: round trips for both versions and every suite, framing splits, limits and the RFC's alerts.

Protected records built by hand here follow the RFC formulas directly (nonce = iv XOR seq, the AADs of
RFC 8446 §5.2 / RFC 5246 §6.2.3.3), so the layer is checked against the specification, not against itself.
"""

from __future__ import annotations

import os
import random

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.key_schedule import hkdf_expand_label
from keyless.tls.record import (
    MAX_SEQUENCE,
    HandshakeReassembler,
    Record,
    RecordLayer,
)
from keyless.tls.suites import DEFAULT_TLS13_SUITES, TLS_AES_128_GCM_SHA256, CipherSuite13

SECRET = bytes(range(32)) + bytes(range(16))


def secret_for(suite: CipherSuite13) -> bytes:
    return SECRET[: suite.hash_length]


def pair13(suite: CipherSuite13 = TLS_AES_128_GCM_SHA256) -> tuple[RecordLayer, RecordLayer]:
    sender, receiver = RecordLayer(), RecordLayer()
    sender.set_write_key_tls13(suite, secret_for(suite))
    receiver.set_read_key_tls13(suite, secret_for(suite))
    return sender, receiver


TLS12_AEADS = [
    pytest.param(AESGCM, 16, 4, id="aes128gcm"),
    pytest.param(AESGCM, 32, 4, id="aes256gcm"),
    pytest.param(ChaCha20Poly1305, 32, 12, id="chacha20"),
]


def pair12(aead: type[AESGCM] | type[ChaCha20Poly1305], key_len: int, iv_len: int) -> tuple[RecordLayer, RecordLayer]:
    key, iv = os.urandom(key_len), os.urandom(iv_len)
    sender, receiver = RecordLayer(), RecordLayer()
    sender.set_write_key_tls12(aead, key, iv)
    receiver.set_read_key_tls12(aead, key, iv)
    return sender, receiver


def drain(layer: RecordLayer) -> list[Record]:
    out: list[Record] = []
    for _ in range(10_000):
        record = layer.next_record()
        if record is None:
            return out
        out.append(record)
    raise AssertionError("record layer did not stop")


def alert_of(action: object) -> AlertDescription:
    with pytest.raises(TLSAlert) as info:
        action()  # type: ignore[operator]
    return info.value.description


def seal13(suite: CipherSuite13, seq: int, inner: bytes, *, outer_type: int = 23) -> bytes:
    """A TLS 1.3 record sealed straight from RFC 8446 §5.2 (``inner`` = content || type || zeros)."""
    secret = secret_for(suite)
    key = hkdf_expand_label(suite.hash_name, secret, b"key", b"", suite.key_length)
    iv = hkdf_expand_label(suite.hash_name, secret, b"iv", b"", 12)
    nonce = bytes(a ^ b for a, b in zip(iv, seq.to_bytes(12, "big"), strict=True))
    header = bytes((outer_type, 3, 3)) + (len(inner) + 16).to_bytes(2, "big")
    return header + suite.aead(key).encrypt(nonce, inner, header)


# ---- round trips -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", DEFAULT_TLS13_SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("size", [1, 100, 16384, 16385, 50000])
def test_tls13_round_trip_every_suite(suite: CipherSuite13, size: int) -> None:
    sender, receiver = pair13(suite)
    payload = os.urandom(size)
    sender.write(23, payload)
    sender.write(22, b"\x18\x00\x00\x01\x00")
    wire = sender.data_to_send()
    assert sender.data_to_send() == b""
    receiver.receive_data(wire)
    records = drain(receiver)
    assert b"".join(r.payload for r in records[:-1]) == payload
    assert all(r.content_type == 23 and len(r.payload) <= 16384 for r in records[:-1])
    assert len(records) - 1 == -(-size // 16384)
    assert records[-1] == Record(22, b"\x18\x00\x00\x01\x00")
    assert receiver.read_seq == sender.write_seq == len(records)


@pytest.mark.parametrize(("aead", "key_len", "iv_len"), TLS12_AEADS)
@pytest.mark.parametrize("size", [1, 16384, 40000])
def test_tls12_round_trip_every_aead(aead: type[AESGCM], key_len: int, iv_len: int, size: int) -> None:
    sender, receiver = pair12(aead, key_len, iv_len)
    payload = os.urandom(size)
    sender.write(23, payload)
    sender.write(21, b"\x01\x00")
    receiver.receive_data(sender.data_to_send())
    records = drain(receiver)
    assert b"".join(r.payload for r in records[:-1]) == payload
    assert records[-1] == Record(21, b"\x01\x00")


def test_tls12_gcm_matches_rfc5288_layout() -> None:
    key, salt = os.urandom(16), os.urandom(4)
    sender = RecordLayer()
    sender.set_write_key_tls12(AESGCM, key, salt)
    sender.write(23, b"first")
    sender.write(23, b"hello")
    wire = sender.data_to_send()
    second = wire[5 + 8 + 5 + 16 :]
    assert second[:5] == b"\x17\x03\x03" + (8 + 5 + 16).to_bytes(2, "big")
    explicit = second[5:13]
    assert explicit == (1).to_bytes(8, "big")
    aad = (1).to_bytes(8, "big") + b"\x17\x03\x03" + (5).to_bytes(2, "big")
    assert AESGCM(key).decrypt(salt + explicit, second[13:], aad) == b"hello"


def test_tls12_chacha_matches_rfc7905_layout() -> None:
    key, iv = os.urandom(32), os.urandom(12)
    sender = RecordLayer()
    sender.set_write_key_tls12(ChaCha20Poly1305, key, iv)
    sender.write(22, b"\x14\x00\x00\x0cfinishedhash")
    wire = sender.data_to_send()
    assert wire[:5] == b"\x16\x03\x03" + (16 + 16).to_bytes(2, "big")
    aad = bytes(8) + b"\x16\x03\x03" + (16).to_bytes(2, "big")
    assert ChaCha20Poly1305(key).decrypt(iv, wire[5:], aad) == b"\x14\x00\x00\x0cfinishedhash"


@pytest.mark.parametrize("suite", DEFAULT_TLS13_SUITES, ids=lambda s: s.name)
def test_tls13_record_is_what_the_rfc_says(suite: CipherSuite13) -> None:
    sender = RecordLayer()
    sender.set_write_key_tls13(suite, secret_for(suite))
    sender.write(23, b"a")
    sender.write(22, b"b")
    wire = sender.data_to_send()
    assert wire == seal13(suite, 0, b"a\x17") + seal13(suite, 1, b"b\x16")


def layers(kind: str) -> tuple[RecordLayer, RecordLayer, RecordLayer]:
    """A sender and two receivers sharing keys."""
    sender, first, second = RecordLayer(), RecordLayer(), RecordLayer()
    if kind == "tls13":
        sender.set_write_key_tls13(TLS_AES_128_GCM_SHA256, SECRET[:32])
        for receiver in (first, second):
            receiver.set_read_key_tls13(TLS_AES_128_GCM_SHA256, SECRET[:32])
    else:
        aead, key, iv = (AESGCM, SECRET[:16], SECRET[:4]) if kind == "gcm12" else (ChaCha20Poly1305, SECRET[:32],
                                                                                     SECRET[:12])
        sender.set_write_key_tls12(aead, key, iv)
        for receiver in (first, second):
            receiver.set_read_key_tls12(aead, key, iv)
    return sender, first, second


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["tls13", "gcm12", "chacha12"])
def test_random_splits_equal_one_chunk(kind: str, seed: int) -> None:
    rng = random.Random(seed)
    sender, whole, split = layers(kind)
    payloads = [rng.randbytes(rng.randrange(1, 40000)) for _ in range(4)]
    for payload in payloads:
        sender.write(23, payload)
    wire = sender.data_to_send()
    whole.receive_data(wire)
    expected = drain(whole)
    assert b"".join(r.payload for r in expected) == b"".join(payloads)
    got: list[Record] = []
    position = 0
    while position < len(wire):
        step = rng.choice((1, 2, 5, 7, 100, 16389, 70000))
        split.receive_data(wire[position : position + step])
        position += step
        got.extend(drain(split))
    assert got == expected and split.buffered == 0


def test_plaintext_records_and_max_fragment() -> None:
    layer = RecordLayer()
    layer.max_fragment = 1000
    layer.write(22, bytes(2500))
    wire = layer.data_to_send()
    assert len(wire) == 2500 + 3 * 5
    assert wire[:5] == b"\x16\x03\x03\x03\xe8"
    receiver = RecordLayer()
    receiver.receive_data(wire)
    assert [len(r.payload) for r in drain(receiver)] == [1000, 1000, 500]


def test_byte_at_a_time_equals_one_chunk() -> None:
    sender, receiver = pair13()
    sender.write(23, os.urandom(3000))
    sender.write(21, b"\x01\x00")
    sender.write(23, b"x")
    wire = sender.data_to_send()
    _, whole = pair13()
    whole.receive_data(wire)
    expected = drain(whole)
    got: list[Record] = []
    for i in range(len(wire)):
        receiver.receive_data(wire[i : i + 1])
        got.extend(drain(receiver))
    assert got == expected and len(got) == 3
    assert receiver.buffered == 0


def test_padding_is_stripped() -> None:
    _, receiver = pair13()
    receiver.receive_data(seal13(TLS_AES_128_GCM_SHA256, 0, b"padded\x17" + bytes(300)))
    assert receiver.next_record() == Record(23, b"padded")


def test_empty_application_data_is_allowed() -> None:
    _, receiver = pair13()
    receiver.receive_data(seal13(TLS_AES_128_GCM_SHA256, 0, b"\x17"))
    assert receiver.next_record() == Record(23, b"")


# ---- limits and alerts ---------------------------------------------------------------------------------


def test_all_zero_inner_plaintext_is_unexpected_message() -> None:
    _, receiver = pair13()
    receiver.receive_data(seal13(TLS_AES_128_GCM_SHA256, 0, bytes(10)))
    assert alert_of(receiver.next_record) == AlertDescription.unexpected_message


@pytest.mark.parametrize("inner", [b"\x16", b"\x15", b"\x01\x14", b"data\x63"], ids=["hs", "alert", "ccs", "unknown"])
def test_bad_inner_types_are_unexpected_message(inner: bytes) -> None:
    _, receiver = pair13()
    receiver.receive_data(seal13(TLS_AES_128_GCM_SHA256, 0, inner))
    assert alert_of(receiver.next_record) == AlertDescription.unexpected_message


def test_inner_plaintext_over_2_14_is_record_overflow() -> None:
    _, receiver = pair13()
    receiver.receive_data(seal13(TLS_AES_128_GCM_SHA256, 0, bytes(16385) + b"\x17"))
    assert alert_of(receiver.next_record) == AlertDescription.record_overflow


def test_tls13_ciphertext_limit_checked_on_the_header() -> None:
    _, receiver = pair13()
    receiver.receive_data(b"\x17\x03\x03" + (16384 + 257).to_bytes(2, "big"))  # no body needed to refuse
    assert alert_of(receiver.next_record) == AlertDescription.record_overflow
    _, ok = pair13()
    ok.receive_data(b"\x17\x03\x03" + (16384 + 256).to_bytes(2, "big"))
    assert ok.next_record() is None  # legal size: wait for the body


@pytest.mark.parametrize(("aead", "key_len", "iv_len"), TLS12_AEADS)
def test_tls12_ciphertext_limit(aead: type[AESGCM], key_len: int, iv_len: int) -> None:
    _, receiver = pair12(aead, key_len, iv_len)
    receiver.receive_data(b"\x17\x03\x03" + (16384 + 2049).to_bytes(2, "big"))
    assert alert_of(receiver.next_record) == AlertDescription.record_overflow


def test_plaintext_over_2_14_is_record_overflow() -> None:
    receiver = RecordLayer()
    receiver.receive_data(b"\x16\x03\x01" + (16385).to_bytes(2, "big"))
    assert alert_of(receiver.next_record) == AlertDescription.record_overflow


@pytest.mark.parametrize("first", [b"GET / HTTP/1.1\r\n", b"\x17\x03\x03\x00\x01x", b"\x16\x04\x00\x00\x01x"])
def test_first_record_must_look_like_tls(first: bytes) -> None:
    receiver = RecordLayer()
    receiver.receive_data(first)
    assert alert_of(receiver.next_record) == AlertDescription.unexpected_message


def test_unknown_content_type_after_first_record() -> None:
    receiver = RecordLayer()
    receiver.receive_data(b"\x16\x03\x01\x00\x01\x01" + b"\x63\x03\x03\x00\x01\x00")
    assert receiver.next_record() == Record(22, b"\x01")
    assert alert_of(receiver.next_record) == AlertDescription.unexpected_message


def test_record_version_is_fixed_once_keys_are_in_use() -> None:
    sender, receiver = pair13()
    sender.write(23, b"x")
    wire = bytearray(sender.data_to_send())
    wire[2] = 1
    receiver.receive_data(bytes(wire))
    assert alert_of(receiver.next_record) == AlertDescription.protocol_version


@pytest.mark.parametrize("suite", DEFAULT_TLS13_SUITES, ids=lambda s: s.name)
def test_tampered_record_is_bad_record_mac(suite: CipherSuite13) -> None:
    sender, receiver = pair13(suite)
    sender.write(23, b"attack at dawn")
    wire = bytearray(sender.data_to_send())
    wire[7] ^= 0x40
    receiver.receive_data(bytes(wire))
    assert alert_of(receiver.next_record) == AlertDescription.bad_record_mac


@pytest.mark.parametrize(("aead", "key_len", "iv_len"), TLS12_AEADS)
def test_tls12_tampered_and_short_records(aead: type[AESGCM], key_len: int, iv_len: int) -> None:
    sender, receiver = pair12(aead, key_len, iv_len)
    sender.write(23, b"attack at dawn")
    wire = bytearray(sender.data_to_send())
    wire[-1] ^= 1
    receiver.receive_data(bytes(wire))
    assert alert_of(receiver.next_record) == AlertDescription.bad_record_mac
    _, short = pair12(aead, key_len, iv_len)
    short.receive_data(b"\x17\x03\x03\x00\x0f" + bytes(15))
    assert alert_of(short.next_record) == AlertDescription.bad_record_mac


def test_tls12_wrong_sequence_number_fails() -> None:
    key, iv = os.urandom(32), os.urandom(12)
    sender, receiver = RecordLayer(), RecordLayer()
    sender.set_write_key_tls12(ChaCha20Poly1305, key, iv)
    receiver.set_read_key_tls12(ChaCha20Poly1305, key, iv)
    sender.write(23, b"one")
    sender.data_to_send()  # dropped: the receiver's sequence number is now behind
    sender.write(23, b"two")
    receiver.receive_data(sender.data_to_send())
    assert alert_of(receiver.next_record) == AlertDescription.bad_record_mac


def test_short_tls13_record_is_bad_record_mac() -> None:
    _, receiver = pair13()
    receiver.receive_data(b"\x17\x03\x03\x00\x10" + bytes(16))
    assert alert_of(receiver.next_record) == AlertDescription.bad_record_mac


def test_tls13_ccs_stays_unprotected_and_must_be_one() -> None:
    _, receiver = pair13()
    receiver.receive_data(b"\x14\x03\x03\x00\x01\x01")
    assert receiver.next_record() == Record(20, b"\x01")
    receiver.receive_data(b"\x14\x03\x03\x00\x01\x02")
    assert alert_of(receiver.next_record) == AlertDescription.unexpected_message


@pytest.mark.parametrize("record", [b"\x16\x03\x03\x00\x04\x14\x00\x00\x00", b"\x15\x03\x03\x00\x02\x01\x00"])
def test_tls13_unprotected_records_after_application_key(record: bytes) -> None:
    _, receiver = pair13()
    receiver.set_read_key_tls13(TLS_AES_128_GCM_SHA256, secret_for(TLS_AES_128_GCM_SHA256))  # application key
    receiver.receive_data(record)
    assert alert_of(receiver.next_record) == AlertDescription.unexpected_message


def test_tls13_unprotected_handshake_after_handshake_key() -> None:
    _, receiver = pair13()
    receiver.receive_data(b"\x16\x03\x03\x00\x04\x14\x00\x00\x00")
    assert alert_of(receiver.next_record) == AlertDescription.unexpected_message


def test_tls13_unprotected_alert_under_handshake_key_is_reported() -> None:
    # OpenSSL alerts before installing its handshake keys when it rejects our certificate.
    _, receiver = pair13()
    receiver.receive_data(b"\x15\x03\x03\x00\x02\x02\x30")
    assert receiver.next_record() == Record(21, b"\x02\x30")


@pytest.mark.parametrize("content_type", [20, 21, 22])
def test_empty_non_application_records(content_type: int) -> None:
    receiver = RecordLayer()
    receiver.receive_data(b"\x16\x03\x01\x00\x01\x01" + bytes((content_type,)) + b"\x03\x03\x00\x00")
    receiver.next_record()
    assert alert_of(receiver.next_record) == AlertDescription.unexpected_message


def test_sequence_number_never_wraps() -> None:
    sender, _ = pair13()
    sender._write.seq = MAX_SEQUENCE - 1
    sender.write(23, b"last one")
    assert alert_of(lambda: sender.write(23, b"one too many")) == AlertDescription.internal_error


def test_key_update_due_after_aes_gcm_limit() -> None:
    sender, _ = pair13()
    assert not sender.write_key_update_due
    sender._write.seq = 1 << 24
    assert sender.write_key_update_due
    sender.set_write_key_tls13(TLS_AES_128_GCM_SHA256, bytes(32))
    assert sender.write_seq == 0 and not sender.write_key_update_due


def test_receive_buffer_is_bounded() -> None:
    receiver = RecordLayer(max_buffered=100_000)
    receiver.receive_data(bytes(60_000))
    assert alert_of(lambda: receiver.receive_data(bytes(60_000))) == AlertDescription.internal_error


def test_refused_early_data_is_skipped_within_budget() -> None:
    early_suite = TLS_AES_128_GCM_SHA256
    other = RecordLayer()
    other.set_write_key_tls13(early_suite, bytes(32))  # the client's early-data key, unknown to us
    other.write(23, bytes(1000))
    other.write(23, bytes(1000))
    early = other.data_to_send()
    sender, receiver = pair13()
    receiver.skip_early_data(2100)
    sender.write(22, b"\x14\x00\x00\x00")
    receiver.receive_data(early + sender.data_to_send())
    assert drain(receiver) == [Record(22, b"\x14\x00\x00\x00")]
    # Budget exhausted: undecryptable data is a MAC failure again.
    receiver2 = pair13()[1]
    receiver2.skip_early_data(1500)
    receiver2.receive_data(early)
    assert alert_of(lambda: drain(receiver2)) == AlertDescription.bad_record_mac


def test_keys_not_in_repr() -> None:
    sender, receiver = pair13()
    text = repr(sender) + repr(receiver) + repr(sender._write)
    assert SECRET[:8].hex() not in text and "seq=0" in text


# ---- handshake reassembly --------------------------------------------------------------------------------


def message(msg_type: int, body: bytes) -> bytes:
    return bytes((msg_type,)) + len(body).to_bytes(3, "big") + body


def test_reassembler_coalesced_and_fragmented() -> None:
    first, second = message(1, os.urandom(700)), message(20, os.urandom(32))
    r = HandshakeReassembler()
    r.feed(first + second)
    assert r.next_message() == (1, first[4:], first)
    assert r.next_message() == (20, second[4:], second)
    assert r.next_message() is None and not r.pending
    for i in range(len(first)):
        assert r.next_message() is None
        r.feed(first[i : i + 1])
        assert r.pending or i == len(first) - 1
    assert r.next_message() == (1, first[4:], first)
    assert not r.pending


def test_reassembler_limits() -> None:
    r = HandshakeReassembler()  # a ClientHello may hold 64 KiB of extensions (issue 12): 65537 is fine now
    r.feed(b"\x01\x01\x00\x01")
    assert r.next_message() is None and r.pending
    r = HandshakeReassembler()
    assert alert_of(lambda: r.feed(b"\x01\x03\x00\x00")) == AlertDescription.illegal_parameter  # 192 KiB
    ok = HandshakeReassembler()
    ok.feed(b"\x01\x01\x00\x00")  # exactly 64 KiB: allowed
    assert ok.next_message() is None and ok.pending
    cert = HandshakeReassembler()
    cert.feed(b"\x0b\x04\x00\x00")  # a 256 KiB Certificate is allowed
    assert cert.next_message() is None
    too_big = HandshakeReassembler()
    assert alert_of(lambda: too_big.feed(b"\x0b\x04\x00\x01")) == AlertDescription.illegal_parameter
    small = HandshakeReassembler(max_message_size=100)
    small.feed(b"\x01\x00")
    assert alert_of(lambda: small.feed(b"\x00\x65")) == AlertDescription.illegal_parameter


def test_early_data_skipped_without_a_key_after_hello_retry() -> None:
    early_writer = RecordLayer()
    early_writer.set_write_key_tls13(TLS_AES_128_GCM_SHA256, bytes(32))
    early_writer.write(23, bytes(16384))  # a full-size early record: 16384 + 1 + 16 bytes of ciphertext
    receiver = RecordLayer()
    receiver.receive_data(b"\x16\x03\x01\x00\x01\x01")
    assert receiver.next_record() == Record(22, b"\x01")
    receiver.skip_early_data(20000)
    receiver.receive_data(early_writer.data_to_send() + b"\x14\x03\x03\x00\x01\x01" + b"\x16\x03\x03\x00\x01\x02")
    assert drain(receiver) == [Record(20, b"\x01"), Record(22, b"\x02")]


def test_handshake_messages_are_coalesced_in_order() -> None:
    sender, receiver = pair13()
    sender.write(22, b"\x08\x00\x00\x00")  # EncryptedExtensions
    sender.write(22, b"\x0b\x00\x00\x00")  # Certificate
    sender.write(21, b"\x01\x00")  # another type seals what came before, first
    sender.write(22, b"\x14\x00\x00\x00")
    wire = sender.data_to_send()
    receiver.receive_data(wire)
    assert drain(receiver) == [Record(22, b"\x08\x00\x00\x00\x0b\x00\x00\x00"), Record(21, b"\x01\x00"),
                               Record(22, b"\x14\x00\x00\x00")]
    assert sender.write_seq == 3


def test_key_change_seals_pending_handshake_under_the_old_key() -> None:
    sender = RecordLayer()
    sender.write(22, b"\x02\x00\x00\x00")  # ServerHello: plaintext
    sender.set_write_key_tls13(TLS_AES_128_GCM_SHA256, secret_for(TLS_AES_128_GCM_SHA256))
    sender.write(22, b"\x08\x00\x00\x00")
    wire = sender.data_to_send()
    assert wire[:9] == b"\x16\x03\x03\x00\x04\x02\x00\x00\x00"
    assert wire[9:] == seal13(TLS_AES_128_GCM_SHA256, 0, b"\x08\x00\x00\x00\x16")


def test_large_coalesced_flight_is_fragmented() -> None:
    sender, receiver = pair13()
    messages = [bytes((11,)) + (9000 - 4).to_bytes(3, "big") + os.urandom(9000 - 4) for _ in range(3)]
    for message in messages:
        sender.write(22, message)
    receiver.receive_data(sender.data_to_send())
    records = drain(receiver)
    assert b"".join(r.payload for r in records) == b"".join(messages)
    assert all(len(r.payload) <= 16384 for r in records)


def test_padding_counts_towards_the_inner_plaintext_limit() -> None:
    _, receiver = pair13()
    receiver.receive_data(seal13(TLS_AES_128_GCM_SHA256, 0, b"x\x17" + bytes(16384)))  # 16386 bytes
    assert alert_of(receiver.next_record) == AlertDescription.record_overflow
    _, ok = pair13()
    ok.receive_data(seal13(TLS_AES_128_GCM_SHA256, 0, b"x\x17" + bytes(16383)))  # 2^14 + 1: allowed
    assert ok.next_record() == Record(23, b"x")
