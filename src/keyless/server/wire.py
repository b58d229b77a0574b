"""The server's request framer: the codec's parsing rules, specialised for the hot path.

``keyless.protocol.MessageDecoder`` is the reference (and what clients use). A key server reads
tens of thousands of 1024-byte requests per second per core, so this framer parses frames in place
in the received buffer (no copy of a frame, none of its padding), keeps a read offset instead of
deleting from the front of a buffer, and returns a ``Request`` named tuple rather than a frozen
dataclass. The rules are the spec's, exactly as ``decode_message`` applies them; a property test
(tests/server/test_wire.py) checks the two agree on every input.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from keyless.protocol import ProtocolError
from keyless.protocol.constants import HEADER_SIZE, Tag

_HEADER = struct.Struct(">BBHI")
_ITEM = struct.Struct(">BH")
_KNOWN_TAGS = frozenset(int(t) for t in Tag)

_OPCODE = int(Tag.OPCODE)
_PAYLOAD = int(Tag.PAYLOAD)
_SKI = int(Tag.SKI)
_SNI = int(Tag.SNI)
_PADDING = int(Tag.PADDING)
_DIGEST = int(Tag.DIGEST)
_CLIENT_IP = int(Tag.CLIENT_IP)
_SERVER_IP = int(Tag.SERVER_IP)
_COMPLIANCE_REGION = int(Tag.COMPLIANCE_REGION)
# Tags whose bytes are kept as they are, by field position in Request.
_PLAIN_FIELDS = {
    int(Tag.CERT_ID): 7, int(Tag.CUSTOM_FUNC_NAME): 9, int(Tag.EXTRA): 10, int(Tag.SPAN_CONTEXT): 11,
    int(Tag.REQUEST_CONTEXT): 12,
}


class Request(NamedTuple):
    """A decoded request: the fields of ``keyless.protocol.Message`` a server uses (None = absent)."""

    id: int
    opcode: int | None
    payload: bytes | None
    ski: bytes | None
    sni: bytes | None
    client_ip: bytes | None
    server_ip: bytes | None
    cert_id: bytes | None
    digest: bytes | None
    custom_func_name: bytes | None
    extra: bytes | None
    span_context: bytes | None
    request_context: bytes | None
    compliance_region: int | None


def decode_request(buffer: bytes, start: int, end: int) -> Request:
    """Decode the frame ``buffer[start:end]`` (a whole frame: header + body). Raises ``ProtocolError``."""
    if end - start < HEADER_SIZE:
        raise ProtocolError(f"frame of {end - start} bytes is shorter than the 8-byte header")
    _major, _minor, length, message_id = _HEADER.unpack_from(buffer, start)
    if end - start != HEADER_SIZE + length:
        raise ProtocolError(f"header announces a {length}-byte body but {end - start - HEADER_SIZE} bytes follow",
                            message_id=message_id)
    opcode: int | None = None
    payload = ski = sni = client_ip = server_ip = digest = None
    plain: dict[int, bytes] | None = None
    region: int | None = None
    seen = 0
    unpack_item = _ITEM.unpack_from
    offset = start + HEADER_SIZE
    while end - offset >= 3:
        tag, size = unpack_item(buffer, offset)
        offset += 3
        item_end = offset + size
        if item_end > end:
            raise ProtocolError(f"item 0x{tag:02x} of {size} bytes runs past the body", message_id=message_id)
        if tag == _PADDING:
            offset = item_end
            continue
        if tag in _KNOWN_TAGS:
            bit = 1 << tag
            if seen & bit:
                raise ProtocolError(f"item 0x{tag:02x} appears twice", message_id=message_id)
            seen |= bit
            if tag == _OPCODE:
                if size != 1:
                    raise ProtocolError(f"opcode item of {size} bytes, expected 1", message_id=message_id)
                opcode = buffer[offset]
            elif tag == _PAYLOAD:
                payload = buffer[offset:item_end]
            elif tag == _SKI:
                if size == 20:  # any other size is treated as absent
                    ski = buffer[offset:item_end]
            elif tag == _SNI:
                sni = buffer[offset:item_end]
            elif tag in (_CLIENT_IP, _SERVER_IP):
                if size not in (4, 16):
                    raise ProtocolError(f"IP address item of {size} bytes, expected 4 or 16", message_id=message_id)
                if tag == _CLIENT_IP:
                    client_ip = buffer[offset:item_end]
                else:
                    server_ip = buffer[offset:item_end]
            elif tag == _DIGEST:
                if size == 32:
                    digest = buffer[offset:item_end]
            elif tag == _COMPLIANCE_REGION:
                if size == 1:
                    region = buffer[offset]
            else:
                if plain is None:
                    plain = {}
                plain[tag] = buffer[offset:item_end]
        offset = item_end  # unknown tags are skipped
    if plain is None:
        return Request(message_id, opcode, payload, ski, sni, client_ip, server_ip, None, digest, None, None, None,
                       None, region)
    fields: list[bytes | None] = [None] * 14
    for tag, data in plain.items():
        fields[_PLAIN_FIELDS[tag]] = data
    return Request(message_id, opcode, payload, ski, sni, client_ip, server_ip, fields[7], digest, fields[9],
                   fields[10], fields[11], fields[12], region)


class RequestFramer:
    """Bytes in, ``Request``s out. Holds at most one partial frame plus the whole frames not yet taken."""

    __slots__ = ("_buffer", "_pos")

    def __init__(self) -> None:
        self._buffer = b""
        self._pos = 0

    def receive_data(self, data: bytes) -> None:
        if self._pos >= len(self._buffer):
            self._buffer = bytes(data)
        else:
            self._buffer = self._buffer[self._pos :] + data
        self._pos = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer) - self._pos

    def next_request(self) -> Request | None:
        """The next request, None when no whole frame is buffered; ``ProtocolError`` when malformed
        (the stream cannot be resynchronised after that)."""
        buffer = self._buffer
        pos = self._pos
        if len(buffer) - pos < HEADER_SIZE:
            return None
        end = pos + HEADER_SIZE + ((buffer[pos + 2] << 8) | buffer[pos + 3])
        if end > len(buffer):
            return None
        self._pos = end
        return decode_request(buffer, pos, end)
