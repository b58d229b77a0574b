"""TLS signature schemes and how each maps onto a key operation.

Shared by the TLS engine (which picks a scheme), the client library (which turns a scheme into a
keyless opcode) and local keys (which sign in-process). Code points are those of the IANA
"TLS SignatureScheme" registry (RFC 8446 section 4.2.3).
"""

from __future__ import annotations

import hashlib
from enum import IntEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes


class SignatureScheme(IntEnum):
    RSA_PKCS1_SHA1 = 0x0201
    ECDSA_SHA1 = 0x0203
    RSA_PKCS1_SHA256 = 0x0401
    RSA_PKCS1_SHA384 = 0x0501
    RSA_PKCS1_SHA512 = 0x0601
    ECDSA_SECP256R1_SHA256 = 0x0403
    ECDSA_SECP384R1_SHA384 = 0x0503
    ECDSA_SECP521R1_SHA512 = 0x0603
    RSA_PSS_RSAE_SHA256 = 0x0804
    RSA_PSS_RSAE_SHA384 = 0x0805
    RSA_PSS_RSAE_SHA512 = 0x0806
    ED25519 = 0x0807
    RSA_PSS_PSS_SHA256 = 0x0809
    RSA_PSS_PSS_SHA384 = 0x080A
    RSA_PSS_PSS_SHA512 = 0x080B
    # draft-ietf-tls-mldsa: ML-DSA (FIPS 204, pure, empty context) over the whole message; TLS 1.3 only.
    MLDSA44 = 0x0904
    MLDSA65 = 0x0905
    MLDSA87 = 0x0906
    # Not a TLS code point: the MD5||SHA-1 signature of TLS 1.0/1.1 ServerKeyExchange (keyless 0x02).
    RSA_PKCS1_MD5_SHA1 = 0xFF01


class KeyKind(IntEnum):
    RSA = 1
    ECDSA = 2
    ED25519 = 3
    MLDSA = 4


_HASHES: dict[SignatureScheme, type[hashes.HashAlgorithm]] = {
    SignatureScheme.RSA_PKCS1_SHA1: hashes.SHA1,
    SignatureScheme.ECDSA_SHA1: hashes.SHA1,
    SignatureScheme.RSA_PKCS1_SHA256: hashes.SHA256,
    SignatureScheme.RSA_PKCS1_SHA384: hashes.SHA384,
    SignatureScheme.RSA_PKCS1_SHA512: hashes.SHA512,
    SignatureScheme.ECDSA_SECP256R1_SHA256: hashes.SHA256,
    SignatureScheme.ECDSA_SECP384R1_SHA384: hashes.SHA384,
    SignatureScheme.ECDSA_SECP521R1_SHA512: hashes.SHA512,
    SignatureScheme.RSA_PSS_RSAE_SHA256: hashes.SHA256,
    SignatureScheme.RSA_PSS_RSAE_SHA384: hashes.SHA384,
    SignatureScheme.RSA_PSS_RSAE_SHA512: hashes.SHA512,
    SignatureScheme.RSA_PSS_PSS_SHA256: hashes.SHA256,
    SignatureScheme.RSA_PSS_PSS_SHA384: hashes.SHA384,
    SignatureScheme.RSA_PSS_PSS_SHA512: hashes.SHA512,
}

_KINDS: dict[SignatureScheme, KeyKind] = {
    SignatureScheme.ED25519: KeyKind.ED25519,
    SignatureScheme.ECDSA_SHA1: KeyKind.ECDSA,
    SignatureScheme.ECDSA_SECP256R1_SHA256: KeyKind.ECDSA,
    SignatureScheme.ECDSA_SECP384R1_SHA384: KeyKind.ECDSA,
    SignatureScheme.ECDSA_SECP521R1_SHA512: KeyKind.ECDSA,
    SignatureScheme.MLDSA44: KeyKind.MLDSA,
    SignatureScheme.MLDSA65: KeyKind.MLDSA,
    SignatureScheme.MLDSA87: KeyKind.MLDSA,
}

MLDSA_SCHEMES = frozenset({SignatureScheme.MLDSA44, SignatureScheme.MLDSA65, SignatureScheme.MLDSA87})

PSS_SCHEMES = frozenset(
    {
        SignatureScheme.RSA_PSS_RSAE_SHA256,
        SignatureScheme.RSA_PSS_RSAE_SHA384,
        SignatureScheme.RSA_PSS_RSAE_SHA512,
        SignatureScheme.RSA_PSS_PSS_SHA256,
        SignatureScheme.RSA_PSS_PSS_SHA384,
        SignatureScheme.RSA_PSS_PSS_SHA512,
    }
)


def scheme_hash(scheme: SignatureScheme) -> hashes.HashAlgorithm | None:
    """The hash a scheme signs with; None where the scheme signs the whole message (Ed25519)
    or uses the MD5||SHA-1 concatenation."""
    cls = _HASHES.get(scheme)
    return cls() if cls is not None else None


def scheme_key_kind(scheme: SignatureScheme) -> KeyKind:
    return _KINDS.get(scheme, KeyKind.RSA)


def is_pss(scheme: SignatureScheme) -> bool:
    return scheme in PSS_SCHEMES


# The key operations of an RSA key serve every RSA scheme (PKCS#1 v1.5 and both PSS families: which
# of rsae/pss a handshake may use is the certificate's business, see keyless.tls.config); an ECDSA key
# signs with any hash (TLS 1.2 does not tie the hash to the curve); Ed25519 has one scheme.
_RSA_SCHEMES = frozenset(s for s in SignatureScheme if s.name.startswith("RSA"))
_ECDSA_SCHEMES = frozenset(s for s in SignatureScheme if s.name.startswith("ECDSA"))
_ED25519_SCHEMES = frozenset({SignatureScheme.ED25519})


def signature_schemes_for(public_key: PublicKeyTypes) -> frozenset[SignatureScheme]:
    """The schemes the private half of ``public_key`` can sign with (empty for an unsupported type)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return _RSA_SCHEMES
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _ECDSA_SCHEMES
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return _ED25519_SCHEMES
    scheme = mldsa_scheme_of(public_key)
    return frozenset({scheme}) if scheme is not None else frozenset()


def mldsa_scheme_of(public_key: PublicKeyTypes) -> SignatureScheme | None:
    """The one scheme of an ML-DSA public key (its parameter set), None for any other key."""
    if isinstance(public_key, mldsa.MLDSA44PublicKey):
        return SignatureScheme.MLDSA44
    if isinstance(public_key, mldsa.MLDSA65PublicKey):
        return SignatureScheme.MLDSA65
    if isinstance(public_key, mldsa.MLDSA87PublicKey):
        return SignatureScheme.MLDSA87
    return None


# hashlib for the common hashes: the same digests as cryptography's, at a fraction of the per-call cost.
_HASHLIB: dict[SignatureScheme, str] = {
    scheme: name for scheme, cls in _HASHES.items() if (name := cls().name) in ("sha1", "sha256", "sha384", "sha512")
}


def digest_for(scheme: SignatureScheme, message: bytes) -> bytes:
    """What a keyless request carries for ``scheme``: the digest of ``message``, the MD5||SHA-1
    concatenation for the TLS 1.0 scheme, or the whole message for Ed25519. (ML-DSA's μ depends on the
    public key too: ``keyless.keys.mldsa.external_mu``.)"""
    name = _HASHLIB.get(scheme)
    if name is not None:
        return hashlib.new(name, message).digest()
    if scheme == SignatureScheme.ED25519:
        return message
    if scheme == SignatureScheme.RSA_PKCS1_MD5_SHA1:
        md5 = hashes.Hash(hashes.MD5())
        md5.update(message)
        sha1 = hashes.Hash(hashes.SHA1())
        sha1.update(message)
        return md5.finalize() + sha1.finalize()
    algorithm = scheme_hash(scheme)
    if algorithm is None:
        raise ValueError(f"no hash for signature scheme {scheme!r}")
    h = hashes.Hash(algorithm)
    h.update(message)
    return h.finalize()
