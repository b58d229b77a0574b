"""The private-key operation of each keyless opcode, as pure functions over a key held in-process.

Each opcode of the spec (table "Opcodes") maps to one ``Operation``: which kind of key it needs,
which hash (and so which payload length) it expects, and how the signature is padded. Failures
raise ``OperationError`` carrying the protocol error code the spec assigns (0x01 for a wrong
digest length, a key of the wrong type, or a failed operation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from keyless.keys.rsa_raw import RawRSA, RawRSAError
from keyless.keys.schemes import KeyKind
from keyless.protocol import ErrorCode, Opcode


class OperationError(Exception):
    """A request the key cannot serve; ``code`` is the keyless error code to answer with."""

    def __init__(self, reason: str, code: ErrorCode = ErrorCode.CRYPTO_FAILED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class MD5SHA1(hashes.HashAlgorithm):
    """OpenSSL's "MD5-SHA1" digest: MD5 || SHA-1, 36 bytes (TLS 1.0/1.1 ServerKeyExchange).

    Passed as ``Prehashed(MD5SHA1())``, OpenSSL signs it with PKCS#1 v1.5 padding and no
    DigestInfo, which is exactly opcode 0x02; for ECDSA (0x12) the 36 bytes are simply the digest.
    """

    name = "md5-sha1"
    digest_size = 36
    block_size = 64


class Action(Enum):
    """How an opcode uses the key (the padding / signature family)."""

    RSA_DECRYPT = "rsa-decrypt"
    RSA_PKCS1 = "rsa-pkcs1"
    RSA_PSS = "rsa-pss"
    ECDSA = "ecdsa"
    ED25519 = "ed25519"


@dataclass(frozen=True, slots=True)
class Operation:
    opcode: Opcode
    kind: KeyKind
    action: Action
    hash: hashes.HashAlgorithm | None  # None: the payload is not a digest (decrypt, Ed25519)


def _op(opcode: Opcode, kind: KeyKind, action: Action, algorithm: hashes.HashAlgorithm | None = None) -> Operation:
    return Operation(opcode, kind, action, algorithm)


OPERATIONS: dict[int, Operation] = {
    op.opcode: op
    for op in (
        _op(Opcode.RSA_DECRYPT, KeyKind.RSA, Action.RSA_DECRYPT),
        _op(Opcode.RSA_DECRYPT_RAW, KeyKind.RSA, Action.RSA_DECRYPT),
        _op(Opcode.RSA_SIGN_MD5SHA1, KeyKind.RSA, Action.RSA_PKCS1, MD5SHA1()),
        _op(Opcode.RSA_SIGN_SHA1, KeyKind.RSA, Action.RSA_PKCS1, hashes.SHA1()),
        _op(Opcode.RSA_SIGN_SHA224, KeyKind.RSA, Action.RSA_PKCS1, hashes.SHA224()),
        _op(Opcode.RSA_SIGN_SHA256, KeyKind.RSA, Action.RSA_PKCS1, hashes.SHA256()),
        _op(Opcode.RSA_SIGN_SHA384, KeyKind.RSA, Action.RSA_PKCS1, hashes.SHA384()),
        _op(Opcode.RSA_SIGN_SHA512, KeyKind.RSA, Action.RSA_PKCS1, hashes.SHA512()),
        _op(Opcode.RSA_PSS_SIGN_SHA256, KeyKind.RSA, Action.RSA_PSS, hashes.SHA256()),
        _op(Opcode.RSA_PSS_SIGN_SHA384, KeyKind.RSA, Action.RSA_PSS, hashes.SHA384()),
        _op(Opcode.RSA_PSS_SIGN_SHA512, KeyKind.RSA, Action.RSA_PSS, hashes.SHA512()),
        _op(Opcode.ECDSA_SIGN_MD5SHA1, KeyKind.ECDSA, Action.ECDSA, MD5SHA1()),
        _op(Opcode.ECDSA_SIGN_SHA1, KeyKind.ECDSA, Action.ECDSA, hashes.SHA1()),
        _op(Opcode.ECDSA_SIGN_SHA224, KeyKind.ECDSA, Action.ECDSA, hashes.SHA224()),
        _op(Opcode.ECDSA_SIGN_SHA256, KeyKind.ECDSA, Action.ECDSA, hashes.SHA256()),
        _op(Opcode.ECDSA_SIGN_SHA384, KeyKind.ECDSA, Action.ECDSA, hashes.SHA384()),
        _op(Opcode.ECDSA_SIGN_SHA512, KeyKind.ECDSA, Action.ECDSA, hashes.SHA512()),
        _op(Opcode.ED25519_SIGN, KeyKind.ED25519, Action.ED25519),
    )
}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

# Built once: cryptography's padding/algorithm objects are immutable, and building them per request
# is measurable on the ECDSA hot path.
_PKCS1 = padding.PKCS1v15()
_PREHASHED: dict[int, utils.Prehashed] = {
    code: utils.Prehashed(op.hash) for code, op in OPERATIONS.items() if op.hash is not None
}
_ECDSA: dict[int, ec.ECDSA] = {
    code: ec.ECDSA(_PREHASHED[code]) for code, op in OPERATIONS.items() if op.action == Action.ECDSA
}
_PSS: dict[int, padding.PSS] = {
    code: padding.PSS(mgf=padding.MGF1(op.hash), salt_length=op.hash.digest_size)
    for code, op in OPERATIONS.items()
    if op.action == Action.RSA_PSS and op.hash is not None
}


def kind_of(key: PrivateKey) -> KeyKind:
    if isinstance(key, rsa.RSAPrivateKey):
        return KeyKind.RSA
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return KeyKind.ECDSA
    return KeyKind.ED25519


def _operation_for(opcode: int, kind: KeyKind, payload: bytes) -> Operation:
    """The operation of ``opcode`` after the checks every key type shares (spec: wrong digest length
    and wrong key type are both 0x01)."""
    op = OPERATIONS.get(opcode)
    if op is None:
        raise OperationError(f"opcode 0x{opcode:02x} is not a key operation", ErrorCode.BAD_OPCODE)
    if op.kind is not kind:
        raise OperationError(f"{op.opcode.name} needs an {op.kind.name} key, this key is {kind.name}")
    if op.hash is not None and len(payload) != op.hash.digest_size:
        raise OperationError(f"{op.opcode.name} expects a {op.hash.digest_size}-byte digest, got {len(payload)} bytes")
    return op


# Public name for other key backends (PKCS#11): the same checks, so every backend answers alike.
operation_for = _operation_for

Executor = Callable[[int, bytes], bytes]


def make_executor(key: PrivateKey, raw_rsa: RawRSA | None = None) -> Executor:
    """A function ``(opcode, payload) -> result`` bound to ``key``: the hot path does one dict lookup
    and one ``cryptography`` call. ``raw_rsa`` (RSA keys only) serves decryption."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _ecdsa_executor(key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _ed25519_executor(key)
    return _rsa_executor(key, raw_rsa)


def _ecdsa_executor(key: ec.EllipticCurvePrivateKey) -> Executor:
    def execute(opcode: int, payload: bytes) -> bytes:
        op = _operation_for(opcode, KeyKind.ECDSA, payload)
        try:
            return key.sign(payload, _ECDSA[opcode])
        except ValueError:
            raise OperationError(f"{op.opcode.name} failed") from None

    return execute


def _ed25519_executor(key: ed25519.Ed25519PrivateKey) -> Executor:
    def execute(opcode: int, payload: bytes) -> bytes:
        _operation_for(opcode, KeyKind.ED25519, payload)
        return key.sign(payload)  # Ed25519 signs the whole message; it cannot fail on any input

    return execute


def _rsa_executor(key: rsa.RSAPrivateKey, raw_rsa: RawRSA | None) -> Executor:
    def execute(opcode: int, payload: bytes) -> bytes:
        op = _operation_for(opcode, KeyKind.RSA, payload)
        try:
            if op.action is Action.RSA_PKCS1:
                return key.sign(payload, _PKCS1, _PREHASHED[opcode])
            if op.action is Action.RSA_PSS:
                return key.sign(payload, _PSS[opcode], _PREHASHED[opcode])
            if raw_rsa is None:
                raise OperationError("this RSA key has no decryption backend", ErrorCode.INTERNAL)
            return raw_rsa.private_op(payload)
        except RawRSAError as exc:
            raise OperationError(f"{op.opcode.name} failed: {exc}") from None
        except ValueError:
            raise OperationError(f"{op.opcode.name} failed") from None

    return execute
