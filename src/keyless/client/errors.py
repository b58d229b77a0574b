"""What a key operation through ``keyless.client`` can raise.

Everything is a ``keyless.keys.base.KeyOperationError`` so the TLS engine handles a remote key's
failures like a local key's. ``KeyServerError`` and its subclasses are answers from a key server and
carry the protocol error code (``keyless.protocol.ErrorCode``); the others are failures of the link
(timeout, lost connection, no reachable server) and carry ``code=None``. No message holds key material
or payload bytes.
"""

from __future__ import annotations

from keyless.keys.base import KeyOperationError
from keyless.protocol import ErrorCode


class KeylessClientError(KeyOperationError):
    """Base of every error raised by ``keyless.client``."""


class KeyServerError(KeylessClientError):
    """The key server answered with an error response (opcode 0xFF); ``code`` is its error byte."""

    code: int

    def __init__(self, code: int, server: str = "") -> None:
        try:
            meaning = ErrorCode(code).description
        except ValueError:
            meaning = "unknown error code"
        where = f" from {server}" if server else ""
        super().__init__(f"key server error 0x{code:02x} ({meaning}){where}", code)
        self.code = code
        self.server = server


class CryptoError(KeyServerError):
    """0x01: the key server could not perform the operation (wrong digest length, wrong key type...)."""


class KeyNotFoundError(KeyServerError):
    """0x02: no key with this SKI on the key server."""


class ReadError(KeyServerError):
    """0x03."""


class VersionMismatchError(KeyServerError):
    """0x04."""


class BadOpcodeError(KeyServerError):
    """0x05: the key server does not implement the operation."""


class UnexpectedOpcodeError(KeyServerError):
    """0x06: a response opcode was sent as a request."""


class FormatError(KeyServerError):
    """0x07: the key server found the request malformed."""


class InternalError(KeyServerError):
    """0x08: missing SKI, or a failure of the key server's key store."""


class CertificateNotFoundError(KeyServerError):
    """0x09."""


class ExpiredError(KeyServerError):
    """0x0A: a sealing key expired."""


class RemoteConfigurationError(KeyServerError):
    """0x0B: a proxying key server could not reach its upstream."""


class OverloadedError(KeyServerError):
    """0xC0 (this project's range): the key server shed the request without doing it; the client has
    already tried the other key servers when this is raised."""


_BY_CODE: dict[int, type[KeyServerError]] = {
    ErrorCode.CRYPTO_FAILED: CryptoError,
    ErrorCode.KEY_NOT_FOUND: KeyNotFoundError,
    ErrorCode.READ_ERROR: ReadError,
    ErrorCode.VERSION_MISMATCH: VersionMismatchError,
    ErrorCode.BAD_OPCODE: BadOpcodeError,
    ErrorCode.UNEXPECTED_OPCODE: UnexpectedOpcodeError,
    ErrorCode.FORMAT: FormatError,
    ErrorCode.INTERNAL: InternalError,
    ErrorCode.CERT_NOT_FOUND: CertificateNotFoundError,
    ErrorCode.EXPIRED: ExpiredError,
    ErrorCode.REMOTE_CONFIGURATION: RemoteConfigurationError,
    ErrorCode.OVERLOADED: OverloadedError,
}


def error_for_code(code: int, server: str = "") -> KeyServerError:
    """The typed exception for a 0xFF response's error byte (``KeyServerError`` for unknown codes)."""
    return _BY_CODE.get(code, KeyServerError)(code, server)


class OperationTimeout(KeylessClientError):
    """No answer before the operation's timeout or the call's deadline."""


class ConnectionLost(KeylessClientError):
    """The connection carrying the operation broke before the answer came."""


class ConnectFailed(KeylessClientError):
    """A connection to a key server could not be opened (refused, unreachable, TLS handshake failed)."""


class ConnectTimeout(ConnectFailed):
    """Connecting (TCP and the TLS handshake) did not finish within the connect timeout: the server may be
    hung rather than gone (a stopped process still completes TCP handshakes from its listen backlog)."""


class NoServerAvailable(KeylessClientError):
    """Every key server was tried (within the retry budget) and none could carry the operation."""


class ResponseError(KeylessClientError):
    """The key server broke the protocol (malformed frame, answer to an unknown ID, wrong opcode)."""


__all__ = [
    "BadOpcodeError",
    "CertificateNotFoundError",
    "ConnectFailed",
    "ConnectTimeout",
    "ConnectionLost",
    "CryptoError",
    "ExpiredError",
    "FormatError",
    "InternalError",
    "KeyNotFoundError",
    "KeyServerError",
    "KeylessClientError",
    "NoServerAvailable",
    "OperationTimeout",
    "OverloadedError",
    "ReadError",
    "RemoteConfigurationError",
    "ResponseError",
    "UnexpectedOpcodeError",
    "VersionMismatchError",
    "error_for_code",
]
