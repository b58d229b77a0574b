"""Numbers of the keyless wire protocol (docs/keyless-protocol.md)."""

from __future__ import annotations

from enum import IntEnum

HEADER_SIZE = 8
ITEM_HEADER_SIZE = 3
MAX_BODY_SIZE = 0xFFFF
PADDED_SIZE = 1024  # every message sent is padded to at least this many bytes
VERSION_MAJOR = 1
VERSION_MINOR = 0
DEFAULT_PORT = 2407


class Tag(IntEnum):
    DIGEST = 0x01
    SNI = 0x02
    CLIENT_IP = 0x03
    SKI = 0x04
    SERVER_IP = 0x05
    CERT_ID = 0x06
    OPCODE = 0x11
    PAYLOAD = 0x12
    CUSTOM_FUNC_NAME = 0x13
    EXTRA = 0x14
    SPAN_CONTEXT = 0x15
    REQUEST_CONTEXT = 0x16
    COMPLIANCE_REGION = 0x17
    PADDING = 0x20


class Opcode(IntEnum):
    RSA_DECRYPT = 0x01
    RSA_SIGN_MD5SHA1 = 0x02
    RSA_SIGN_SHA1 = 0x03
    RSA_SIGN_SHA224 = 0x04
    RSA_SIGN_SHA256 = 0x05
    RSA_SIGN_SHA384 = 0x06
    RSA_SIGN_SHA512 = 0x07
    RSA_DECRYPT_RAW = 0x08
    ECDSA_SIGN_MD5SHA1 = 0x12
    ECDSA_SIGN_SHA1 = 0x13
    ECDSA_SIGN_SHA224 = 0x14
    ECDSA_SIGN_SHA256 = 0x15
    ECDSA_SIGN_SHA384 = 0x16
    ECDSA_SIGN_SHA512 = 0x17
    ED25519_SIGN = 0x18
    SEAL = 0x21
    UNSEAL = 0x22
    RPC = 0x23
    CUSTOM = 0x24
    RSA_PSS_SIGN_SHA256 = 0x35
    RSA_PSS_SIGN_SHA384 = 0x36
    RSA_PSS_SIGN_SHA512 = 0x37
    # This project's range (0xC0-0xDF; docs/keyless-protocol.md): ML-DSA over an external μ (64 bytes).
    MLDSA44_SIGN_MU = 0xC0
    MLDSA65_SIGN_MU = 0xC1
    MLDSA87_SIGN_MU = 0xC2
    RESPONSE = 0xF0
    PING = 0xF1
    PONG = 0xF2
    ERROR = 0xFF


RESPONSE_OPCODES = frozenset({Opcode.RESPONSE, Opcode.PONG, Opcode.ERROR})


class ErrorCode(IntEnum):
    CRYPTO_FAILED = 0x01
    KEY_NOT_FOUND = 0x02
    READ_ERROR = 0x03
    VERSION_MISMATCH = 0x04
    BAD_OPCODE = 0x05
    UNEXPECTED_OPCODE = 0x06
    FORMAT = 0x07
    INTERNAL = 0x08
    CERT_NOT_FOUND = 0x09
    EXPIRED = 0x0A
    REMOTE_CONFIGURATION = 0x0B
    # This project's range (0xC0-0xDF, as its opcodes): not sent by the reference server.
    OVERLOADED = 0xC0  # the key server shed the request unprocessed: send it to another key server

    @property
    def description(self) -> str:
        return _ERROR_DESCRIPTIONS[self]


_ERROR_DESCRIPTIONS = {
    ErrorCode.CRYPTO_FAILED: "cryptography error",
    ErrorCode.KEY_NOT_FOUND: "key not found",
    ErrorCode.READ_ERROR: "read error",
    ErrorCode.VERSION_MISMATCH: "version mismatch",
    ErrorCode.BAD_OPCODE: "bad opcode",
    ErrorCode.UNEXPECTED_OPCODE: "unexpected opcode",
    ErrorCode.FORMAT: "format error",
    ErrorCode.INTERNAL: "internal error",
    ErrorCode.CERT_NOT_FOUND: "certificate not found",
    ErrorCode.EXPIRED: "expired",
    ErrorCode.REMOTE_CONFIGURATION: "remote configuration error",
    ErrorCode.OVERLOADED: "overloaded, try another key server",
}
