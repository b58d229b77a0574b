"""``RemoteKey``: a private key that lives on key servers, used through ``KeylessClient``.

It implements ``keyless.keys.base.AsyncPrivateKey``, so the TLS engine cannot tell it from a local
key. The SKI that selects the key on the key server is computed from the public key (spec: never read
from a certificate extension). A TLS signature scheme becomes an opcode by the key's type and the
scheme's hash (TLS 1.2 lets an ECDSA key sign with any hash, so the curve in the scheme's name is
not used); the request carries the digest, or the whole message for Ed25519.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from dataclasses import dataclass, field, replace

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PublicKeyTypes

from keyless.client.client import KeylessClient
from keyless.client.core import Request
from keyless.keys.base import KeyOperationError
from keyless.keys.premaster import PREMASTER_LENGTH, unpad_premaster
from keyless.keys.schemes import SignatureScheme, digest_for, is_pss, scheme_hash
from keyless.keys.ski import ski_of
from keyless.protocol import Opcode

_RSA_PKCS1_BY_HASH = {
    "sha1": Opcode.RSA_SIGN_SHA1,
    "sha224": Opcode.RSA_SIGN_SHA224,
    "sha256": Opcode.RSA_SIGN_SHA256,
    "sha384": Opcode.RSA_SIGN_SHA384,
    "sha512": Opcode.RSA_SIGN_SHA512,
}
_RSA_PSS_BY_HASH = {
    "sha256": Opcode.RSA_PSS_SIGN_SHA256,
    "sha384": Opcode.RSA_PSS_SIGN_SHA384,
    "sha512": Opcode.RSA_PSS_SIGN_SHA512,
}
_ECDSA_BY_HASH = {
    "sha1": Opcode.ECDSA_SIGN_SHA1,
    "sha224": Opcode.ECDSA_SIGN_SHA224,
    "sha256": Opcode.ECDSA_SIGN_SHA256,
    "sha384": Opcode.ECDSA_SIGN_SHA384,
    "sha512": Opcode.ECDSA_SIGN_SHA512,
}


def opcode_for(scheme: SignatureScheme, public_key: PublicKeyTypes) -> Opcode:
    """The keyless opcode that signs with ``scheme`` using the private half of ``public_key``.
    Raises ``KeyOperationError`` when the key cannot sign with the scheme."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        if scheme == SignatureScheme.ED25519:
            return Opcode.ED25519_SIGN
    elif isinstance(public_key, rsa.RSAPublicKey):
        if scheme == SignatureScheme.RSA_PKCS1_MD5_SHA1:
            return Opcode.RSA_SIGN_MD5SHA1
        algorithm = scheme_hash(scheme)
        if algorithm is not None and scheme.name.startswith("RSA"):
            table = _RSA_PSS_BY_HASH if is_pss(scheme) else _RSA_PKCS1_BY_HASH
            opcode = table.get(algorithm.name)
            if opcode is not None:
                return opcode
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        algorithm = scheme_hash(scheme)
        if algorithm is not None and scheme.name.startswith("ECDSA"):
            opcode = _ECDSA_BY_HASH.get(algorithm.name)
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
    return f"a {type(public_key).__name__}"


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

    __slots__ = ("_client", "_context_items", "_modulus_length", "_opcodes", "_public", "_ski", "context", "timeout")

    def __init__(
        self,
        client: KeylessClient,
        key: x509.Certificate | CertificatePublicKeyTypes,
        *,
        context: OperationContext | None = None,
        timeout: float | None = None,
    ) -> None:
        public = key.public_key() if isinstance(key, x509.Certificate) else key
        if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            raise TypeError(f"keyless supports RSA, ECDSA and Ed25519 keys, not {type(public).__name__}")
        self._client = client
        self._public: CertificatePublicKeyTypes = public
        self._ski = ski_of(public)
        self._modulus_length = (public.key_size + 7) // 8 if isinstance(public, rsa.RSAPublicKey) else 0
        self.context = context or OperationContext()
        self.timeout = timeout
        self._context_items = _context_items(self.context, client)
        self._opcodes: dict[SignatureScheme, Opcode] = {}

    def __repr__(self) -> str:
        return f"<RemoteKey {type(self._public).__name__} ski={self._ski.hex()}>"

    @property
    def public_key(self) -> PublicKeyTypes:
        return self._public

    @property
    def ski(self) -> bytes:
        return self._ski

    def with_context(self, **context: str | None) -> RemoteKey:
        """The same key with (part of) its ``OperationContext`` replaced, e.g. ``with_context(sni=name)``."""
        derived = object.__new__(RemoteKey)  # per handshake: skip recomputing the SKI
        derived._client = self._client
        derived._public = self._public
        derived._ski = self._ski
        derived._modulus_length = self._modulus_length
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
            opcode = self._opcodes[scheme] = opcode_for(scheme, self._public)
        return await self._call(opcode, _digest(scheme, message), deadline)

    async def sign_digest(self, opcode: Opcode, digest: bytes, *, deadline: float | None = None) -> bytes:
        """Send an already-computed digest with an explicit opcode (for tools; TLS uses ``sign``)."""
        return await self._call(opcode, digest, deadline)

    async def decrypt(self, ciphertext: bytes, *, deadline: float | None = None) -> bytes:
        """Raw RSA decryption on the key server: the k-byte block, padding NOT removed."""
        if not isinstance(self._public, rsa.RSAPublicKey):
            raise KeyOperationError("decryption needs an RSA key")
        return await self._call(Opcode.RSA_DECRYPT, ciphertext, deadline)

    async def decrypt_premaster(
        self, ciphertext: bytes, client_version: bytes, length: int = PREMASTER_LENGTH,
        *, deadline: float | None = None,
    ) -> bytes:
        """The TLS 1.2 RSA premaster secret in ``ciphertext``, or a random one (RFC 5246 7.4.7.1).

        The random premaster is drawn before the key server is asked, and a bad padding, a wrong
        version, a wrong-length answer and a failed operation all take the same path through
        ``unpad_premaster``: no error escapes, so nothing distinguishes them to the TLS client.
        """
        if length != PREMASTER_LENGTH:
            raise ValueError(f"TLS premaster secrets are {PREMASTER_LENGTH} bytes")  # caller bug
        if not isinstance(self._public, rsa.RSAPublicKey):
            raise KeyOperationError("decryption needs an RSA key")
        random_premaster = os.urandom(PREMASTER_LENGTH)
        try:
            raw_block = await self._call(Opcode.RSA_DECRYPT, ciphertext, deadline)
        except KeyOperationError:
            raw_block = b""  # checked like any wrong-length block: the random premaster comes out
        return unpad_premaster(raw_block, self._modulus_length, client_version, random_premaster)

    async def _call(self, opcode: int, payload: bytes, deadline: float | None) -> bytes:
        sni, server_ip, cert_id, client_ip, request_context = self._context_items
        request = Request(
            opcode, payload, self._ski, sni=sni, server_ip=server_ip, cert_id=cert_id, client_ip=client_ip,
            request_context=request_context,
        )
        return await self._client.call(request, timeout=self.timeout, deadline=deadline)


# hashlib for the common hashes: the same digests as ``digest_for``, at a fraction of the per-call cost.
_HASHLIB: dict[SignatureScheme, str] = {
    scheme: name
    for scheme in SignatureScheme
    if (algorithm := scheme_hash(scheme)) is not None and (name := algorithm.name) in ("sha1", "sha256", "sha384",
                                                                                       "sha512")
}


def _digest(scheme: SignatureScheme, message: bytes) -> bytes:
    name = _HASHLIB.get(scheme)
    if name is not None:
        return hashlib.new(name, message).digest()
    return digest_for(scheme, message)


def _context_items(
    context: OperationContext, client: KeylessClient
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


__all__ = ["OperationContext", "RemoteKey", "opcode_for"]
