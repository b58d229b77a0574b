"""Keyless messages: one frozen value type, a padded encoder and a strict-but-tolerant decoder.

The decoder follows the parsing rules of the reference server (spec, "Parsing rules"): any
version bytes, any padding size, unknown tags skipped, a known tag twice or a fixed-size field of
the wrong size is malformed, an SKI or digest of the wrong size is treated as absent.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from keyless.protocol.constants import (
    HEADER_SIZE,
    ITEM_HEADER_SIZE,
    MAX_BODY_SIZE,
    PADDED_SIZE,
    VERSION_MAJOR,
    VERSION_MINOR,
    ErrorCode,
    Opcode,
    Tag,
)
from keyless.protocol.errors import ProtocolError

_HEADER = struct.Struct(">BBHI")
_ITEM_HEADER = struct.Struct(">BH")
SKI_SIZE = 20
DIGEST_SIZE = 32


@dataclass(frozen=True, slots=True)
class Message:
    """One request or response. ``None`` means the item is absent from the frame."""

    id: int
    opcode: int | None = None
    payload: bytes | None = None
    ski: bytes | None = None
    sni: bytes | None = None
    client_ip: bytes | None = None
    server_ip: bytes | None = None
    cert_id: bytes | None = None
    digest: bytes | None = None
    custom_func_name: bytes | None = None
    extra: bytes | None = None
    span_context: bytes | None = None
    request_context: bytes | None = None
    compliance_region: int | None = None
    unknown: tuple[tuple[int, bytes], ...] = ()
    version: tuple[int, int] = (VERSION_MAJOR, VERSION_MINOR)

    @classmethod
    def response(cls, message_id: int, payload: bytes) -> Message:
        return cls(id=message_id, opcode=Opcode.RESPONSE, payload=payload)

    @classmethod
    def error(cls, message_id: int, code: ErrorCode | int) -> Message:
        return cls(id=message_id, opcode=Opcode.ERROR, payload=bytes((int(code),)))

    @classmethod
    def pong(cls, message_id: int, payload: bytes | None) -> Message:
        return cls(id=message_id, opcode=Opcode.PONG, payload=payload)

    @property
    def error_code(self) -> int | None:
        """The error code of a 0xFF response, else None."""
        if self.opcode == Opcode.ERROR and self.payload is not None and len(self.payload) == 1:
            return self.payload[0]
        return None


def _item(tag: int, data: bytes) -> bytes:
    return _ITEM_HEADER.pack(tag, len(data)) + data


# Emission order: opcode and payload first (as in the spec's worked bytes), then key selectors.
_BYTES_FIELDS: tuple[tuple[str, Tag], ...] = (
    ("payload", Tag.PAYLOAD),
    ("ski", Tag.SKI),
    ("sni", Tag.SNI),
    ("client_ip", Tag.CLIENT_IP),
    ("server_ip", Tag.SERVER_IP),
    ("cert_id", Tag.CERT_ID),
    ("digest", Tag.DIGEST),
    ("custom_func_name", Tag.CUSTOM_FUNC_NAME),
    ("extra", Tag.EXTRA),
    ("span_context", Tag.SPAN_CONTEXT),
    ("request_context", Tag.REQUEST_CONTEXT),
)


def encode_message(message: Message) -> bytes:
    """Serialise ``message``, padded to at least 1024 bytes.

    Raises ``ValueError`` when the items do not fit in one frame (body > 65535 bytes) or the ID
    does not fit in 32 bits: that is a caller bug, not a peer's.
    """
    parts: list[bytes] = []
    if message.opcode is not None:
        parts.append(_item(Tag.OPCODE, bytes((message.opcode,))))
    for name, tag in _BYTES_FIELDS:
        value = getattr(message, name)
        if value is not None:
            parts.append(_item(tag, value))
    if message.compliance_region:  # omitted when 0, as the spec says
        parts.append(_item(Tag.COMPLIANCE_REGION, bytes((message.compliance_region,))))
    for unknown_tag, data in message.unknown:
        parts.append(_item(unknown_tag, data))
    body = b"".join(parts)
    body += padding_item(len(body))
    if len(body) > MAX_BODY_SIZE:
        raise ValueError(f"keyless message body of {len(body)} bytes exceeds {MAX_BODY_SIZE}")
    if not 0 <= message.id <= 0xFFFFFFFF:
        raise ValueError(f"keyless message id {message.id} does not fit in 32 bits")
    major, minor = message.version
    return _HEADER.pack(major, minor, len(body), message.id) + body


def padding_item(body_size: int) -> bytes:
    """The padding item that brings a frame with a ``body_size``-byte body up to ``PADDED_SIZE`` bytes
    (b"" when it is that long already). Every encoder of frames uses this one rule."""
    if HEADER_SIZE + body_size >= PADDED_SIZE:
        return b""
    pad = max(0, PADDED_SIZE - (HEADER_SIZE + body_size + ITEM_HEADER_SIZE))
    return _ITEM_HEADER.pack(Tag.PADDING, pad) + bytes(pad)


_FIELD_BY_TAG: dict[int, str] = {int(tag): name for name, tag in _BYTES_FIELDS}
_KNOWN_TAGS = frozenset(int(tag) for tag in Tag)


def decode_message(frame: bytes) -> Message:
    """Parse one whole frame (header + body). Raises ``ProtocolError`` on a malformed one."""
    if len(frame) < HEADER_SIZE:
        raise ProtocolError(f"frame of {len(frame)} bytes is shorter than the 8-byte header")
    major, minor, length, message_id = _HEADER.unpack_from(frame)
    if len(frame) != HEADER_SIZE + length:
        raise ProtocolError(
            f"header announces a {length}-byte body but {len(frame) - HEADER_SIZE} bytes follow",
            message_id=message_id,
        )
    fields: dict[str, object] = {}
    unknown: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    view = memoryview(frame)
    offset = HEADER_SIZE
    end = len(frame)
    while end - offset >= ITEM_HEADER_SIZE:
        tag, size = _ITEM_HEADER.unpack_from(frame, offset)
        offset += ITEM_HEADER_SIZE
        if offset + size > end:
            raise ProtocolError(f"item 0x{tag:02x} of {size} bytes runs past the body", message_id=message_id)
        data = bytes(view[offset : offset + size])
        offset += size
        if tag == Tag.PADDING:
            continue
        if tag in _KNOWN_TAGS:
            if tag in seen:
                raise ProtocolError(f"item 0x{tag:02x} appears twice", message_id=message_id)
            seen.add(tag)
        _store_item(tag, data, fields, unknown, message_id)
    return Message(id=message_id, unknown=tuple(unknown), version=(major, minor), **fields)  # type: ignore[arg-type]


def _store_item(
    tag: int, data: bytes, fields: dict[str, object], unknown: list[tuple[int, bytes]], message_id: int
) -> None:
    if tag == Tag.OPCODE:
        if len(data) != 1:
            raise ProtocolError(f"opcode item of {len(data)} bytes, expected 1", message_id=message_id)
        fields["opcode"] = data[0]
    elif tag in (Tag.CLIENT_IP, Tag.SERVER_IP):
        if len(data) not in (4, 16):
            raise ProtocolError(f"IP address item of {len(data)} bytes, expected 4 or 16", message_id=message_id)
        fields[_FIELD_BY_TAG[tag]] = data
    elif tag == Tag.SKI:
        if len(data) == SKI_SIZE:  # any other size is treated as absent
            fields["ski"] = data
    elif tag == Tag.DIGEST:
        if len(data) == DIGEST_SIZE:
            fields["digest"] = data
    elif tag == Tag.COMPLIANCE_REGION:
        if len(data) == 1:
            fields["compliance_region"] = data[0]
    elif tag in _FIELD_BY_TAG:
        fields[_FIELD_BY_TAG[tag]] = data
    else:
        unknown.append((tag, data))
