"""Where the key server finds a key: the ``KeyStore`` interface and its in-memory implementation.

The server sees keys only through ``KeyHandle`` (an SKI, a kind, and ``execute(opcode, payload)``)
and stores through ``KeyStore`` (look-ups by SKI or by the legacy certificate digest). A PKCS#11
backend implements both without touching the server: its handle's ``execute`` talks to the token
and sets ``offload`` so the server calls it from its thread pool.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keyless.keys.local import LocalKey
from keyless.keys.mldsa import MLDSA_PRIVATE_TYPES, parameter_set_name
from keyless.keys.operations import PrivateKey, kind_of
from keyless.keys.schemes import KeyKind

log = logging.getLogger(__name__)


class KeyHandle(Protocol):
    """One private key the server may use; never exposes the key itself."""

    @property
    def ski(self) -> bytes: ...

    @property
    def kind(self) -> KeyKind: ...

    @property
    def offload(self) -> bool:
        """True when ``execute`` is slow enough to belong on the thread pool (RSA, HSM calls)."""
        ...

    @property
    def source(self) -> str:
        """Where the key came from (file path, URI), for logs."""
        ...

    def execute(self, opcode: int, payload: bytes) -> bytes:
        """Perform ``opcode`` on ``payload``; raises ``keyless.keys.operations.OperationError``."""
        ...


class KeyStore(Protocol):
    def find(self, ski: bytes) -> KeyHandle | None: ...

    def find_by_digest(self, digest: bytes) -> KeyHandle | None:
        """Look-up by the legacy certificate digest (tag 0x01): SHA-256 of the upper-case hex modulus."""
        ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[KeyHandle]: ...


def legacy_rsa_digest(public_key: rsa.RSAPublicKey) -> bytes:
    """Tag 0x01's value for an RSA key: SHA-256 over the ASCII upper-case hex of the modulus."""
    return hashlib.sha256(format(public_key.public_numbers().n, "X").encode("ascii")).digest()


def describe_key(key: PrivateKey) -> str:
    """"RSA-2048", "ECDSA-P-256", "Ed25519", "ML-DSA-65": for logs, never the key itself."""
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ECDSA-P-256", "secp384r1": "ECDSA-P-384", "secp521r1": "ECDSA-P-521"}.get(
            key.curve.name, f"ECDSA-{key.curve.name}"
        )
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, MLDSA_PRIVATE_TYPES):
        return parameter_set_name(key)
    return type(key).__name__


class LocalKeyHandle(LocalKey):
    """A key held in this process by ``cryptography`` (loaded from a file): a ``LocalKey`` with what the
    key server needs besides. Every RSA operation goes to the server's thread pool (``offload``)."""

    __slots__ = ("description", "kind", "legacy_digest", "source")

    def __init__(self, private_key: PrivateKey, source: str) -> None:
        super().__init__(private_key)
        self.kind = kind_of(private_key)
        self.offload = self.kind is KeyKind.RSA
        self.source = source
        self.description = describe_key(private_key)
        public = self.public_key
        self.legacy_digest = legacy_rsa_digest(public) if isinstance(public, rsa.RSAPublicKey) else None

    def __repr__(self) -> str:
        return f"<LocalKeyHandle {self.description} ski={self.ski.hex()} from {self.source}>"


class InMemoryKeyStore:
    """Keys indexed by SKI (and by legacy digest for RSA). Immutable once built: a reload builds a
    new store and the server swaps it in, so in-flight requests keep the store they started with."""

    def __init__(self, handles: Iterable[KeyHandle] = ()) -> None:
        self._by_ski: dict[bytes, KeyHandle] = {}
        self._by_digest: dict[bytes, KeyHandle] = {}
        for handle in handles:
            if handle.ski in self._by_ski:
                log.info("key from %s duplicates the key from %s (SKI %s); keeping the first",
                         handle.source, self._by_ski[handle.ski].source, handle.ski.hex())
                continue
            self._by_ski[handle.ski] = handle
            digest = getattr(handle, "legacy_digest", None)
            if isinstance(digest, bytes):
                self._by_digest.setdefault(digest, handle)

    def find(self, ski: bytes) -> KeyHandle | None:
        return self._by_ski.get(ski)

    def find_by_digest(self, digest: bytes) -> KeyHandle | None:
        return self._by_digest.get(digest)

    def __len__(self) -> int:
        return len(self._by_ski)

    def __iter__(self) -> Iterator[KeyHandle]:
        return iter(list(self._by_ski.values()))

    def __repr__(self) -> str:
        return f"<InMemoryKeyStore {len(self)} keys>"
