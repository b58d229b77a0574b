"""Checking a signature a key made (``keyless ping``, the edge's key check): the public half of a key operation."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from keyless.keys.mldsa import MLDSA_PUBLIC_TYPES
from keyless.keys.schemes import SignatureScheme, is_pss, scheme_hash


def verify_signature(public: object, scheme: int, message: bytes, signature: bytes) -> None:
    """Raise ``InvalidSignature`` unless ``signature`` is ``scheme`` over ``message`` by ``public``."""
    algorithm = scheme_hash(SignatureScheme(scheme))
    if isinstance(public, ed25519.Ed25519PublicKey | MLDSA_PUBLIC_TYPES):
        public.verify(signature, message)  # both sign the whole message (ML-DSA: the key server signed its μ)
    elif isinstance(public, ec.EllipticCurvePublicKey) and algorithm is not None:
        public.verify(signature, message, ec.ECDSA(algorithm))
    elif isinstance(public, rsa.RSAPublicKey) and algorithm is not None:
        pss = padding.PSS(padding.MGF1(algorithm), algorithm.digest_size)
        public.verify(signature, message, pss if is_pss(SignatureScheme(scheme)) else padding.PKCS1v15(), algorithm)
    else:
        raise InvalidSignature(f"cannot verify scheme 0x{scheme:04x} with {type(public).__name__}")


__all__ = ["verify_signature"]
