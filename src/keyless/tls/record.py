"""The TLS record layer (RFC 8446 §5, RFC 5246 §6.2, RFC 5288, RFC 7905): framing, limits and AEAD protection.

Sans-IO and bounded: ``receive_data`` appends bytes, ``next_record`` returns one checked (and, once a read key
is set, decrypted) record or ``None`` when more bytes are needed; ``write`` fragments and protects, and
``data_to_send`` hands back the wire bytes. Every problem is a ``TLSAlert`` carrying the RFC's alert.

The shape follows Go's ``crypto/tls/conn.go``: the 5-byte header is checked before a body is buffered
(an oversize length is refused at once), the first record must look like TLS, and the sequence number
fails before it could wrap. Handshake messages are put back together from the payloads by
``reassembly.HandshakeReassembler``.

Performance: received chunks are kept as read-only ``memoryview``s (no copy; only a record straddling two
socket reads is joined), bodies are decrypted straight from them, AEAD objects are built once per key, and
the nonce is an integer XOR, so a 16 KB record costs little more than the AEAD itself. A growing and
shrinking ``bytearray`` would instead pay for memmoves and, above glibc's mmap threshold, page faults.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.codec import take_joined
from keyless.tls.key_schedule import hmac_digest
from keyless.tls.reassembly import HandshakeReassembler as HandshakeReassembler  # its home before reassembly.py
from keyless.tls.suites import CipherSuite13

# Content types (RFC 8446 §5.1); plain ints here because this is the hot path.
CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
_KNOWN_TYPES = frozenset((CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA))

HEADER_LENGTH = 5
_HEADER = struct.Struct(">BHH")  # ContentType type, ProtocolVersion legacy_record_version, uint16 length
MAX_PLAINTEXT = 16384  # 2^14 (RFC 8446 §5.1)
MAX_CIPHERTEXT_TLS13 = MAX_PLAINTEXT + 256  # RFC 8446 §5.2
MAX_CIPHERTEXT_TLS12 = MAX_PLAINTEXT + 2048  # RFC 5246 §6.2.3
TAG_LENGTH = 16  # every AEAD we offer has a 16-byte tag
GCM_EXPLICIT_NONCE_LENGTH = 8  # RFC 5288 §3

# The sequence number is 64 bits and must never wrap (RFC 8446 §5.3, RFC 5246 §6.1): fail one short of it.
MAX_SEQUENCE = (1 << 64) - 1
# RFC 8446 §5.5: at most 2^24.5 full-size records under one AES-GCM key; we ask for a KeyUpdate well before.
AES_GCM_KEY_UPDATE_AFTER = 1 << 24
# ChaCha20-Poly1305's limit is above 2^64 records (RFC 8446 §5.5), i.e. only the sequence number bounds it.
CHACHA_KEY_UPDATE_AFTER = MAX_SEQUENCE

# Complete records may sit in the receive buffer while the caller drains events; this caps that backlog.
DEFAULT_MAX_BUFFERED = 1 << 20

_CCS_PAYLOAD = b"\x01"
_RECORD_VERSION = 0x0303  # what TLS 1.2 records carry once it is negotiated (RFC 5246 §6.2.1)
_TLS13 = 0x0304
_VERSION_BYTES = b"\x03\x03"


@dataclass(frozen=True, slots=True)
class Record:
    """One record's plaintext: the (inner, for protected TLS 1.3 records) content type and payload."""

    content_type: int
    payload: bytes


class TLS12SuiteLike(Protocol):
    """What the record layer needs of a TLS 1.2 cipher suite: its AEAD class."""

    @property
    def aead(self) -> type[AESGCM] | type[ChaCha20Poly1305]: ...


AEAD = AESGCM | ChaCha20Poly1305
_TYPE_BYTE = tuple(bytes((i,)) for i in range(256))


class _Direction:
    """Keys and sequence number for one direction. ``kind`` is 0 (none), 12 or 13."""

    __slots__ = ("aead", "explicit_nonce", "iv", "key_update_after", "kind", "seq")

    def __init__(self) -> None:
        self.aead: AEAD | None = None
        self.iv = 0  # TLS 1.3 / ChaCha20 1.2: the 12-byte IV as an int; GCM 1.2: the 4-byte salt as an int
        self.kind = 0
        self.seq = 0
        self.explicit_nonce = False
        self.key_update_after = MAX_SEQUENCE

    def __repr__(self) -> str:  # keys never in repr
        return f"<direction tls1{self.kind - 10 if self.kind else '?'} seq={self.seq}>"

    def set_tls13(self, suite: CipherSuite13, traffic_secret: bytes) -> None:
        """RFC 8446 §7.3: key and IV from the traffic secret; the sequence number restarts at 0."""
        hash_name = suite.hash_name
        key_info, iv_info = _KEY_IV_INFO.get(suite.code) or _key_iv_info(suite)
        key = hmac_digest(traffic_secret, key_info, hash_name)[: suite.key_length]
        iv = hmac_digest(traffic_secret, iv_info, hash_name)[: suite.iv_length]
        self.aead = suite.aead(key)
        self.iv = int.from_bytes(iv, "big")
        self.kind = 13
        self.seq = 0
        self.explicit_nonce = False
        self.key_update_after = AES_GCM_KEY_UPDATE_AFTER if suite.aead is AESGCM else CHACHA_KEY_UPDATE_AFTER

    def set_tls12(self, suite: TLS12SuiteLike | type[AESGCM] | type[ChaCha20Poly1305], key: bytes,
                  fixed_iv: bytes) -> None:
        aead_class = suite if isinstance(suite, type) else suite.aead
        if aead_class is AESGCM:
            if len(fixed_iv) != 4 or len(key) not in (16, 32):
                raise ValueError("AES-GCM in TLS 1.2 needs a 16/32-byte key and a 4-byte salt")
            self.aead = AESGCM(key)
            self.explicit_nonce = True  # RFC 5288 §3: salt(4) || explicit nonce(8), the latter sent in the record
        elif aead_class is ChaCha20Poly1305:
            if len(fixed_iv) != 12 or len(key) != 32:
                raise ValueError("ChaCha20-Poly1305 in TLS 1.2 needs a 32-byte key and a 12-byte IV")
            self.aead = ChaCha20Poly1305(key)
            self.explicit_nonce = False  # RFC 7905 §2: IV XOR padded sequence number, nothing sent
        else:
            raise ValueError("unsupported TLS 1.2 AEAD")
        self.iv = int.from_bytes(fixed_iv, "big")
        self.kind = 12
        self.seq = 0
        self.key_update_after = MAX_SEQUENCE

    def next_seq(self) -> int:
        seq = self.seq
        if seq >= MAX_SEQUENCE:
            raise TLSAlert(AlertDescription.internal_error, "sequence number would wrap")
        self.seq = seq + 1
        return seq


class RecordLayer:
    """Deframes, checks and unprotects received records; fragments and protects outgoing ones."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_out",
        "_pending_handshake",
        "_pending_handshake_size",
        "_plaintext_alerts_allowed",
        "_read",
        "_seen_first_record",
        "_skip_early_budget",
        "_write",
        "max_buffered",
        "max_fragment",
        "max_receive_fragment",
        "negotiated_version",
    )

    def __init__(self, *, max_buffered: int = DEFAULT_MAX_BUFFERED) -> None:
        # Received bytes as read-only views of what the socket gave us, consumed from the left.
        self._chunks: deque[memoryview] = deque()
        self._buffered = 0
        self._out: list[bytes] = []
        self._pending_handshake: list[bytes] = []  # handshake messages not yet sealed (coalesced)
        self._pending_handshake_size = 0
        self._read = _Direction()
        self._write = _Direction()
        self._seen_first_record = False
        self._skip_early_budget = 0
        self._plaintext_alerts_allowed = True  # until the TLS 1.3 application read key is in
        # Largest plaintext fragment we send (RFC 8449 record_size_limit lowers it) and accept.
        self.max_fragment = MAX_PLAINTEXT
        self.max_receive_fragment = MAX_PLAINTEXT
        self.max_buffered = max_buffered
        # Set by the connection once the ClientHello chose the version: TLS 1.3 ignores the record version
        # from then on, TLS 1.2 requires 0x0303; 0 = not chosen yet (only "3.x" is required).
        self.negotiated_version = 0

    def __repr__(self) -> str:
        return f"<RecordLayer read={self._read!r} write={self._write!r} buffered={self._buffered}>"

    # ---- keys -------------------------------------------------------------------------------------

    def set_read_key_tls13(self, suite: CipherSuite13, traffic_secret: bytes) -> None:
        # The first TLS 1.3 read key is the client's handshake key (we never accept 0-RTT); from the
        # second on (application keys, KeyUpdates) every record must be protected.
        self._plaintext_alerts_allowed = self._read.aead is None
        self._read.set_tls13(suite, traffic_secret)
        self._skip_early_budget = 0
        self._seen_first_record = True

    def set_write_key_tls13(self, suite: CipherSuite13, traffic_secret: bytes) -> None:
        self._flush_handshake()  # what was written before the key change goes out under the old key
        self._write.set_tls13(suite, traffic_secret)

    def set_read_key_tls12(self, suite: TLS12SuiteLike | type[AESGCM] | type[ChaCha20Poly1305], key: bytes,
                           fixed_iv: bytes) -> None:
        """``suite``: anything with an ``aead`` attribute (AESGCM or ChaCha20Poly1305), or that class itself."""
        self._read.set_tls12(suite, key, fixed_iv)
        self._seen_first_record = True

    def set_write_key_tls12(self, suite: TLS12SuiteLike | type[AESGCM] | type[ChaCha20Poly1305], key: bytes,
                            fixed_iv: bytes) -> None:
        self._flush_handshake()
        self._write.set_tls12(suite, key, fixed_iv)

    def skip_early_data(self, max_bytes: int) -> None:
        """RFC 8446 §4.2.10: we refused 0-RTT, so drop up to ``max_bytes`` of records we cannot read.

        With a read key set, records that fail to decrypt are the client's early data; without one (after a
        HelloRetryRequest) every application_data record is. The first record that opens ends the skipping.
        """
        self._skip_early_budget = max_bytes

    # ---- §5.5 limits: what the handshake needs to schedule a KeyUpdate ------------------------------

    @property
    def read_seq(self) -> int:
        """Records received under the current read key."""
        return self._read.seq

    @property
    def write_seq(self) -> int:
        """Records sealed under the current write key (coalesced handshake messages count once sealed)."""
        return self._write.seq

    @property
    def write_key_update_due(self) -> bool:
        """True once the write key has protected enough records that a KeyUpdate should follow (§5.5)."""
        return self._write.seq >= self._write.key_update_after

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as records."""
        return self._buffered

    # ---- receiving ------------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self._buffered + len(data) > self.max_buffered:
            # The caller is not draining records; refuse rather than hold unbounded input.
            raise TLSAlert(AlertDescription.internal_error, "receive buffer limit exceeded")
        if data:
            # Kept as received (no copy); a bytearray is frozen first so later changes cannot reach us.
            self._chunks.append(memoryview(data if isinstance(data, bytes) else bytes(data)))
            self._buffered += len(data)

    def next_record(self) -> Record | None:
        """The next whole record (decrypted if a read key is set), or None until more bytes arrive."""
        while True:
            if self._buffered < HEADER_LENGTH:
                return None
            first = self._chunks[0]
            if len(first) < HEADER_LENGTH:
                first = self._contiguous(HEADER_LENGTH)
            content_type, version, length = _HEADER.unpack_from(first)
            self._check_header(content_type, version, length)
            end = HEADER_LENGTH + length
            if self._buffered < end:
                return None
            if len(first) < end:
                first = self._contiguous(end)
            self._seen_first_record = True
            # Consume before opening: a record that fails is gone either way (the connection is dead).
            if len(first) == end:
                self._chunks.popleft()
            else:
                self._chunks[0] = first[end:]
            self._buffered -= end
            read = self._read
            if read.kind == 13:
                record = self._open_tls13(read, content_type, first[:HEADER_LENGTH].tobytes(), first[HEADER_LENGTH:end])
            else:
                record = self._open(content_type, first[HEADER_LENGTH:end])
            if record is not None:
                return record

    def _contiguous(self, n: int) -> memoryview:
        """The first chunk, merged with what follows until it holds ``n`` bytes (the caller checked that
        ``n`` bytes are buffered). Only the bytes of a record that straddles socket reads are copied."""
        chunks = self._chunks
        first = chunks[0]
        if len(first) >= n:
            return first
        parts: list[memoryview] = []
        got = 0
        while got < n:
            chunk = chunks.popleft()
            take = min(len(chunk), n - got)
            parts.append(chunk[:take])
            got += take
            if take < len(chunk):
                chunks.appendleft(chunk[take:])
        merged = memoryview(b"".join(parts))
        chunks.appendleft(merged)
        return merged

    def _check_header(self, content_type: int, version: int, length: int) -> None:
        """Go readRecordOrCCS: judge the header before buffering the body."""
        if content_type == APPLICATION_DATA and version == _RECORD_VERSION and self._read.kind == 13:
            # The common case once keys are in use, judged as the general rules below would.
            if length > MAX_CIPHERTEXT_TLS13:
                raise TLSAlert(AlertDescription.record_overflow, f"record of {length} bytes")
            return
        # The first record must be a handshake (or alert) record with a TLS-ish version: anything else is
        # not a TLS client (an HTTP request, say); refuse before waiting for a "body".
        if not self._seen_first_record and (content_type not in (HANDSHAKE, ALERT) or _major(version) != 3):
            raise TLSAlert(AlertDescription.unexpected_message, "first record does not look like TLS")
        if content_type not in _KNOWN_TYPES:
            raise TLSAlert(AlertDescription.unexpected_message, f"unknown record type {content_type}")
        read_kind = self._read.kind
        negotiated = self.negotiated_version
        if negotiated == _TLS13:
            pass  # RFC 8446 §5.1: legacy_record_version is ignored for every record but the initial ClientHello
        elif negotiated or read_kind:
            # RFC 5246 §6.2.1 / Appendix E.1: once TLS 1.2 is chosen, every record carries it (OpenSSL, Go).
            if version != _RECORD_VERSION:
                raise TLSAlert(AlertDescription.protocol_version, "wrong record version")
        elif _major(version) != 3:
            raise TLSAlert(AlertDescription.protocol_version, "wrong record version")
        if read_kind == 13:
            limit = MAX_CIPHERTEXT_TLS13 if content_type == APPLICATION_DATA else self.max_receive_fragment
        elif read_kind == 12:
            limit = MAX_CIPHERTEXT_TLS12
        elif self._skip_early_budget and content_type == APPLICATION_DATA:
            limit = MAX_CIPHERTEXT_TLS13  # refused 0-RTT records after a HelloRetryRequest: still ciphertext
        else:
            limit = MAX_PLAINTEXT  # RFC 8449 §4: record_size_limit applies to protected records only
        if length > limit:
            raise TLSAlert(AlertDescription.record_overflow, f"record of {length} bytes")

    def _open(self, content_type: int, fragment: memoryview) -> Record | None:
        """A record without TLS 1.3 protection (``next_record`` opens those directly)."""
        read = self._read
        if read.kind == 12:
            return self._open_tls12(read, content_type, fragment)
        if self._skip_early_budget and content_type == APPLICATION_DATA:
            self._skip(len(fragment))
            return None
        return _plaintext_record(content_type, fragment.tobytes())

    def _open_tls13(self, read: _Direction, content_type: int, header: bytes, fragment: memoryview) -> Record | None:
        if content_type != APPLICATION_DATA:
            if content_type == CHANGE_CIPHER_SPEC:
                # Appendix D.4: the compatibility CCS stays unprotected; the handshake decides if it is allowed.
                return _plaintext_record(content_type, fragment.tobytes())
            if content_type == ALERT and self._plaintext_alerts_allowed:
                # A client that rejects our certificate may alert before installing its handshake keys
                # (OpenSSL does): report its alert instead of answering unexpected_message. An unprotected
                # alert can only end a handshake, which anyone on the path can do by cutting the TCP stream.
                return _plaintext_record(content_type, fragment.tobytes())
            raise TLSAlert(AlertDescription.unexpected_message, "unprotected record after the key change")
        if len(fragment) < TAG_LENGTH + 1:
            raise TLSAlert(AlertDescription.bad_record_mac, "record shorter than the AEAD tag")
        aead = read.aead
        if aead is None:
            raise TLSAlert(AlertDescription.internal_error, "no read key")
        nonce = (read.iv ^ read.seq).to_bytes(12, "big")
        try:
            plaintext = aead.decrypt(nonce, fragment, header)
        except InvalidTag:
            if self._skip_early_budget:
                self._skip(len(fragment))
                return None
            raise TLSAlert(AlertDescription.bad_record_mac, "record failed to decrypt") from None
        self._skip_early_budget = 0
        if read.seq >= MAX_SEQUENCE:
            raise TLSAlert(AlertDescription.internal_error, "sequence number would wrap")
        read.seq += 1
        if len(plaintext) > self.max_receive_fragment + 1:
            # §5.4: TLSInnerPlaintext (content, type and padding) is at most 2^14 + 1 bytes.
            raise TLSAlert(AlertDescription.record_overflow, "inner plaintext too long")
        # §5.4: the real content type is the last non-zero byte; zeros after it are padding.
        if plaintext[-1]:
            inner_type = plaintext[-1]
            content = plaintext[:-1]
        else:
            stripped = plaintext.rstrip(b"\x00")
            if not stripped:
                raise TLSAlert(AlertDescription.unexpected_message, "record with no content type")
            inner_type = stripped[-1]
            content = stripped[:-1]
        if len(content) > self.max_receive_fragment:
            raise TLSAlert(AlertDescription.record_overflow, "inner plaintext too long")
        if inner_type == CHANGE_CIPHER_SPEC or inner_type not in _KNOWN_TYPES:
            raise TLSAlert(AlertDescription.unexpected_message, f"protected record of type {inner_type}")
        if not content and inner_type != APPLICATION_DATA:
            raise TLSAlert(AlertDescription.unexpected_message, "empty non-application record")
        return Record(inner_type, content)

    def _open_tls12(self, read: _Direction, content_type: int, fragment: memoryview) -> Record:
        aead = read.aead
        if aead is None:
            raise TLSAlert(AlertDescription.internal_error, "no read key")
        seq = read.seq
        explicit = GCM_EXPLICIT_NONCE_LENGTH if read.explicit_nonce else 0
        plaintext_length = len(fragment) - explicit - TAG_LENGTH
        if plaintext_length < 0:
            raise TLSAlert(AlertDescription.bad_record_mac, "record shorter than nonce and tag")
        if plaintext_length > self.max_receive_fragment:
            raise TLSAlert(AlertDescription.record_overflow, "plaintext too long")
        if explicit:
            nonce = read.iv.to_bytes(4, "big") + fragment[:explicit].tobytes()
        else:
            nonce = (read.iv ^ seq).to_bytes(12, "big")
        aad = _aad12(seq, content_type, plaintext_length)
        try:
            plaintext = aead.decrypt(nonce, fragment[explicit:] if explicit else fragment, aad)
        except InvalidTag:
            raise TLSAlert(AlertDescription.bad_record_mac, "record failed to decrypt") from None
        read.next_seq()
        return _plaintext_record(content_type, plaintext)

    def _skip(self, length: int) -> None:
        """Drop one record of refused early data, within the budget."""
        if length > self._skip_early_budget:
            raise TLSAlert(AlertDescription.bad_record_mac, "too much undecryptable early data")
        self._skip_early_budget -= length

    # ---- sending ----------------------------------------------------------------------------------------

    def write(self, content_type: int, payload: bytes) -> None:
        """Queue ``payload`` as records of ``content_type``, fragmented at ``max_fragment`` and protected.

        Consecutive handshake messages share records (RFC 8446 §5.1 allows coalescing; OpenSSL does it):
        a flight costs one AEAD call instead of one per message. They are sealed at the next write of
        another type, key change or ``data_to_send``, so ordering and keys are as if written at once.
        """
        if not payload:
            return  # we never send empty records (RFC 8446 §5.1 forbids them for everything but app data)
        if content_type == HANDSHAKE:
            self._pending_handshake.append(payload)
            self._pending_handshake_size += len(payload)
            if self._pending_handshake_size >= self.max_fragment:
                self._flush_handshake()
            return
        if self._pending_handshake:
            self._flush_handshake()
        self._write_records(content_type, payload)

    def _flush_handshake(self) -> None:
        parts = self._pending_handshake
        if not parts:
            return
        payload = take_joined(parts)
        self._pending_handshake_size = 0
        if len(payload) <= self.max_fragment:
            self._write_fragment(HANDSHAKE, payload)  # a whole flight usually fits one record
        else:
            self._write_records(HANDSHAKE, payload)

    def _write_records(self, content_type: int, payload: bytes) -> None:
        step = self.max_fragment
        total = len(payload)
        if total <= step:
            self._write_fragment(content_type, payload)
            return
        view = memoryview(payload)
        try:
            for start in range(0, total, step):
                self._write_fragment(content_type, view[start:start + step])
        finally:
            view.release()

    def _write_fragment(self, content_type: int, fragment: bytes | memoryview) -> None:
        write = self._write
        out = self._out
        if write.kind == 13:
            aead = write.aead
            if aead is None:
                raise TLSAlert(AlertDescription.internal_error, "no write key")
            inner = b"".join((fragment, _TYPE_BYTE[content_type]))
            header = b"\x17\x03\x03" + (len(inner) + TAG_LENGTH).to_bytes(2, "big")
            seq = write.seq
            if seq >= MAX_SEQUENCE:
                raise TLSAlert(AlertDescription.internal_error, "sequence number would wrap")
            write.seq = seq + 1
            nonce = (write.iv ^ seq).to_bytes(12, "big")
            out.append(header)
            out.append(aead.encrypt(nonce, inner, header))
        elif write.kind == 12:
            aead = write.aead
            if aead is None:
                raise TLSAlert(AlertDescription.internal_error, "no write key")
            seq = write.next_seq()
            aad = _aad12(seq, content_type, len(fragment))
            if write.explicit_nonce:
                explicit = seq.to_bytes(8, "big")  # Go does the same: the sequence number is a fine unique nonce
                sealed = aead.encrypt(write.iv.to_bytes(4, "big") + explicit, fragment, aad)
                out.append(_TYPE_BYTE[content_type] + _VERSION_BYTES + (len(sealed) + 8).to_bytes(2, "big") + explicit)
            else:
                sealed = aead.encrypt((write.iv ^ seq).to_bytes(12, "big"), fragment, aad)
                out.append(_TYPE_BYTE[content_type] + _VERSION_BYTES + len(sealed).to_bytes(2, "big"))
            out.append(sealed)
        else:
            out.append(_TYPE_BYTE[content_type] + _VERSION_BYTES + len(fragment).to_bytes(2, "big"))
            out.append(bytes(fragment))

    def data_to_send(self) -> bytes:
        if self._pending_handshake:
            self._flush_handshake()
        out = self._out
        if not out:
            return b""
        data = b"".join(out)
        out.clear()
        return data


_KEY_IV_INFO: dict[int, tuple[bytes, bytes]] = {}  # by cipher suite code


def _key_iv_info(suite: CipherSuite13) -> tuple[bytes, bytes]:
    """The HMAC inputs for a suite's traffic key and IV (RFC 8446 §7.3): two constants per suite."""
    info = _KEY_IV_INFO[suite.code] = (
        _label_info(b"key", suite.key_length, suite.hash_length),
        _label_info(b"iv", suite.iv_length, suite.hash_length),
    )
    return info


def _label_info(label: bytes, length: int, hash_length: int) -> bytes:
    """HkdfLabel(label, "", length) || 0x01: with length <= the hash size, HKDF-Expand-Label is one HMAC
    over this (RFC 8446 §7.1, RFC 5869 §2.3)."""
    if length > hash_length:
        raise ValueError("a traffic key or IV longer than the hash needs more than one HKDF block")
    full = b"tls13 " + label
    return length.to_bytes(2, "big") + bytes((len(full),)) + full + b"\x00\x01"


def _major(version: int) -> int:
    return version >> 8


def _aad12(seq: int, content_type: int, length: int) -> bytes:
    """RFC 5246 §6.2.3.3: seq_num(8) || type || version || length."""
    return seq.to_bytes(8, "big") + bytes((content_type,)) + _VERSION_BYTES + length.to_bytes(2, "big")


def _plaintext_record(content_type: int, payload: bytes) -> Record:
    if not payload and content_type != APPLICATION_DATA:
        raise TLSAlert(AlertDescription.unexpected_message, "empty non-application record")
    if content_type == CHANGE_CIPHER_SPEC and payload != _CCS_PAYLOAD:
        raise TLSAlert(AlertDescription.unexpected_message, "change_cipher_spec is not the single byte 1")
    return Record(content_type, payload)
