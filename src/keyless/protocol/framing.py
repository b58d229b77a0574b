"""Streaming framer: bytes in, whole messages out (h11's receive_data / next_event shape); and
``take_frames``, how both ends hand their queued frames to the transport."""

from __future__ import annotations

import struct

from keyless.protocol.constants import HEADER_SIZE
from keyless.protocol.message import Message, decode_message
from keyless.sentinel import NEED_DATA as NEED_DATA
from keyless.sentinel import NeedData as NeedData

_LENGTH = struct.Struct(">H")


class MessageDecoder:
    """Cuts a byte stream into frames and decodes them.

    One frame is at most 8 + 65535 bytes, so a partial frame never holds more than that; how
    many whole frames a caller lets pile up is the caller's flow control (the server stops reading
    while 1024 requests are in flight).
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def next_frame(self) -> bytes | NeedData:
        """The next whole frame, undecoded, or NEED_DATA."""
        buffer = self._buffer
        if len(buffer) < HEADER_SIZE:
            return NEED_DATA
        (length,) = _LENGTH.unpack_from(buffer, 2)
        end = HEADER_SIZE + length
        if len(buffer) < end:
            return NEED_DATA
        frame = bytes(buffer[:end])
        del buffer[:end]
        return frame

    def next_message(self) -> Message | NeedData:
        """The next message, NEED_DATA, or ``ProtocolError`` for a malformed frame.

        After a ProtocolError the stream is not resynchronised: the connection must close.
        """
        frame = self.next_frame()
        if isinstance(frame, NeedData):
            return frame
        return decode_message(frame)


def take_frames(queued: list[bytes]) -> bytes:
    """Every frame in ``queued``, joined into one buffer for one write (empty when none); ``queued`` is
    emptied. The client's requests and the key server's replies both leave this way."""
    if not queued:
        return b""
    data = b"".join(queued)
    queued.clear()
    return data
