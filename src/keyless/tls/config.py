"""Server configuration: certificate selection by callback, negotiation preferences, resumption and limits."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyless.keys.base import AsyncPrivateKey
from keyless.keys.schemes import SignatureScheme, mldsa_scheme_of
from keyless.tls import messages
from keyless.tls.client_auth import MAX_CLIENT_DEPTH
from keyless.tls.suites import (
    DEFAULT_TLS13_GROUPS,
    DEFAULT_TLS13_SUITES,
    ECDHE_GROUPS,
    ECDSA_SCHEME_FOR_CURVE,
    HYBRID_GROUPS,
    CipherSuite13,
)

RSASSA_PSS_OID = x509.ObjectIdentifier("1.2.840.113549.1.1.10")
MAX_TICKET_LIFETIME = 604800  # RFC 8446 §4.6.1: seven days

_ECDSA_TLS13 = {curve: (scheme,) for curve, scheme in ECDSA_SCHEME_FOR_CURVE.items()}
_ECDSA_TLS12 = (
    SignatureScheme.ECDSA_SECP256R1_SHA256,
    SignatureScheme.ECDSA_SECP384R1_SHA384,
    SignatureScheme.ECDSA_SECP521R1_SHA512,
    SignatureScheme.ECDSA_SHA1,
)
_RSAE_PSS = (
    SignatureScheme.RSA_PSS_RSAE_SHA256,
    SignatureScheme.RSA_PSS_RSAE_SHA384,
    SignatureScheme.RSA_PSS_RSAE_SHA512,
)
_PSS_PSS = (
    SignatureScheme.RSA_PSS_PSS_SHA256,
    SignatureScheme.RSA_PSS_PSS_SHA384,
    SignatureScheme.RSA_PSS_PSS_SHA512,
)
_RSA_PKCS1 = (
    SignatureScheme.RSA_PKCS1_SHA256,
    SignatureScheme.RSA_PKCS1_SHA384,
    SignatureScheme.RSA_PKCS1_SHA512,
    SignatureScheme.RSA_PKCS1_SHA1,
)


@dataclass(frozen=True)
class CertifiedKey:
    """One site: its certificate chain (leaf first) and its private key (local, on a token or on key servers).

    Everything derivable from the chain is computed once here, not per handshake. The schemes offered are
    those the certificate allows and the key can sign with.
    """

    chain: tuple[x509.Certificate, ...]
    key: AsyncPrivateKey = field(repr=False)  # the engine only hands it back in KeyOperationRequired
    ocsp_response: bytes | None = field(default=None, repr=False)
    chain_der: tuple[bytes, ...] = field(init=False, repr=False)
    key_type: str = field(init=False)  # "ecdsa-secp256r1", "rsa", "rsa-pss", "ed25519", "mldsa65", ...
    tls13_schemes: tuple[int, ...] = field(init=False)
    tls12_schemes: tuple[int, ...] = field(init=False)
    rsa_key_exchange: bool = field(init=False)
    certificate_message: bytes = field(init=False, repr=False)
    certificate_message_with_ocsp: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("CertifiedKey needs at least the leaf certificate")
        leaf = self.chain[0]
        public = leaf.public_key()
        key_type: str
        tls13: tuple[int, ...]
        tls12: tuple[int, ...]
        if isinstance(public, ec.EllipticCurvePublicKey):
            key_type = f"ecdsa-{public.curve.name}"
            tls13 = _ECDSA_TLS13.get(public.curve.name, ())
            tls12 = _ECDSA_TLS12
        elif isinstance(public, ed25519.Ed25519PublicKey):
            key_type, tls13, tls12 = "ed25519", (SignatureScheme.ED25519,), (SignatureScheme.ED25519,)
        elif isinstance(public, rsa.RSAPublicKey):
            if leaf.public_key_algorithm_oid == RSASSA_PSS_OID:
                key_type, tls13, tls12 = "rsa-pss", _PSS_PSS, _PSS_PSS
            else:
                key_type, tls13, tls12 = "rsa", _RSAE_PSS, _RSAE_PSS + _RSA_PKCS1
        elif (mldsa_scheme := mldsa_scheme_of(public)) is not None:
            # draft-ietf-tls-mldsa: TLS 1.3 only (no TLS 1.2 code points), one scheme per parameter set.
            key_type, tls13, tls12 = mldsa_scheme.name.lower(), (mldsa_scheme,), ()
        else:
            raise ValueError(f"unsupported certificate key type {type(public).__name__}")
        _check_key_matches(public, self.key)
        key_schemes = self.key.signature_schemes
        tls13 = tuple(scheme for scheme in tls13 if scheme in key_schemes)
        tls12 = tuple(scheme for scheme in tls12 if scheme in key_schemes)
        chain_der = tuple(cert.public_bytes(Encoding.DER) for cert in self.chain)
        setattr_ = object.__setattr__
        setattr_(self, "chain_der", chain_der)
        setattr_(self, "key_type", key_type)
        # Kept as SignatureScheme members (an IntEnum, so they compare as ints): no conversion per handshake.
        setattr_(self, "tls13_schemes", tuple(tls13))
        setattr_(self, "tls12_schemes", tuple(tls12))
        setattr_(self, "rsa_key_exchange", key_type == "rsa")
        plain = messages.certificate(chain_der)
        setattr_(self, "certificate_message", plain)
        stapled = messages.certificate(chain_der, self.ocsp_response) if self.ocsp_response else plain
        setattr_(self, "certificate_message_with_ocsp", stapled)


def _check_key_matches(certificate_key: PublicKeyTypes, key: AsyncPrivateKey) -> None:
    """A key whose public half differs from the leaf's would only show up as clients failing the
    CertificateVerify: refuse the pairing at configuration time instead."""
    if not isinstance(key, AsyncPrivateKey):  # e.g. a raw cryptography private key
        raise TypeError("CertifiedKey.key must be an AsyncPrivateKey (e.g. keyless.keys.local.LocalKey)")
    fmt = PublicFormat.SubjectPublicKeyInfo
    if key.public_key.public_bytes(Encoding.DER, fmt) != certificate_key.public_bytes(Encoding.DER, fmt):
        raise ValueError("the key does not match the leaf certificate")


@dataclass(frozen=True, slots=True)
class ClientHelloInfo:
    """What the certificate callback may look at."""

    server_name: str | None
    signature_schemes: tuple[int, ...]
    groups: tuple[int, ...]
    cipher_suites: tuple[int, ...]
    alpn_protocols: tuple[str, ...]
    version: int


def client_hello_info(hello: messages.ClientHello, version: int) -> ClientHelloInfo:
    """The certificate callback's view of a ClientHello, for TLS 1.2 and 1.3 alike."""
    alpn = hello.alpn_protocols
    return ClientHelloInfo(
        server_name=hello.server_name,
        signature_schemes=hello.signature_algorithms,
        groups=hello.supported_groups,
        cipher_suites=hello.cipher_suites,
        alpn_protocols=tuple([p.decode("latin-1") for p in alpn]) if alpn else (),
        version=version,
    )


class TicketSealer(Protocol):
    """What the engine needs of ``keyless.tls.tickets.TicketKeyRing``."""

    def seal(self, state: Any) -> bytes: ...

    def open(self, ticket: bytes) -> Any | None: ...


@dataclass(frozen=True)
class ServerConfig:
    certificate_callback: Callable[[ClientHelloInfo], CertifiedKey | None]
    alpn_protocols: tuple[str, ...] = ()
    tls13_cipher_suites: tuple[CipherSuite13, ...] = DEFAULT_TLS13_SUITES
    # Key-exchange groups in preference order: TLS 1.3 key shares (hybrid ML-KEM groups included); TLS 1.2
    # ECDHE uses the classical ones (``ecdhe_groups``).
    groups: tuple[int, ...] = tuple(int(g) for g in DEFAULT_TLS13_GROUPS)
    # Send a HelloRetryRequest for a hybrid group the client supports (and we prefer) but sent no share for,
    # rather than take its classical share: post-quantum key agreement for a round trip. Off: like browsers'
    # servers, take the share that is there.
    hybrid_hello_retry: bool = False
    enable_tls13: bool = True
    # Resumption (TLS 1.3 tickets; the 1.2 engine uses them too, plus the session cache).
    ticket_keys: TicketSealer | None = None
    tickets_per_handshake: int = 2
    ticket_lifetime: int = 7200
    allow_psk_ke: bool = False  # psk_ke resumes without (EC)DHE: no forward secrecy, so off unless asked
    max_ticket_age_skew: float = 60.0  # seconds between the client's idea of ticket age and ours
    session_cache: Any = None  # keyless.tls.session_cache.SessionCache, for TLS 1.2 session IDs
    # TLS 1.2 (see tls12_server.py)
    enable_tls12: bool = True
    tls12_cipher_suites: tuple[int, ...] = ()
    enable_rsa_key_exchange: bool = False
    tls12_allow_sha1_signatures: bool = False  # SHA-1 ServerKeyExchange only for clients offering nothing else
    require_extended_master_secret: bool = True
    # Client authentication: ask for a certificate signed by one of these CAs.
    client_ca: tuple[x509.Certificate, ...] | None = None
    require_client_certificate: bool = True
    client_verify_depth: int = MAX_CLIENT_DEPTH  # intermediates allowed below client_ca (nginx ssl_verify_depth)
    # Go's GetConfigForClient: called once per connection with the first ClientHello, before the handshake
    # driver starts; it may answer another ServerConfig (e.g. the client authentication of the site the SNI
    # names) or None to keep this one. The answer must keep this config's protocol-version settings.
    config_for_client: Callable[[ClientHelloInfo], ServerConfig | None] | None = None
    # Limits
    max_key_updates_without_data: int = 32
    max_buffered_while_paused: int = 65536
    record_size_limit: int | None = None  # our receive limit (RFC 8449, 64..16385), sent when the client offers one
    clock: Callable[[], float] = time.time
    random_bytes: Callable[[int], bytes] = os.urandom

    def __post_init__(self) -> None:
        if not 0 < self.ticket_lifetime <= MAX_TICKET_LIFETIME:
            raise ValueError("ticket_lifetime must be in 1..604800 seconds")
        if not 0 <= self.tickets_per_handshake <= 8:
            raise ValueError("tickets_per_handshake must be in 0..8")
        if not self.tls13_cipher_suites:
            raise ValueError("at least one TLS 1.3 cipher suite is needed")
        unknown = [g for g in self.groups if g not in ECDHE_GROUPS and g not in HYBRID_GROUPS]
        if unknown or not self.groups or len(set(self.groups)) != len(self.groups):
            raise ValueError(f"unsupported or repeated groups {unknown or list(self.groups)}")
        if not 0 <= self.client_verify_depth <= MAX_CLIENT_DEPTH:
            raise ValueError(f"client_verify_depth must be in 0..{MAX_CLIENT_DEPTH}")
        if self.record_size_limit is not None and not 64 <= self.record_size_limit <= 16385:
            raise ValueError("record_size_limit must be in 64..16385")
        for proto in self.alpn_protocols:
            if not 0 < len(proto.encode()) < 256:
                raise ValueError("ALPN protocol names are 1..255 bytes")

    @functools.cached_property
    def ecdhe_groups(self) -> tuple[int, ...]:
        """``groups`` without the hybrid ones: what TLS 1.2 ECDHE may negotiate (made once)."""
        return tuple(group for group in self.groups if group in ECDHE_GROUPS)

    @functools.cached_property
    def client_ca_names(self) -> tuple[bytes, ...]:
        """The DER subjects of ``client_ca``: CertificateRequest's authorities in TLS 1.2 and 1.3 (made once)."""
        return tuple(ca.subject.public_bytes() for ca in self.client_ca or ())


def static_certificate(certified_key: CertifiedKey) -> Callable[[ClientHelloInfo], CertifiedKey | None]:
    """A certificate callback that always answers with the one site."""

    def callback(_info: ClientHelloInfo) -> CertifiedKey | None:
        return certified_key

    return callback
