"""Sans-IO state of one edge connection on the key server: bytes in, requests out, replies in, bytes out.

The asyncio layer (``keyless.server.service``) owns the socket and TLS; this object owns framing,
the in-flight count and its cap, and reply encoding. ``next_event`` returns:

- a ``Request`` (``keyless.server.wire``): the caller answers it later with ``send_reply``/``send_error``
  (in any order: IDs tie replies to requests);
- ``NEED_DATA``: no whole frame buffered;
- ``PAUSED``: the in-flight cap is reached; the caller stops reading until a reply frees a slot;
- ``FrameRejected``: a malformed frame. A 0x07 error reply is already queued; the connection stops
  producing requests and the caller closes it once the requests in flight are answered.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from keyless.protocol import NEED_DATA, ErrorCode, Opcode, ProtocolError, take_frames
from keyless.protocol.constants import HEADER_SIZE, ITEM_HEADER_SIZE, PADDED_SIZE, Tag
from keyless.protocol.message import padding_item
from keyless.sentinel import NeedData, Sentinel
from keyless.server.wire import Request, RequestFramer

DEFAULT_MAX_IN_FLIGHT = 1024


class _Paused(Sentinel):
    __slots__ = ()
    name = "PAUSED"


PAUSED: Final = _Paused()


@dataclass(frozen=True, slots=True)
class FrameRejected:
    reason: str
    message_id: int | None


Event = Request | FrameRejected | NeedData | _Paused

_HEADER = struct.Struct(">BBHI")
_ITEM = struct.Struct(">BH")


# A reply with a payload is header (8) + opcode item (4) + payload item (3 + n) + padding item (3 + pad),
# 1024 bytes in all while n <= 1006: one struct.pack for the fixed part, then the payload, then one of
# these precomputed padding items.
_REPLY_PREFIX = struct.Struct(">BBHIBHBBH")
_MAX_PADDED_PAYLOAD = PADDED_SIZE - HEADER_SIZE - 4 - 2 * ITEM_HEADER_SIZE
_PADDING_ITEMS = tuple(_ITEM.pack(Tag.PADDING, pad) + bytes(pad) for pad in range(_MAX_PADDED_PAYLOAD + 1))


def encode_reply(message_id: int, opcode: int, payload: bytes | None) -> bytes:
    """A response frame (opcode, payload, padding): the same bytes as ``encode_message`` of
    ``Message(id, opcode, payload)``, built without the general encoder (this is the hot path)."""
    if payload is not None and len(payload) <= _MAX_PADDED_PAYLOAD:
        size = len(payload)
        return (
            _REPLY_PREFIX.pack(1, 0, PADDED_SIZE - HEADER_SIZE, message_id, Tag.OPCODE, 1, opcode, Tag.PAYLOAD,
                               size)
            + payload
            + _PADDING_ITEMS[_MAX_PADDED_PAYLOAD - size]
        )
    opcode_item = bytes((Tag.OPCODE, 0, 1, opcode))
    payload_item = b"" if payload is None else _ITEM.pack(Tag.PAYLOAD, len(payload)) + payload
    items = len(opcode_item) + len(payload_item)
    padding = padding_item(items)
    return _HEADER.pack(1, 0, items + len(padding), message_id) + opcode_item + payload_item + padding


class ServerConnection:
    """One edge connection's protocol state (no I/O, no clock beyond stamping arrivals)."""

    __slots__ = ("_framer", "_outgoing", "in_flight", "max_in_flight", "rejected", "requests_seen")

    def __init__(self, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        self._framer = RequestFramer()
        self._outgoing: list[bytes] = []
        self.in_flight = 0
        self.max_in_flight = max_in_flight
        self.rejected = False
        self.requests_seen = 0

    def receive_data(self, data: bytes) -> None:
        if not self.rejected:
            self._framer.receive_data(data)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into requests (a partial frame, or frames held by the cap)."""
        return self._framer.buffered

    @property
    def can_accept(self) -> bool:
        return self.in_flight < self.max_in_flight and not self.rejected

    def next_event(self) -> Event:
        if self.rejected:
            return NEED_DATA
        if self.in_flight >= self.max_in_flight:
            return PAUSED
        try:
            request = self._framer.next_request()
        except ProtocolError as exc:
            return self._reject(exc)
        except Exception as exc:  # a framer bug: treat the frame as malformed, not the server
            return self._reject(ProtocolError(f"undecodable frame ({type(exc).__name__})"))
        if request is None:
            return NEED_DATA
        self.in_flight += 1
        self.requests_seen += 1
        return request

    def _reject(self, exc: ProtocolError) -> FrameRejected:
        """Spec: "on a malformed message ... answering with error 0x07 first, then closing, is friendlier"."""
        self.rejected = True
        self._outgoing.append(encode_reply(exc.message_id or 0, Opcode.ERROR, bytes((ErrorCode.FORMAT,))))
        return FrameRejected(exc.reason, exc.message_id)

    def send_reply(self, message_id: int, opcode: int, payload: bytes | None) -> None:
        """Answer a request taken from ``next_event`` (success 0xF0, pong 0xF2, or error 0xFF)."""
        frame = encode_reply(message_id, opcode, payload)  # first: a reply that cannot be encoded is no reply
        self.in_flight -= 1
        self._outgoing.append(frame)

    def send_error(self, message_id: int, code: int) -> None:
        self.send_reply(message_id, Opcode.ERROR, bytes((code,)))

    def data_to_send(self) -> bytes:
        """Every reply queued since the last call, coalesced into one buffer."""
        return take_frames(self._outgoing)

    @property
    def finished(self) -> bool:
        """After a rejected frame: True once every request in flight has its answer queued."""
        return self.rejected and self.in_flight == 0
