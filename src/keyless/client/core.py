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

from dataclasses import dataclass, field
from typing import NoReturn

from keyless.client.errors import ResponseError
from keyless.protocol import NEED_DATA, Message, MessageDecoder, Opcode, ProtocolError, encode_message
from keyless.protocol.framing import _NeedData

MAX_MESSAGE_ID = 0xFFFFFFFF
# Abandoned IDs whose answers never came: past this many the key server is not answering on this
# connection at all, and keeping the connection open only grows the table.
MAX_ABANDONED = 4096


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

    def to_message(self, message_id: int) -> Message:
        return Message(
            id=message_id,
            opcode=self.opcode,
            payload=self.payload,
            ski=self.ski,
            sni=self.sni,
            server_ip=self.server_ip,
            cert_id=self.cert_id,
            client_ip=self.client_ip,
            request_context=self.request_context,
        )


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


Event = Answer | _NeedData


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
        self._outgoing.append(encode_message(request.to_message(message_id)))
        self._in_flight[message_id] = request.opcode
        return message_id

    def data_to_send(self) -> bytes:
        """Every frame queued since the last call, joined (empty when nothing is queued)."""
        if not self._outgoing:
            return b""
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        return data

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

    def pending_ids(self) -> list[int]:
        return list(self._in_flight)

    # -- answers ----------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self._decoder.receive_data(data)

    def next_event(self) -> Event:
        """The next answer to a request still awaited, or NEED_DATA. Raises ``ResponseError``."""
        if self._error is not None:
            raise self._error
        while True:
            try:
                message = self._decoder.next_message()
            except ProtocolError as exc:
                self._fail(f"malformed frame from the key server: {exc.reason}")
            if isinstance(message, _NeedData):
                return NEED_DATA
            opcode = self._in_flight.pop(message.id, None)
            if opcode is None:
                if message.id in self._abandoned:
                    self._abandoned.discard(message.id)
                    continue  # a late answer to a request we gave up on
                self._fail(f"answer with message ID {message.id}, which no request in flight carries")
            return self._answer(message, opcode)

    def _answer(self, message: Message, sent_opcode: int) -> Answer:
        expected = Opcode.PONG if sent_opcode == Opcode.PING else Opcode.RESPONSE
        if message.opcode not in (expected, Opcode.ERROR):
            got = "none" if message.opcode is None else f"0x{message.opcode:02x}"
            self._fail(f"answer to opcode 0x{sent_opcode:02x} carries opcode {got}")
        payload = message.payload if message.payload is not None else b""
        return Answer(message.id, message.opcode, payload)

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


__all__ = ["NEED_DATA", "Answer", "ClientConnection", "Event", "Request"]
