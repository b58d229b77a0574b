"""The one interface between "a handshake needs a private-key operation" and where the key lives.

The TLS engine never calls a key: it emits a key-operation event carrying the key reference that
the certificate callback returned, and the asyncio adapter awaits one of these methods. A key may
be a local ``cryptography`` key (``keyless.keys.local.LocalKey``), a key behind a key server
(``keyless.client.RemoteKey``) or anything else that implements this protocol.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from keyless.keys.schemes import SignatureScheme


@runtime_checkable
class AsyncPrivateKey(Protocol):
    """A private key the caller may only use through these operations."""

    @property
    def public_key(self) -> PublicKeyTypes: ...

    async def sign(self, scheme: SignatureScheme, message: bytes) -> bytes:
        """Sign the whole ``message`` (not a digest) with ``scheme``; the implementation hashes
        it as the scheme requires (``keyless.keys.schemes.digest_for``)."""
        ...

    async def decrypt(self, ciphertext: bytes) -> bytes:
        """Raw RSA decryption: the k-byte result with PKCS#1 v1.5 padding NOT removed.

        TLS 1.2 RSA key exchange strips the padding itself, in constant time with implicit
        rejection (``keyless.keys.premaster``), so no padding oracle exists at this interface.
        """
        ...


class KeyOperationError(Exception):
    """A key operation failed (the key server answered an error, timed out, or the key refused).

    ``code`` is the keyless protocol error code where one applies (see
    ``keyless.protocol.constants.ErrorCode``), else None. The message never holds key material.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
