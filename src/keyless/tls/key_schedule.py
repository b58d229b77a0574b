"""The TLS 1.3 key schedule (RFC 8446 §7.1) as typed stages, and the handshake transcript (§4.4.1).

EarlySecret → HandshakeSecret → MasterSecret: each stage offers only the derivations valid at that point
(Go's crypto/tls/internal/tls13, rustls' KeySchedule*). HMAC via ``hmac.digest`` (OpenSSL one-shot) keeps a
derivation at about a microsecond.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from keyless.tls.codec import handshake_message
from keyless.tls.suites import CipherSuite13

_MESSAGE_HASH = 254


hmac_digest: Callable[[bytes, bytes, str], bytes] = hmac.digest
"""One-shot HMAC(key, message, hash name): OpenSSL's, without the ``hmac.digest`` wrapper frame where
available (~20 calls a handshake here and in the record layer's key derivation)."""
try:
    from _hashlib import hmac_digest as _openssl_hmac_digest

    hmac_digest = _openssl_hmac_digest
except ImportError:  # pragma: no cover - CPython without OpenSSL hashes
    pass
_hmac_digest = hmac_digest


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    return _hmac_digest(salt, ikm, hash_name)


_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}
_LABEL_PREFIXES: dict[tuple[bytes, int], bytes] = {}


def _label_prefix(label: bytes, length: int) -> bytes:
    """uint16 length || opaque label<7..255> of an HkdfLabel: a handful of constants, built once each."""
    prefix = _LABEL_PREFIXES.get((label, length))
    if prefix is None:
        full_label = b"tls13 " + label
        prefix = _LABEL_PREFIXES[(label, length)] = length.to_bytes(2, "big") + bytes((len(full_label),)) + full_label
    return prefix


def hkdf_expand_label(hash_name: str, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    prefix = _LABEL_PREFIXES.get((label, length)) or _label_prefix(label, length)
    info = b"".join((prefix, bytes((len(context),)), context))
    if length <= _DIGEST_SIZES.get(hash_name, 0):  # the usual case: one HMAC block (T(1) = HMAC(info || 0x01))
        return _hmac_digest(secret, info + b"\x01", hash_name)[:length]
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(secret, block + info + bytes((counter,)), hash_name)
        out += block
        counter += 1
    return out[:length]


@functools.cache
def _empty_hash(hash_name: str) -> bytes:
    return bytes(hashlib.new(hash_name).digest())


class Transcript:
    """Running hash of handshake messages; ``digest()`` does not disturb it."""

    __slots__ = ("_hash", "hash_name")

    def __init__(self, hash_name: str) -> None:
        self.hash_name = hash_name
        self._hash: Any = hashlib.new(hash_name)

    def update(self, message: bytes) -> None:
        self._hash.update(message)

    def digest(self) -> bytes:
        return self._hash.copy().digest()  # type: ignore[no-any-return]

    def digest_with(self, extra: bytes) -> bytes:
        """Hash of the transcript followed by ``extra``, leaving the transcript as it was (PSK binders)."""
        h = self._hash.copy()
        h.update(extra)
        return bytes(h.digest())

    def restart_after_hello_retry(self) -> None:
        """§4.4.1: after HRR, ClientHello1 is replaced by message_hash(Hash(ClientHello1))."""
        first_hello_hash = self.digest()
        self._hash = hashlib.new(self.hash_name)
        self._hash.update(handshake_message(_MESSAGE_HASH, first_hello_hash))


class _Stage:
    __slots__ = ("_secret", "hash_length", "hash_name", "suite")

    def __init__(self, suite: CipherSuite13, secret: bytes) -> None:
        self.suite = suite
        self.hash_name = suite.hash_name
        self.hash_length = suite.hash_length
        self._secret = secret

    def __repr__(self) -> str:  # never show secrets
        return f"<{type(self).__name__} {self.suite.name}>"

    def _derive(self, label: bytes, transcript_hash: bytes) -> bytes:
        """Derive-Secret (§7.1): HKDF-Expand-Label to Hash.length bytes, i.e. a single HMAC block."""
        length = self.hash_length
        prefix = _LABEL_PREFIXES.get((label, length)) or _label_prefix(label, length)
        info = b"".join((prefix, bytes((len(transcript_hash),)), transcript_hash, b"\x01"))
        return _hmac_digest(self._secret, info, self.hash_name)

    def _next_salt(self) -> bytes:
        return self._derive(b"derived", _empty_hash(self.hash_name))


class EarlySecret(_Stage):
    __slots__ = ("_salt",)

    @classmethod
    def create(cls, suite: CipherSuite13, psk: bytes | None) -> EarlySecret:
        zeros = bytes(suite.hash_length)
        return cls(suite, hkdf_extract(suite.hash_name, zeros, psk if psk is not None else zeros))

    def __init__(self, suite: CipherSuite13, secret: bytes) -> None:
        super().__init__(suite, secret)
        self._salt: bytes | None = None

    def _next_salt(self) -> bytes:
        if self._salt is None:
            self._salt = super()._next_salt()
        return self._salt

    def resumption_binder_key(self) -> bytes:
        return self._derive(b"res binder", _empty_hash(self.hash_name))

    @classmethod
    def without_psk(cls, suite: CipherSuite13) -> EarlySecret:
        """A full handshake's early secret is a constant of the suite: computed once."""
        cached = _NO_PSK_EARLY.get(suite.code)
        if cached is None:
            cached = _NO_PSK_EARLY[suite.code] = cls.create(suite, None)
            cached._next_salt()
        return cached

    def handshake_secret(self, shared_secret: bytes) -> HandshakeSecret:
        return HandshakeSecret(self.suite, hkdf_extract(self.hash_name, self._next_salt(), shared_secret))


_NO_PSK_EARLY: dict[int, EarlySecret] = {}


class HandshakeSecret(_Stage):
    __slots__ = ()

    def client_handshake_traffic_secret(self, transcript_hash: bytes) -> bytes:
        return self._derive(b"c hs traffic", transcript_hash)

    def server_handshake_traffic_secret(self, transcript_hash: bytes) -> bytes:
        return self._derive(b"s hs traffic", transcript_hash)

    def master_secret(self) -> MasterSecret:
        zeros = bytes(self.hash_length)
        return MasterSecret(self.suite, hkdf_extract(self.hash_name, self._next_salt(), zeros))


class MasterSecret(_Stage):
    __slots__ = ()

    def client_application_traffic_secret(self, transcript_hash: bytes) -> bytes:
        return self._derive(b"c ap traffic", transcript_hash)

    def server_application_traffic_secret(self, transcript_hash: bytes) -> bytes:
        return self._derive(b"s ap traffic", transcript_hash)

    def exporter_master_secret(self, transcript_hash: bytes) -> bytes:
        return self._derive(b"exp master", transcript_hash)

    def resumption_master_secret(self, transcript_hash: bytes) -> bytes:
        return self._derive(b"res master", transcript_hash)


def finished_verify_data(hash_name: str, base_key: bytes, transcript_hash: bytes) -> bytes:
    """§4.4.4: HMAC(finished_key, Transcript-Hash)."""
    length = len(transcript_hash)
    prefix = _LABEL_PREFIXES.get((b"finished", length)) or _label_prefix(b"finished", length)
    finished_key = _hmac_digest(base_key, prefix + b"\x00\x01", hash_name)  # Expand-Label(…, "", Hash.length)
    return _hmac_digest(finished_key, transcript_hash, hash_name)


def next_traffic_secret(hash_name: str, secret: bytes) -> bytes:
    """§7.2: application_traffic_secret_N+1."""
    return hkdf_expand_label(hash_name, secret, b"traffic upd", b"", len(secret))


def resumption_psk(hash_name: str, resumption_master_secret: bytes, ticket_nonce: bytes) -> bytes:
    """§4.6.1: the PSK a ticket stands for."""
    length = len(resumption_master_secret)
    return hkdf_expand_label(hash_name, resumption_master_secret, b"resumption", ticket_nonce, length)


def certificate_verify_input(transcript_hash: bytes, *, server: bool = True) -> bytes:
    """§4.4.3: 64 spaces, the context string, a zero byte, the transcript hash: what the key signs."""
    context = b"TLS 1.3, server CertificateVerify" if server else b"TLS 1.3, client CertificateVerify"
    return b" " * 64 + context + b"\x00" + transcript_hash
