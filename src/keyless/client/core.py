"""Sans-IO state of one client connection to a key server: requests in, bytes out, bytes in, answers out.

No sockets, no clock, no TLS (h11's shape): ``send(request)`` allocates the message ID and queues the
encoded frame, ``data_to_send()`` hands everything queued since the last call to the I/O layer in one
piece (so a burst of requests costs one write), ``receive_data(data)`` buffers what the socket read, and
``next_event()`` returns the next ``Answer`` (matched to its request by ID, in whatever order the key
server answers), or ``NEED_DATA``. A frame that breaks the protocol raises ``ResponseError``; the
connection is then poisoned, and the caller closes it and fails what was in flight.

IDs count up per connection (as the reference client does), skipping any still in flight after the
32-bit wrap. A request the caller gave up on (``abandon``) keeps its ID reserved so that its late
answer is recognised and dropped, not mistaken for a protocol violation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NoReturn

from keyless.client.errors import ResponseError
from keyless.protocol import NEED_DATA, MessageDecoder, Opcode, ProtocolError, Tag, take_frames
from keyless.protocol.constants import HEADER_SIZE, ITEM_HEADER_SIZE, MAX_BODY_SIZE, VERSION_MAJOR, VERSION_MINOR
from keyless.protocol.message import decode_message, padding_item
from keyless.sentinel import NeedData

MAX_MESSAGE_ID = 0xFFFFFFFF
# Abandoned IDs whose answers never came: past this many the key server is not answering on this
# connection at all, and keeping the connection open only grows the table.
MAX_ABANDONED = 4096

_HEADER = struct.Struct(">BBHI")
_ITEM = struct.Struct(">BH")


@dataclass(frozen=True, slots=True)
class Request:
    """One key-server operation. Only the items the spec calls safe for any key server exist here,
    plus client IP and request context, which a client sends only when configured to."""

    opcode: int
    payload: bytes | None = field(default=None, repr=False)
    ski: bytes | None = None
    sni: bytes | None = None
    server_ip: bytes | None = None
    cert_id: bytes | None = None
    client_ip: bytes | None = None
    request_context: bytes | None = None

    def encode(self, message_id: int) -> bytes:
        """The padded frame: the same bytes as ``encode_message(self.to_message(message_id))``, built
        without the general encoder's per-field loop (this runs once per key operation)."""
        item = _ITEM.pack
        parts = [item(Tag.OPCODE, 1), bytes((self.opcode,))]
        for tag, value in (
            (Tag.PAYLOAD, self.payload),
            (Tag.SKI, self.ski),
            (Tag.SNI, self.sni),
            (Tag.CLIENT_IP, self.client_ip),
            (Tag.SERVER_IP, self.server_ip),
            (Tag.CERT_ID, self.cert_id),
            (Tag.REQUEST_CONTEXT, self.request_context),
        ):
            if value is not None:
                parts.append(item(tag, len(value)))
                parts.append(value)
        body = b"".join(parts)
        body += padding_item(len(body))
        if len(body) > MAX_BODY_SIZE:
            raise ValueError(f"keyless request body of {len(body)} bytes exceeds {MAX_BODY_SIZE}")
        return _HEADER.pack(VERSION_MAJOR, VERSION_MINOR, len(body), message_id) + body


@dataclass(frozen=True, slots=True)
class Answer:
    """The key server's answer to request ``request_id``: a success, a pong, or an error code."""

    request_id: int
    opcode: int
    payload: bytes = field(repr=False)

    @property
    def error_code(self) -> int | None:
        """The error byte of a 0xFF answer (0 when the error payload is malformed), else None."""
        if self.opcode != Opcode.ERROR:
            return None
        return self.payload[0] if len(self.payload) == 1 else 0


Event = Answer | NeedData


class ClientConnection:
    """Correlates requests and answers on one key-server connection."""

    __slots__ = ("_abandoned", "_decoder", "_error", "_in_flight", "_next_id", "_outgoing")

    def __init__(self, first_id: int = 1) -> None:
        self._decoder = MessageDecoder()
        self._outgoing: list[bytes] = []
        self._next_id = first_id & MAX_MESSAGE_ID
        self._in_flight: dict[int, int] = {}  # message ID -> opcode sent
        self._abandoned: set[int] = set()
        self._error: ResponseError | None = None

    # -- requests ---------------------------------------------------------------------------------

    def send(self, request: Request) -> int:
        """Queue ``request``; returns its message ID."""
        if self._error is not None:
            raise self._error
        message_id = self._allocate_id()
        self._outgoing.append(request.encode(message_id))
        self._in_flight[message_id] = request.opcode
        return message_id

    def data_to_send(self) -> bytes:
        """Every frame queued since the last call, joined (empty when nothing is queued)."""
        return take_frames(self._outgoing)

    def abandon(self, message_id: int) -> None:
        """The caller stopped waiting for ``message_id`` (timeout, cancellation): drop its answer when it
        comes. Raises ``ResponseError`` when too many answers are outstanding this way."""
        if self._in_flight.pop(message_id, None) is None:
            return
        self._abandoned.add(message_id)
        if len(self._abandoned) > MAX_ABANDONED:
            self._fail(f"{len(self._abandoned)} requests went unanswered on this connection")

    @property
    def in_flight(self) -> int:
        """Requests sent (or queued) and neither answered nor abandoned."""
        return len(self._in_flight)

    @property
    def abandoned(self) -> int:
        return len(self._abandoned)

    # -- answers ----------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self._decoder.receive_data(data)

    def next_event(self) -> Event:
        """The next answer to a request still awaited, or NEED_DATA. Raises ``ResponseError``."""
        if self._error is not None:
            raise self._error
        while True:
            frame = self._decoder.next_frame()
            if isinstance(frame, NeedData):
                return NEED_DATA
            try:
                message_id, opcode, payload = _parse_answer(frame)
            except ProtocolError as exc:
                self._fail(f"malformed frame from the key server: {exc.reason}")
            sent_opcode = self._in_flight.pop(message_id, None)
            if sent_opcode is None:
                if message_id in self._abandoned:
                    self._abandoned.discard(message_id)
                    continue  # a late answer to a request we gave up on
                self._fail(f"answer with message ID {message_id}, which no request in flight carries")
            expected = Opcode.PONG if sent_opcode == Opcode.PING else Opcode.RESPONSE
            if opcode != expected and opcode != Opcode.ERROR:
                got = "none" if opcode is None else f"0x{opcode:02x}"
                self._fail(f"answer to opcode 0x{sent_opcode:02x} carries opcode {got}")
            return Answer(message_id, opcode, payload if payload is not None else b"")

    # -- internals --------------------------------------------------------------------------------

    def _allocate_id(self) -> int:
        message_id = self._next_id
        # After a wrap, skip IDs still awaited (bounded: at most len(in_flight) + len(abandoned) steps).
        while message_id in self._in_flight or message_id in self._abandoned:
            message_id = (message_id + 1) & MAX_MESSAGE_ID
        self._next_id = (message_id + 1) & MAX_MESSAGE_ID
        return message_id

    def _fail(self, reason: str) -> NoReturn:
        self._error = ResponseError(reason)
        raise self._error


def _parse_answer(frame: bytes) -> tuple[int, int | None, bytes | None]:
    """(message ID, opcode, payload) of an answer frame.

    Answers carry only opcode, payload and padding, so those are read directly; a frame with any other
    item goes through the full decoder, which applies every rule of the spec (and raises
    ``ProtocolError`` on a malformed frame)."""
    message_id: int = _HEADER.unpack_from(frame)[3]
    opcode: int | None = None
    payload: bytes | None = None
    offset = HEADER_SIZE
    end = len(frame)
    while end - offset >= ITEM_HEADER_SIZE:
        tag, size = _ITEM.unpack_from(frame, offset)
        offset += ITEM_HEADER_SIZE
        if offset + size > end:
            break  # malformed: let the full decoder say how
        if tag == Tag.OPCODE and opcode is None and size == 1:
            opcode = frame[offset]
        elif tag == Tag.PAYLOAD and payload is None:
            payload = frame[offset : offset + size]
        elif tag != Tag.PADDING:
            break
        offset += size
    else:
        return message_id, opcode, payload
    message = decode_message(frame)
    return message.id, message.opcode, message.payload


__all__ = ["NEED_DATA", "Answer", "ClientConnection", "Event", "Request"]
