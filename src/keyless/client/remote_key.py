"""``RemoteKey``: a private key that lives on key servers, used through ``KeylessClient``.

It implements ``keyless.keys.base.AsyncPrivateKey``, so the TLS engine cannot tell it from a local
key. The SKI that selects the key on the key server is computed from the public key (spec: never read
from a certificate extension). A TLS signature scheme becomes an opcode as for every key
(``keyless.keys.operations.opcode_for``); the request carries the digest, the whole message for Ed25519, or
for ML-DSA the external μ computed here from the public key (``keyless.keys.mldsa``: 64 bytes whatever
the message, and the key server signs it with ``sign_mu``).

It needs of the client only ``KeyServerCaller``: ``KeylessClient.remote_key`` makes remote keys, and
this module does not import the client back.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from keyless.client.core import Request
from keyless.keys.base import AsyncPrivateKey, KeyOperationError
from keyless.keys.mldsa import MLDSA_PUBLIC_TYPES, external_mu, public_key_hash
from keyless.keys.operations import opcode_for
from keyless.keys.premaster import PREMASTER_LENGTH, decrypt_premaster
from keyless.keys.schemes import SignatureScheme, digest_for, signature_schemes_for
from keyless.keys.ski import ski_of
from keyless.protocol import Opcode


class KeyServerCaller(Protocol):
    """What a ``RemoteKey`` needs of ``keyless.client.KeylessClient``."""

    @property
    def send_client_ip(self) -> bool: ...

    @property
    def send_request_id(self) -> bool: ...

    async def call(self, request: Request, *, timeout: float | None = None, deadline: float | None = None) -> bytes:
        ...

@dataclass(frozen=True, slots=True)
class OperationContext:
    """Per-handshake context sent along with an operation.

    SNI, server IP and certificate ID are safe for any key server. Client IP and request ID name the
    end user's connection: they are sent only when the client has ``send_client_ip`` /
    ``send_request_id`` enabled.
    """

    sni: str | None = None
    server_ip: str | None = None
    cert_id: str | None = None
    client_ip: str | None = field(default=None, repr=False)
    request_id: str | None = None


class RemoteKey:
    """A private key on key servers. Implements ``keyless.keys.base.AsyncPrivateKey``."""

    __slots__ = (
        "_client", "_context_items", "_modulus_length", "_mu_tr", "_opcodes", "context", "public_key", "ski", "timeout",
    )

    def __init__(
        self,
        client: KeyServerCaller,
        key: x509.Certificate | CertificatePublicKeyTypes,
        *,
        context: OperationContext | None = None,
        timeout: float | None = None,
    ) -> None:
        public = key.public_key() if isinstance(key, x509.Certificate) else key
        if not isinstance(
            public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | MLDSA_PUBLIC_TYPES
        ):
            raise TypeError(f"keyless supports RSA, ECDSA, Ed25519 and ML-DSA keys, not {type(public).__name__}")
        self._client = client
        self.public_key: CertificatePublicKeyTypes = public
        self.ski = ski_of(public)
        self._modulus_length = (public.key_size + 7) // 8 if isinstance(public, rsa.RSAPublicKey) else 0
        # ML-DSA: tr = SHAKE256(pk), the part of μ every message shares, computed once per key.
        self._mu_tr = public_key_hash(public) if isinstance(public, MLDSA_PUBLIC_TYPES) else None
        self.context = context or OperationContext()
        self.timeout = timeout
        self._context_items = _context_items(self.context, client)
        self._opcodes: dict[SignatureScheme, Opcode] = {}

    def __repr__(self) -> str:
        return f"<RemoteKey {type(self.public_key).__name__} ski={self.ski.hex()}>"

    @property
    def signature_schemes(self) -> frozenset[SignatureScheme]:
        return signature_schemes_for(self.public_key)

    @property
    def blocking(self) -> None:
        return None  # every operation is a round trip to a key server: always awaited

    def with_context(self, **context: str | None) -> RemoteKey:
        """The same key with (part of) its ``OperationContext`` replaced, e.g. ``with_context(sni=name)``."""
        derived = object.__new__(RemoteKey)  # per handshake: skip recomputing the SKI
        derived._client = self._client
        derived.public_key = self.public_key
        derived.ski = self.ski
        derived._modulus_length = self._modulus_length
        derived._mu_tr = self._mu_tr
        derived._opcodes = self._opcodes  # shared cache: same key, same opcodes
        derived.context = replace(self.context, **context)
        derived.timeout = self.timeout
        derived._context_items = _context_items(derived.context, self._client)
        return derived

    # -- AsyncPrivateKey --------------------------------------------------------------------------

    async def sign(self, scheme: SignatureScheme, message: bytes, *, deadline: float | None = None) -> bytes:
        """Sign ``message`` with ``scheme`` on a key server (``message`` is hashed here)."""
        opcode = self._opcodes.get(scheme)
        if opcode is None:
            opcode = self._opcodes[scheme] = opcode_for(scheme, self.public_key)
        public = self.public_key
        if self._mu_tr is not None and isinstance(public, MLDSA_PUBLIC_TYPES):
            return await self._call(opcode, external_mu(public, message, tr=self._mu_tr), deadline)
        return await self._call(opcode, digest_for(scheme, message), deadline)

    async def decrypt(self, ciphertext: bytes, *, deadline: float | None = None) -> bytes:
        """Raw RSA decryption on the key server: the k-byte block, padding NOT removed."""
        if not isinstance(self.public_key, rsa.RSAPublicKey):
            raise KeyOperationError("decryption needs an RSA key")
        return await self._call(Opcode.RSA_DECRYPT, ciphertext, deadline)

    async def decrypt_premaster(
        self, ciphertext: bytes, client_version: bytes, length: int = PREMASTER_LENGTH,
        *, deadline: float | None = None,
    ) -> bytes:
        """The TLS 1.2 RSA premaster secret in ``ciphertext``, or a random one, by
        ``keyless.keys.premaster.decrypt_premaster`` (implicit rejection: no error escapes)."""
        if length != PREMASTER_LENGTH:
            raise ValueError(f"TLS premaster secrets are {PREMASTER_LENGTH} bytes")  # caller bug
        if not isinstance(self.public_key, rsa.RSAPublicKey):
            raise KeyOperationError("decryption needs an RSA key")
        decrypt = functools.partial(self._call, Opcode.RSA_DECRYPT, deadline=deadline)
        return await decrypt_premaster(decrypt, self._modulus_length, ciphertext, client_version)

    async def _call(self, opcode: int, payload: bytes, deadline: float | None) -> bytes:
        sni, server_ip, cert_id, client_ip, request_context = self._context_items
        request = Request(
            opcode, payload, self.ski, sni=sni, server_ip=server_ip, cert_id=cert_id, client_ip=client_ip,
            request_context=request_context,
        )
        return await self._client.call(request, timeout=self.timeout, deadline=deadline)


def _context_items(
    context: OperationContext, client: KeyServerCaller
) -> tuple[bytes | None, bytes | None, bytes | None, bytes | None, bytes | None]:
    """The wire form of ``context``, computed once per key (not per operation)."""
    sni = context.sni.encode() if context.sni else None
    server_ip = _ip_bytes(context.server_ip)
    cert_id = context.cert_id.encode() if context.cert_id else None
    client_ip = _ip_bytes(context.client_ip) if client.send_client_ip else None
    request_context = None
    if client.send_request_id and context.request_id:
        request_context = json.dumps({"request_id": context.request_id}, separators=(",", ":")).encode()
    return sni, server_ip, cert_id, client_ip, request_context


def _ip_bytes(text: str | None) -> bytes | None:
    if not text:
        return None
    return ipaddress.ip_address(text).packed


__all__ = ["KeyServerCaller", "OperationContext", "RemoteKey", "opcode_for"]


if TYPE_CHECKING:  # mypy --strict proves RemoteKey fits a handshake's seam (KeylessClient.remote_key proves
    # that the client is a KeyServerCaller)

    def _fits_the_seam(key: RemoteKey) -> AsyncPrivateKey:
        return key
