"""The codec's one error type."""

from __future__ import annotations

from keyless.protocol.constants import ErrorCode


class ProtocolError(Exception):
    """A frame that breaks the wire format.

    ``code`` is what a server answers with before closing (0x07, format error); ``message_id``
    is the ID from the frame header when the header itself could be read, so the error response
    can carry it.
    """

    def __init__(self, reason: str, *, message_id: int | None = None, code: ErrorCode = ErrorCode.FORMAT) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message_id = message_id
        self.code = code
