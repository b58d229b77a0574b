"""The TLS record layer and the handshake reassembler, before and after keys are installed.

``tls_record`` reads its input as a small program that builds the peer's byte stream: raw bytes (a forged
header, garbage), records sealed under the receiver's real key (TLS 1.3 with a fuzzer-chosen inner plaintext,
so content type and padding are the fuzzer's; TLS 1.2 AES-GCM or ChaCha20 with a fuzzer-chosen outer type),
and bit flips of what was built so far. The stream goes into a ``RecordLayer`` whole and in pieces; handshake
payloads go through the ``HandshakeReassembler``.

Invariants: only ``TLSAlert`` escapes, never with internal_error; a record never carries more than 2^14
bytes; the outcome (records, then the alert) is the same whole and split; early-data skipping stays within
its budget.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.record import MAX_PLAINTEXT, HandshakeReassembler, RecordLayer
from keyless.tls.suites import TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256
from tests.fuzz.harness import Target, check, chunks

SECRET = bytes(range(48))
MODES = ("plaintext", "tls13-aes128", "tls13-aes256", "tls13-chacha", "tls12-gcm", "tls12-chacha")
_SUITES13 = {"tls13-aes128": TLS_AES_128_GCM_SHA256, "tls13-aes256": TLS_AES_256_GCM_SHA384,
             "tls13-chacha": TLS_CHACHA20_POLY1305_SHA256}


def _keyed(mode: str, layer: RecordLayer, *, read: bool) -> None:
    if mode in _SUITES13:
        secret = SECRET[: _SUITES13[mode].hash_length]
        (layer.set_read_key_tls13 if read else layer.set_write_key_tls13)(_SUITES13[mode], secret)
    elif mode == "tls12-gcm":
        (layer.set_read_key_tls12 if read else layer.set_write_key_tls12)(AESGCM, SECRET[:16], SECRET[16:20])
    elif mode == "tls12-chacha":
        (layer.set_read_key_tls12 if read else layer.set_write_key_tls12)(ChaCha20Poly1305, SECRET[:32],
                                                                           SECRET[32:44])


def _aad12(seq: int, content_type: int, length: int) -> bytes:
    """RFC 5246 §6.2.3.3 additional data, written here from the RFC (not taken from the code under test)."""
    return seq.to_bytes(8, "big") + bytes((content_type, 3, 3)) + length.to_bytes(2, "big")


def _seal(mode: str, sender: RecordLayer, outer_type: int, body: bytes) -> bytes:
    """One record sealed under the sender's key with nothing checked: TLS 1.3 ``body`` is the whole inner
    plaintext (content, type byte, zero padding: whatever the fuzzer wrote)."""
    write = sender._write  # the sender's key and sequence number: the harness plays a misbehaving peer
    seq = write.seq
    write.seq += 1
    aead = write.aead
    assert aead is not None
    if mode in _SUITES13:
        header = bytes((outer_type,)) + b"\x03\x03" + (len(body) + 16).to_bytes(2, "big")
        return header + aead.encrypt((write.iv ^ seq).to_bytes(12, "big"), body, header)
    aad = _aad12(seq, outer_type, len(body))
    if write.explicit_nonce:
        explicit = seq.to_bytes(8, "big")
        sealed = explicit + aead.encrypt(write.iv.to_bytes(4, "big") + explicit, body, aad)
    else:
        sealed = aead.encrypt((write.iv ^ seq).to_bytes(12, "big"), body, aad)
    return bytes((outer_type,)) + b"\x03\x03" + len(sealed).to_bytes(2, "big") + sealed


def build_stream(mode: str, program: bytes) -> bytes:
    """Op byte, then: 0-3 raw bytes (len u8), 4-5 sealed record (type u8, len u16), 6 bit flip (pos u16)."""
    sender = RecordLayer()
    _keyed(mode, sender, read=False)
    wire = bytearray()
    i = 0
    while i < len(program):
        op = program[i] % 8
        i += 1
        if op <= 3 or mode == "plaintext":
            n = program[i] if i < len(program) else 0
            wire += program[i + 1 : i + 1 + n]
            i += 1 + n
        elif op <= 5:
            if i + 3 > len(program):
                break
            outer_type, n = program[i], int.from_bytes(program[i + 1 : i + 3], "big") % (MAX_PLAINTEXT + 300)
            body = program[i + 3 : i + 3 + n]
            i += 3 + n
            wire += _seal(mode, sender, outer_type, body)
        elif op == 6 and wire:
            if i + 2 > len(program):
                break
            position = int.from_bytes(program[i : i + 2], "big")
            wire[position % len(wire)] ^= 1 << (program[i + 1] % 8)
            i += 2
        else:
            i += 1
    return bytes(wire)


def _outcome(mode: str, flags: int, wire: bytes, size_byte: int) -> tuple[list[tuple[int, bytes]], int | None]:
    receiver = RecordLayer()
    _keyed(mode, receiver, read=True)
    if flags & 1:
        receiver.skip_early_data(16384)
    if flags & 2:
        receiver.max_receive_fragment = 64 + (flags >> 2) * 8  # a record_size_limit the client asked for
    reassembler = HandshakeReassembler()
    records: list[tuple[int, bytes]] = []
    try:
        for piece in chunks(wire, size_byte):
            receiver.receive_data(piece)
            while True:
                record = receiver.next_record()
                if record is None:
                    break
                # RFC 8449 §4: record_size_limit bounds protected records only (the compatibility CCS and
                # every record before the keys are unprotected: bounded by the protocol's own maximum).
                protected = mode != "plaintext" and record.content_type != 20
                limit = receiver.max_receive_fragment if protected else MAX_PLAINTEXT
                check(len(record.payload) <= limit and receiver.max_receive_fragment <= MAX_PLAINTEXT,
                      f"record of {len(record.payload)} bytes passed a {limit}-byte limit")
                records.append((record.content_type, bytes(record.payload)))
                if record.content_type == 22:
                    whole = reassembler.whole_message(record.payload)
                    if whole is None:
                        reassembler.feed(record.payload)
                        while reassembler.next_message() is not None:
                            pass
    except TLSAlert as alert:
        check(alert.description != AlertDescription.internal_error, f"internal_error alert: {alert}")
        return records, int(alert.description)
    return records, None


def one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    mode = MODES[data[0] % len(MODES)]
    flags, size_byte = data[1], data[2]
    wire = build_stream(mode, data[3:])
    whole = _outcome(mode, flags, wire, 0xFF)
    check(_outcome(mode, flags, wire, size_byte) == whole, "a split read changed the records or the alert")


TARGETS = [
    Target("tls_record", one_input, "tls_record",
           "record layer (plaintext, TLS 1.3 and 1.2 AEADs, early-data skip, size limit) + reassembler",
           max_len=40000),
]
