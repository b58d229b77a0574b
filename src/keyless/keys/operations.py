"""The private-key operation of each keyless opcode, as pure functions over a key held in-process.

Each opcode of the spec (table "Opcodes") maps to one ``Operation``: which kind of key it needs,
which hash (and so which payload length) it expects, and how the signature is padded. Failures
raise ``OperationError`` carrying the protocol error code the spec assigns (0x01 for a wrong
digest length, a key of the wrong type, or a failed operation).

A TLS signature scheme becomes an opcode by the key's type and the scheme's hash (``opcode_for``;
TLS 1.2 lets an ECDSA key sign with any hash, so the curve in the scheme's name is not used). That
one mapping serves a key server's keys, the client's ``RemoteKey`` and ``OpcodeKey`` below, through
which every key that runs opcodes in this process (a file, a PKCS#11 token) is an ``AsyncPrivateKey``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from keyless.keys import mldsa as external
from keyless.keys.base import KeyOperationError
from keyless.keys.rsa_raw import RawRSA, RawRSAError
from keyless.keys.schemes import (
    MLDSA_SCHEMES,
    KeyKind,
    SignatureScheme,
    digest_for,
    is_pss,
    scheme_hash,
    signature_schemes_for,
)
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
    MLDSA_MU = "mldsa-mu"


@dataclass(frozen=True, slots=True)
class Operation:
    opcode: Opcode
    kind: KeyKind
    action: Action
    hash: hashes.HashAlgorithm | None  # None: the payload is not a digest (decrypt, Ed25519, ML-DSA μ)
    parameter_set: str | None = None  # ML-DSA: "ML-DSA-65"... (the opcode names the key's parameter set)


# The hashes each signing family takes, by the suffix of its opcodes' names (RSA_SIGN_SHA256, ECDSA_SIGN_SHA256...).
_PKCS1_AND_ECDSA_HASHES: tuple[tuple[str, hashes.HashAlgorithm], ...] = (
    ("MD5SHA1", MD5SHA1()), ("SHA1", hashes.SHA1()), ("SHA224", hashes.SHA224()), ("SHA256", hashes.SHA256()),
    ("SHA384", hashes.SHA384()), ("SHA512", hashes.SHA512()),
)
_PSS_HASHES = _PKCS1_AND_ECDSA_HASHES[3:]  # RSA-PSS: SHA-256 and up


def _operations() -> tuple[Operation, ...]:
    rsa_, ecdsa = KeyKind.RSA, KeyKind.ECDSA
    return (
        Operation(Opcode.RSA_DECRYPT, rsa_, Action.RSA_DECRYPT, None),
        Operation(Opcode.RSA_DECRYPT_RAW, rsa_, Action.RSA_DECRYPT, None),
        *(Operation(Opcode[f"RSA_SIGN_{name}"], rsa_, Action.RSA_PKCS1, h) for name, h in _PKCS1_AND_ECDSA_HASHES),
        *(Operation(Opcode[f"RSA_PSS_SIGN_{name}"], rsa_, Action.RSA_PSS, h) for name, h in _PSS_HASHES),
        *(Operation(Opcode[f"ECDSA_SIGN_{name}"], ecdsa, Action.ECDSA, h) for name, h in _PKCS1_AND_ECDSA_HASHES),
        Operation(Opcode.ED25519_SIGN, KeyKind.ED25519, Action.ED25519, None),
        *(Operation(Opcode[f"MLDSA{n}_SIGN_MU"], KeyKind.MLDSA, Action.MLDSA_MU, None, f"ML-DSA-{n}")
          for n in (44, 65, 87)),
    )


OPERATIONS: dict[int, Operation] = {op.opcode: op for op in _operations()}

PrivateKey = (
    rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    | mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey
)

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
    if isinstance(key, external.MLDSA_PRIVATE_TYPES):
        return KeyKind.MLDSA
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
    if op.action is Action.MLDSA_MU and len(payload) != external.MU_LENGTH:
        # Not a digest of the wrong size but a malformed request: μ is always 64 bytes (format error).
        raise OperationError(
            f"{op.opcode.name} expects the {external.MU_LENGTH}-byte ML-DSA μ, got {len(payload)} bytes",
            ErrorCode.FORMAT,
        )
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
    if isinstance(key, external.MLDSA_PRIVATE_TYPES):
        return _mldsa_executor(key)
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


def _mldsa_executor(key: external.MLDSAPrivateKey) -> Executor:
    name = external.parameter_set_name(key)

    def execute(opcode: int, payload: bytes) -> bytes:
        op = _operation_for(opcode, KeyKind.MLDSA, payload)
        if op.parameter_set != name:  # μ is bound to one public key: another parameter set cannot be ours
            raise OperationError(f"{op.opcode.name} needs an {op.parameter_set} key, this key is {name}")
        try:
            return external.sign_mu(key, payload)
        except ValueError:
            raise OperationError(f"{op.opcode.name} failed") from None

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


# (action, hash name) -> the opcode that signs so: how a TLS scheme finds its opcode. MD5+SHA1 has no TLS 1.2+
# scheme of its own (SignatureScheme.RSA_PKCS1_MD5_SHA1 is handled by name), so it is left out.
_SIGNING_OPCODES: dict[tuple[Action, str], Opcode] = {
    (op.action, op.hash.name): op.opcode for op in OPERATIONS.values() if op.hash is not None
    and not isinstance(op.hash, MD5SHA1)
}


_MLDSA_OPCODES: dict[SignatureScheme, Opcode] = {
    SignatureScheme.MLDSA44: Opcode.MLDSA44_SIGN_MU,
    SignatureScheme.MLDSA65: Opcode.MLDSA65_SIGN_MU,
    SignatureScheme.MLDSA87: Opcode.MLDSA87_SIGN_MU,
}


def opcode_for(scheme: SignatureScheme, public_key: PublicKeyTypes) -> Opcode:
    """The keyless opcode that signs with ``scheme`` using the private half of ``public_key``.
    Raises ``KeyOperationError`` when the key cannot sign with the scheme."""
    if isinstance(public_key, external.MLDSA_PUBLIC_TYPES):
        if scheme in signature_schemes_for(public_key):
            return _MLDSA_OPCODES[scheme]
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        if scheme == SignatureScheme.ED25519:
            return Opcode.ED25519_SIGN
    elif isinstance(public_key, rsa.RSAPublicKey):
        if scheme == SignatureScheme.RSA_PKCS1_MD5_SHA1:
            return Opcode.RSA_SIGN_MD5SHA1
        algorithm = scheme_hash(scheme)
        if algorithm is not None and scheme.name.startswith("RSA"):
            action = Action.RSA_PSS if is_pss(scheme) else Action.RSA_PKCS1
            opcode = _SIGNING_OPCODES.get((action, algorithm.name))
            if opcode is not None:
                return opcode
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        algorithm = scheme_hash(scheme)
        if algorithm is not None and scheme.name.startswith("ECDSA"):
            opcode = _SIGNING_OPCODES.get((Action.ECDSA, algorithm.name))
            if opcode is not None:
                return opcode
    raise KeyOperationError(f"{_kind(public_key)} cannot sign with {scheme.name.lower()}")


def _kind(public_key: PublicKeyTypes) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"an RSA-{public_key.key_size} key"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"an ECDSA {public_key.curve.name} key"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "an Ed25519 key"
    if isinstance(public_key, external.MLDSA_PUBLIC_TYPES):
        return f"an {external.parameter_set_name(public_key)} key"
    return f"a {type(public_key).__name__}"


def signing_payload(scheme: SignatureScheme, message: bytes, public_key: PublicKeyTypes) -> bytes:
    """What a key operation for ``scheme`` carries: ``digest_for``'s digest (or message), or for ML-DSA the
    external μ, which needs the public key too."""
    if scheme in MLDSA_SCHEMES and isinstance(public_key, external.MLDSA_PUBLIC_TYPES):
        return external.external_mu(public_key, message)
    return digest_for(scheme, message)


class OpcodeKey:
    """An ``AsyncPrivateKey`` (and ``BlockingPrivateKey``) over ``execute(opcode, payload)``.

    A subclass provides ``public_key``, ``ski``, ``offload`` and ``execute``; a handshake's operation
    then goes through the same opcode checks and code as a key server's request for the same key.
    """

    __slots__ = ()

    public_key: PublicKeyTypes
    ski: bytes
    offload: bool
    execute: Executor

    @property
    def signature_schemes(self) -> frozenset[SignatureScheme]:
        return signature_schemes_for(self.public_key)

    @property
    def blocking(self) -> OpcodeKey:
        return self

    def with_context(self, **context: str | None) -> OpcodeKey:
        return self  # context is for key servers; this key is here

    def sign_sync(self, scheme: SignatureScheme, message: bytes) -> bytes:
        opcode = opcode_for(scheme, self.public_key)
        try:
            return self.execute(opcode, signing_payload(scheme, message, self.public_key))
        except OperationError as exc:
            raise KeyOperationError(exc.reason, exc.code) from None

    def decrypt_sync(self, ciphertext: bytes) -> bytes:
        """Raw RSA: c^d mod n, left-padded to the modulus length; padding is NOT removed (the caller does
        that in constant time)."""
        if not isinstance(self.public_key, rsa.RSAPublicKey):
            raise KeyOperationError("decryption needs an RSA key")
        try:
            return self.execute(Opcode.RSA_DECRYPT, ciphertext)
        except OperationError as exc:
            raise KeyOperationError(exc.reason, exc.code) from None

    async def sign(self, scheme: SignatureScheme, message: bytes) -> bytes:
        if self.offload:
            return await asyncio.to_thread(self.sign_sync, scheme, message)
        return self.sign_sync(scheme, message)

    async def decrypt(self, ciphertext: bytes) -> bytes:
        if self.offload:
            return await asyncio.to_thread(self.decrypt_sync, ciphertext)
        return self.decrypt_sync(ciphertext)
