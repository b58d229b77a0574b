"""Whole handshake messages from handshake-record payloads (RFC 8446 §5.1, RFC 5246 §6.2.1: coalesced or
fragmented across records), each judged from its 4-byte header before its body is buffered.

Which alert a header earns (RFC 8446 §6.2, RFC 5246 §7.2.2):

- a type a client never sends (ServerHello, an unassigned number, ...) → ``unexpected_message``;
- a length the type's structure cannot reach (a 1 KiB Finished, a 2-byte KeyUpdate) → ``decode_error``:
  such a message cannot be parsed, whatever it holds;
- a length the structure allows but our memory bound does not (a client Certificate chain over 256 KiB)
  → ``illegal_parameter``, as OpenSSL answers an excessive message size.

A ClientHello may be as long as its vectors allow (about 128 KiB: a 64 KiB padding extension is legal), so
it is bounded by its structure, not by a smaller round number.
"""

from __future__ import annotations

from collections.abc import Mapping

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.messages import HandshakeType

# The most each message a client can send may hold, from its structure (RFC 8446 §4, RFC 5246 §7.4).
MAX_CLIENT_HELLO_BODY = (
    2  # legacy_version
    + 32  # random
    + 1 + 32  # legacy_session_id<0..32>
    + 2 + 65534  # cipher_suites<2..2^16-2>
    + 1 + 255  # legacy_compression_methods<1..2^8-1>
    + 2 + 65535  # extensions<8..2^16-1>
)
MAX_FINISHED_BODY = 48  # verify_data is one hash long: SHA-384 is the longest we negotiate (12 in TLS 1.2)
MAX_CERTIFICATE_VERIFY_BODY = 2 + 2 + 65535  # SignatureScheme, signature<0..2^16-1>
MAX_CLIENT_KEY_EXCHANGE_BODY = 2 + 65535  # EncryptedPreMasterSecret<0..2^16-1> (ECDHE: 1 + 255)
MAX_KEY_UPDATE_BODY = 1
MAX_CLIENT_CERTIFICATE_MESSAGE = 262144  # Go maxHandshakeCertificateMsg: our bound on a client's chain

# Structural maximum body length of every handshake message type a client may send (TLS 1.3 or 1.2).
CLIENT_MESSAGES: Mapping[int, int] = {
    int(HandshakeType.client_hello): MAX_CLIENT_HELLO_BODY,
    int(HandshakeType.end_of_early_data): 0,
    int(HandshakeType.certificate): (1 << 24) - 1,
    int(HandshakeType.certificate_verify): MAX_CERTIFICATE_VERIFY_BODY,
    int(HandshakeType.client_key_exchange): MAX_CLIENT_KEY_EXCHANGE_BODY,
    int(HandshakeType.finished): MAX_FINISHED_BODY,
    int(HandshakeType.key_update): MAX_KEY_UPDATE_BODY,
}

_CERTIFICATE = int(HandshakeType.certificate)  # compared with every message's type: a plain int
DEFAULT_MAX_MESSAGE = MAX_CLIENT_HELLO_BODY  # the largest a client's non-Certificate message can be


class HandshakeReassembler:
    """Turns handshake-record payloads into (type, body, raw) messages, refusing a bad header at once."""

    __slots__ = ("_buffer", "_structure", "max_certificate_size", "max_message_size")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE,
                 max_certificate_size: int = MAX_CLIENT_CERTIFICATE_MESSAGE,
                 *, structure: Mapping[int, int] | None = None) -> None:
        """``structure``: the message types the peer may send and the most each can hold (a server passes
        ``CLIENT_MESSAGES``); None accepts any type within the memory bounds (a test client reading ours)."""
        self._buffer = bytearray()
        self._structure = structure
        # Memory bounds below the structural limits (tests and embedders may lower them).
        self.max_message_size = max_message_size
        self.max_certificate_size = max_certificate_size

    @property
    def pending(self) -> bool:
        """True while part of a message is buffered (a key change must not happen then)."""
        return bool(self._buffer)

    def feed(self, payload: bytes) -> None:
        self._buffer += payload
        if len(self._buffer) >= 4:
            self._check_header(self._buffer)  # refuse a bad message as soon as its header is in

    def whole_message(self, payload: bytes) -> tuple[int, bytes, bytes] | None:
        """``payload`` as (type, body, raw) when nothing is buffered and it is exactly one handshake message
        (the usual record): handed over without a pass through the buffer, after the same header checks.
        None means: ``feed`` it instead."""
        if self._buffer or len(payload) < 4:
            return None
        length = (payload[1] << 16) | (payload[2] << 8) | payload[3]
        if 4 + length != len(payload):
            return None
        self._check_header(payload)
        return payload[0], payload[4:], payload

    def next_message(self) -> tuple[int, bytes, bytes] | None:
        """(type, body, raw message including the 4-byte header), or None until the message is whole."""
        buf = self._buffer
        if len(buf) < 4:
            return None
        length = self._check_header(buf)
        end = 4 + length
        if len(buf) < end:
            return None
        raw = bytes(buf[:end])
        del buf[:end]
        return raw[0], raw[4:], raw

    def _check_header(self, data: bytes | bytearray) -> int:
        """The body length the header announces, once the type and length are judged acceptable."""
        msg_type = data[0]
        length = (data[1] << 16) | (data[2] << 8) | data[3]
        if self._structure is not None:
            structural = self._structure.get(msg_type)
            if structural is None:
                raise TLSAlert(AlertDescription.unexpected_message, f"the peer never sends handshake type {msg_type}")
            if length > structural:
                raise TLSAlert(AlertDescription.decode_error, f"handshake type {msg_type} cannot be {length} bytes")
        limit = self.max_certificate_size if msg_type == _CERTIFICATE else self.max_message_size
        if length > limit:
            raise TLSAlert(AlertDescription.illegal_parameter, f"handshake message of {length} bytes")
        return length
