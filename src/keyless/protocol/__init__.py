"""The keyless wire protocol as a sans-IO codec (see docs/keyless-protocol.md)."""

from keyless.protocol.constants import (
    DEFAULT_PORT,
    PADDED_SIZE,
    RESPONSE_OPCODES,
    ErrorCode,
    Opcode,
    Tag,
)
from keyless.protocol.errors import ProtocolError
from keyless.protocol.framing import NEED_DATA, MessageDecoder, take_frames
from keyless.protocol.message import Message, decode_message, encode_message

__all__ = [
    "DEFAULT_PORT",
    "NEED_DATA",
    "PADDED_SIZE",
    "RESPONSE_OPCODES",
    "ErrorCode",
    "Message",
    "MessageDecoder",
    "Opcode",
    "ProtocolError",
    "Tag",
    "decode_message",
    "encode_message",
    "take_frames",
]
