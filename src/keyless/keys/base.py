"""The one interface between "a handshake needs a private-key operation" and where the key lives.

The TLS engine never calls a key: it emits a key-operation event carrying the key that the certificate
callback returned, and the asyncio adapter performs it. Three kinds of key implement ``AsyncPrivateKey``:

- ``keyless.keys.local.LocalKey``: a ``cryptography`` key in this process (an edge with a key file, tests);
- ``keyless.keys.pkcs11.Pkcs11KeyHandle``: a key on a PKCS#11 token (every call blocks on the token);
- ``keyless.client.RemoteKey``: a key on key servers, reached through ``keyless.client.KeylessClient``.

A key whose operations are plain function calls (the first two) also offers them synchronously through
``blocking`` (a ``BlockingPrivateKey``), so the adapter can answer inline instead of scheduling a task, or
on a thread pool when ``offload`` says a call may block. mypy --strict checks all three against these
protocols; ``isinstance(key, AsyncPrivateKey)`` checks a key handed over at run time (configuration only:
it is too slow for a handshake).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from keyless.keys.schemes import SignatureScheme


@runtime_checkable
class AsyncPrivateKey(Protocol):
    """A private key the caller may only use through these operations; it never reveals the key itself."""

    @property
    def public_key(self) -> PublicKeyTypes:
        """The public half: what the certificate must carry."""
        ...

    @property
    def ski(self) -> bytes:
        """The Subject Key Identifier of ``public_key`` (``keyless.keys.ski``): how key servers name it."""
        ...

    @property
    def signature_schemes(self) -> frozenset[SignatureScheme]:
        """The schemes ``sign`` accepts (``keyless.keys.schemes.signature_schemes_for``, or fewer).

        This is how a key says it signs ML-DSA: an ML-DSA key lists its parameter set's scheme (MLDSA44,
        MLDSA65 or MLDSA87), and its ``sign`` signs by external μ (``keyless.keys.mldsa``): μ is computed
        from ``public_key`` and the message, and only those 64 bytes reach the private key (a key server's
        opcode 0xC0-0xC2, or ``sign_mu`` in this process). A key that lists no ML-DSA scheme is never asked
        for one (``keyless.tls.config.CertifiedKey`` offers only the schemes the key lists)."""
        ...

    @property
    def blocking(self) -> BlockingPrivateKey | None:
        """The same key with synchronous operations, or None when every operation must be awaited."""
        ...

    def with_context(self, **context: str | None) -> AsyncPrivateKey:
        """This key carrying one handshake's context for a key server (``sni``, ``client_ip``, see
        ``keyless.client.OperationContext``); a key with no use for context returns itself."""
        ...

    async def sign(self, scheme: SignatureScheme, message: bytes) -> bytes:
        """Sign the whole ``message`` (not a digest) with ``scheme``; the implementation hashes
        it as the scheme requires (``keyless.keys.schemes.digest_for``; for ML-DSA, external μ:
        ``keyless.keys.operations.signing_payload``)."""
        ...

    async def decrypt(self, ciphertext: bytes) -> bytes:
        """Raw RSA decryption: the k-byte result with PKCS#1 v1.5 padding NOT removed.

        TLS 1.2 RSA key exchange strips the padding itself, in constant time with implicit
        rejection (``keyless.keys.premaster``), so no padding oracle exists at this interface.
        """
        ...


class BlockingPrivateKey(Protocol):
    """The synchronous operations of a key held in this process or on a local token."""

    @property
    def offload(self) -> bool:
        """True when a call may block long enough to belong on a thread pool (an HSM, a large RSA key);
        False when it is cheap enough to make on the event loop."""
        ...

    def sign_sync(self, scheme: SignatureScheme, message: bytes) -> bytes: ...

    def decrypt_sync(self, ciphertext: bytes) -> bytes: ...


class KeyOperationError(Exception):
    """A key operation failed (the key server answered an error, timed out, or the key refused).

    ``code`` is the keyless protocol error code where one applies (see
    ``keyless.protocol.constants.ErrorCode``), else None. The message never holds key material.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


__all__ = ["AsyncPrivateKey", "BlockingPrivateKey", "KeyOperationError"]
