"""``LocalKey``: an ``AsyncPrivateKey`` over a ``cryptography`` private key held in this process.

The async methods just call the synchronous ones: a caller that wants RSA off the event loop runs
``sign_sync`` in a thread pool (``cryptography`` releases the GIL for RSA and ECDSA).
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from keyless.keys.base import KeyOperationError
from keyless.keys.schemes import SignatureScheme, digest_for, is_pss, scheme_hash

LocalPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class LocalKey:
    """A private key signed with in-process. Implements ``keyless.keys.base.AsyncPrivateKey``."""

    __slots__ = ("_key", "_public", "_raw")

    def __init__(self, private_key: LocalPrivateKey) -> None:
        if not isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise TypeError(f"unsupported private key type {type(private_key).__name__}")
        self._key = private_key
        self._public: PublicKeyTypes = private_key.public_key()
        self._raw: Any = None  # keyless.keys.rsa_raw.RawRSA, made at the first decryption

    def __repr__(self) -> str:
        return f"<LocalKey {type(self._public).__name__}>"

    @property
    def public_key(self) -> PublicKeyTypes:
        return self._public

    async def sign(self, scheme: SignatureScheme, message: bytes) -> bytes:
        return self.sign_sync(scheme, message)

    async def decrypt(self, ciphertext: bytes) -> bytes:
        return self.decrypt_sync(ciphertext)

    def sign_sync(self, scheme: SignatureScheme, message: bytes) -> bytes:
        key = self._key
        try:
            if isinstance(key, ed25519.Ed25519PrivateKey):
                if scheme != SignatureScheme.ED25519:
                    raise KeyOperationError(f"an Ed25519 key cannot sign {scheme.name}")
                return key.sign(message)
            if scheme == SignatureScheme.RSA_PKCS1_MD5_SHA1:
                if not isinstance(key, rsa.RSAPrivateKey):
                    raise KeyOperationError("MD5+SHA1 signatures need an RSA key")
                return _rsa_raw_pkcs1_sign(key, digest_for(scheme, message))
            algorithm = scheme_hash(scheme)
            if algorithm is None:
                raise KeyOperationError(f"unsupported scheme {scheme.name}")
            if isinstance(key, ec.EllipticCurvePrivateKey):
                if scheme.name.startswith("RSA") or scheme == SignatureScheme.ED25519:
                    raise KeyOperationError(f"an ECDSA key cannot sign {scheme.name}")
                return key.sign(message, ec.ECDSA(algorithm))
            if is_pss(scheme):
                pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
                return key.sign(message, pss, algorithm)
            if scheme.name.startswith("RSA_PKCS1"):
                return key.sign(message, padding.PKCS1v15(), algorithm)
            raise KeyOperationError(f"an RSA key cannot sign {scheme.name}")
        except KeyOperationError:
            raise
        except (ValueError, TypeError) as exc:
            raise KeyOperationError(f"signing with {scheme.name} failed") from exc

    def decrypt_sync(self, ciphertext: bytes) -> bytes:
        """Raw RSA: c^d mod n, left-padded to the modulus length; padding is NOT removed (the caller does
        that in constant time)."""
        key = self._key
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyOperationError("decryption needs an RSA key")
        # OpenSSL's constant-time, blinded CRT operation (keys/rsa_raw.py): a plain pow(c, d, n) takes 18 ms
        # and its time depends on the ciphertext, which is what a Bleichenbacher/Marvin attacker measures.
        from keyless.keys.rsa_raw import RawRSAError, raw_rsa_for

        raw = self._raw
        if raw is None:
            raw = self._raw = raw_rsa_for(key)
        try:
            return bytes(raw.private_op(ciphertext))
        except RawRSAError as exc:
            raise KeyOperationError("ciphertext length or range does not fit the key") from exc


def _rsa_raw_pkcs1_sign(key: rsa.RSAPrivateKey, digest: bytes) -> bytes:
    """PKCS#1 v1.5 signature over a bare 36-byte MD5||SHA-1 digest (no DigestInfo), as TLS 1.0/1.1 used."""
    k = (key.key_size + 7) // 8
    if len(digest) > k - 11:
        raise KeyOperationError("digest too long for the key")
    block = b"\x00\x01" + b"\xff" * (k - 3 - len(digest)) + b"\x00" + digest
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    return pow(int.from_bytes(block, "big"), numbers.d, n).to_bytes(k, "big")


__all__ = ["LocalKey", "LocalPrivateKey"]
