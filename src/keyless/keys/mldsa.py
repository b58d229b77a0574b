"""ML-DSA (FIPS 204) by "external μ": the 64-byte message representative an edge sends to a key server.

Pure ML-DSA signs ``μ = SHAKE256(tr ‖ M', 64)`` with ``tr = SHAKE256(pk, 64)`` (pk: the encoded public key)
and ``M' = 0x00 ‖ len(ctx) ‖ ctx ‖ M`` (FIPS 204 Algorithm 2 and 7, line 6). TLS (draft-ietf-tls-mldsa) uses
the empty context, so ``M' = 0x00 ‖ 0x00 ‖ M``. μ needs only the public key, so the edge computes it from the
certificate, exactly as it computes a digest for ECDSA, and the key server runs the rest of the signature
(``sign_mu``) on 64 bytes instead of the whole CertificateVerify input.

A signature over μ verifies as an ordinary ML-DSA signature over M: the peer cannot tell the difference.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa

MU_LENGTH = 64
_PURE_EMPTY_CONTEXT = b"\x00\x00"  # domain separator 0 (pure ML-DSA), context length 0

MLDSAPublicKey = mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey
MLDSAPrivateKey = mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey
# The same unions under the names isinstance() checks read best with (a union type combines with ``|``).
MLDSA_PUBLIC_TYPES = MLDSAPublicKey
MLDSA_PRIVATE_TYPES = MLDSAPrivateKey

_NAMES = {
    mldsa.MLDSA44PublicKey: "ML-DSA-44",
    mldsa.MLDSA65PublicKey: "ML-DSA-65",
    mldsa.MLDSA87PublicKey: "ML-DSA-87",
}


class _MuSigner(Protocol):
    def sign_mu(self, mu: bytes) -> bytes: ...


def public_key_hash(public_key: MLDSAPublicKey) -> bytes:
    """``tr``: SHAKE256 of the encoded public key, 64 bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.shake_256(raw).digest(MU_LENGTH)


def external_mu(public_key: MLDSAPublicKey, message: bytes, *, tr: bytes | None = None) -> bytes:
    """μ of ``message`` for pure ML-DSA with the empty context (``tr`` may be passed precomputed)."""
    shake = hashlib.shake_256(tr if tr is not None else public_key_hash(public_key))
    shake.update(_PURE_EMPTY_CONTEXT)
    shake.update(message)
    return shake.digest(MU_LENGTH)


def parameter_set_name(key: MLDSAPublicKey | MLDSAPrivateKey) -> str:
    """"ML-DSA-44", "ML-DSA-65" or "ML-DSA-87": for logs and errors."""
    public = key.public_key() if isinstance(key, MLDSA_PRIVATE_TYPES) else key
    return next(name for cls, name in _NAMES.items() if isinstance(public, cls))


def sign_mu(key: _MuSigner, mu: bytes) -> bytes:
    """The key's signature over a 64-byte μ; ``ValueError`` for any other length (checked here, so every
    backend refuses alike before the key is touched)."""
    if len(mu) != MU_LENGTH:
        raise ValueError(f"ML-DSA μ is {MU_LENGTH} bytes, got {len(mu)}")
    return key.sign_mu(mu)


__all__ = [
    "MLDSA_PRIVATE_TYPES", "MLDSA_PUBLIC_TYPES", "MU_LENGTH", "MLDSAPrivateKey", "MLDSAPublicKey", "external_mu",
    "parameter_set_name", "public_key_hash", "sign_mu",
]
