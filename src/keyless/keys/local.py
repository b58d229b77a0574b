"""``LocalKey``: an ``AsyncPrivateKey`` over a ``cryptography`` private key held in this process.

Its operations are the key server's own (``keyless.keys.operations``): a scheme becomes an opcode and
the opcode runs on the key, so a key in a file signs exactly as the same key behind a key server would.
They are cheap enough to run inline on the event loop, except RSA above ``INLINE_RSA_MAX_BITS``, which
``offload`` sends to a thread pool (``cryptography`` releases the GIL for RSA and ECDSA).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from keyless.keys.base import AsyncPrivateKey, BlockingPrivateKey
from keyless.keys.mldsa import MLDSA_PRIVATE_TYPES, MLDSAPrivateKey
from keyless.keys.operations import Executor, OpcodeKey, make_executor
from keyless.keys.rsa_raw import raw_rsa_for
from keyless.keys.ski import ski_of

LocalPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | MLDSAPrivateKey

# An RSA-3072 signature takes ~4 ms of CPU, acceptable inline on an edge's loop; RSA-4096 takes ~10 ms.
INLINE_RSA_MAX_BITS = 3072


class LocalKey(OpcodeKey):
    """A private key signed with in-process. Implements ``keyless.keys.base.AsyncPrivateKey``."""

    __slots__ = ("execute", "offload", "public_key", "ski")

    def __init__(self, private_key: LocalPrivateKey) -> None:
        classical = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        if not isinstance(private_key, classical) and not isinstance(private_key, MLDSA_PRIVATE_TYPES):
            raise TypeError(f"unsupported private key type {type(private_key).__name__}")
        self.public_key: PublicKeyTypes = private_key.public_key()
        self.ski = ski_of(private_key.public_key())
        self.offload = isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size > INLINE_RSA_MAX_BITS
        # The executor closes over the key; no attribute of this object holds it, so repr() or a debugger
        # walking attributes never reaches private numbers. RSA decryption is OpenSSL's constant-time,
        # blinded operation (keys/rsa_raw.py), never a pow(c, d, n) whose time depends on the ciphertext.
        raw = raw_rsa_for(private_key) if isinstance(private_key, rsa.RSAPrivateKey) else None
        self.execute: Executor = make_executor(private_key, raw)

    def __repr__(self) -> str:
        return f"<LocalKey {type(self.public_key).__name__}>"


__all__ = ["INLINE_RSA_MAX_BITS", "LocalKey", "LocalPrivateKey"]


if TYPE_CHECKING:  # mypy --strict proves LocalKey fits a handshake's seam

    def _fits_the_seam(key: LocalKey) -> tuple[AsyncPrivateKey, BlockingPrivateKey]:
        return key, key
