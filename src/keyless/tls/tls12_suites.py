"""TLS 1.2 cipher suites (AEAD only), ephemeral ECDH and signature-scheme choice for ServerKeyExchange.

Only forward-secret ECDHE suites and, when configured, the two RSA key-exchange AES-GCM suites exist here:
no CBC, RC4, 3DES, NULL, export, anonymous, DHE or SRP suite can ever be negotiated (RFC 5288, RFC 5289,
RFC 7905).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyless.keys.schemes import SignatureScheme
from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.client_auth import verify_client_signature
from keyless.tls.suites import (
    ECDSA_SCHEME_FOR_CURVE,
    NIST_CURVES,
    TLS13_SIGNATURE_SCHEMES,
    NamedGroup,
    nist_peer_point,
)

KeyExchange = Literal["ECDHE_ECDSA", "ECDHE_RSA", "RSA"]


@dataclass(frozen=True, slots=True)
class CipherSuite12:
    """One TLS 1.2 AEAD suite: key exchange, record AEAD and the PRF hash."""

    code: int
    name: str
    key_exchange: KeyExchange
    aead: type[AESGCM] | type[ChaCha20Poly1305]
    key_length: int
    fixed_iv_length: int  # RFC 5288: 4-byte salt (+ 8 explicit bytes per record); RFC 7905: 12-byte IV
    hash_name: Literal["sha256", "sha384"]

    @property
    def ecdhe(self) -> bool:
        return self.key_exchange != "RSA"

    @property
    def key_block_length(self) -> int:
        """AEAD suites have no MAC keys: client key, server key, client IV, server IV (RFC 5246 §6.3)."""
        return 2 * (self.key_length + self.fixed_iv_length)


def _gcm(
    code: int, name: str, kx: KeyExchange, key_length: int, hash_name: Literal["sha256", "sha384"]
) -> CipherSuite12:
    return CipherSuite12(code, name, kx, AESGCM, key_length, 4, hash_name)


def _chacha(code: int, name: str, kx: KeyExchange) -> CipherSuite12:
    return CipherSuite12(code, name, kx, ChaCha20Poly1305, 32, 12, "sha256")


ECDHE_ECDSA_AES128 = _gcm(0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE_ECDSA", 16, "sha256")
ECDHE_ECDSA_AES256 = _gcm(0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE_ECDSA", 32, "sha384")
ECDHE_ECDSA_CHACHA = _chacha(0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE_ECDSA")
ECDHE_RSA_AES128 = _gcm(0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE_RSA", 16, "sha256")
ECDHE_RSA_AES256 = _gcm(0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE_RSA", 32, "sha384")
ECDHE_RSA_CHACHA = _chacha(0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE_RSA")
RSA_AES128 = _gcm(0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256", "RSA", 16, "sha256")
RSA_AES256 = _gcm(0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384", "RSA", 32, "sha384")

# Server preference: forward secrecy first, then AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305.
DEFAULT_TLS12_SUITES: tuple[CipherSuite12, ...] = (
    ECDHE_ECDSA_AES128,
    ECDHE_ECDSA_AES256,
    ECDHE_ECDSA_CHACHA,
    ECDHE_RSA_AES128,
    ECDHE_RSA_AES256,
    ECDHE_RSA_CHACHA,
    RSA_AES128,
    RSA_AES256,
)
TLS12_SUITES_BY_CODE: dict[int, CipherSuite12] = {s.code: s for s in DEFAULT_TLS12_SUITES}
TLS12_SUITES_BY_NAME: dict[str, CipherSuite12] = {s.name: s for s in DEFAULT_TLS12_SUITES}

# Signaling cipher suite values.
TLS_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF  # RFC 5746 §3.3
TLS_FALLBACK_SCSV = 0x5600  # RFC 7507

SHA1_SCHEMES = frozenset({SignatureScheme.RSA_PKCS1_SHA1, SignatureScheme.ECDSA_SHA1})
# RFC 5246 §7.4.1.4.1: a client without signature_algorithms is taken to offer {sha1, rsa} and {sha1, ecdsa}.
DEFAULT_CLIENT_SCHEMES: tuple[int, ...] = (SignatureScheme.RSA_PKCS1_SHA1, SignatureScheme.ECDSA_SHA1)


def configured_suites(codes: Sequence[int]) -> tuple[CipherSuite12, ...]:
    """The suites named in ``ServerConfig.tls12_cipher_suites`` (empty = our defaults), in that order;
    unknown codes (a CBC suite, say) are ignored rather than enabled."""
    if not codes:
        return DEFAULT_TLS12_SUITES
    return tuple(TLS12_SUITES_BY_CODE[c] for c in codes if c in TLS12_SUITES_BY_CODE)


@functools.lru_cache(maxsize=64)
def enabled_suites(codes: tuple[int, ...], enable_rsa_key_exchange: bool) -> tuple[CipherSuite12, ...]:
    """The configured suites (in order), without RSA key exchange unless enabled; computed once per config."""
    suites = configured_suites(codes)
    return suites if enable_rsa_key_exchange else tuple(s for s in suites if s.ecdhe)


def choose_signature_scheme(
    key_type: str, key_schemes: tuple[int, ...], offered: tuple[int, ...] | None, *, allow_sha1: bool
) -> int | None:
    """The ServerKeyExchange signature scheme: the key's preference among what the client offered.

    SHA-1 only when the client offers nothing better and ``allow_sha1``; an ECDSA key prefers the hash
    that matches its curve (what TLS 1.3 would require, and what every client accepts).
    """
    client = set(offered if offered else DEFAULT_CLIENT_SCHEMES)
    preferred = list(key_schemes)
    curve_scheme = ECDSA_SCHEME_FOR_CURVE.get(key_type.removeprefix("ecdsa-"))
    if curve_scheme is not None and curve_scheme in preferred:
        preferred.remove(curve_scheme)
        preferred.insert(0, curve_scheme)
    for scheme in preferred:
        if scheme in client and scheme not in SHA1_SCHEMES:
            return scheme
    if allow_sha1:
        for scheme in preferred:
            if scheme in client:
                return scheme
    return None


# ---- negotiation: suite, signature scheme and group for one certificate -----------------------------------

# RFC 8422 §5.1: in TLS 1.2 supported_groups also bounds the curve of an ECDSA certificate.
_CERTIFICATE_CURVES = {
    "ecdsa-secp256r1": NamedGroup.SECP256R1,
    "ecdsa-secp384r1": NamedGroup.SECP384R1,
    "ecdsa-secp521r1": NamedGroup.SECP521R1,
}
_ECDSA_KEYS = ("ecdsa-", "ed25519")
# Client lists up to this many entries in all make a cache key; a longer (unusual, or hostile) hello is
# negotiated without the cache, so the cache never holds more than a few kilobytes per entry.
_CACHEABLE_OFFER_LENGTH = 128

Negotiated = tuple[CipherSuite12, int | None, int | None]  # suite, ServerKeyExchange scheme, ECDHE group


# negotiate()'s arguments in its order, as one hashable key for the cache.
_Arguments = tuple[str, tuple[int, ...], bool, tuple[int, ...], bool, tuple[int, ...], bool, tuple[int, ...],
                   tuple[int, ...], tuple[int, ...]]


def negotiate(
    key_type: str,
    key_schemes: tuple[int, ...],
    rsa_key_exchange: bool,
    suite_codes: tuple[int, ...],
    enable_rsa_key_exchange: bool,
    groups: tuple[int, ...],
    allow_sha1: bool,
    offered_suites: tuple[int, ...],
    offered_schemes: tuple[int, ...],
    offered_groups: tuple[int, ...],
) -> Negotiated | None:
    """The first of our suites (``enabled_suites(suite_codes, enable_rsa_key_exchange)``) the client offers and
    the certificate's key can serve, with the signature scheme and group for ECDHE (None for RSA key
    exchange); None when nothing fits.

    A pure function of the certificate's kind, our configuration and three client lists: clients of one kind
    send the same lists, so most handshakes are one dictionary lookup (every argument is made of ints, strs
    and bools, which hash in C).
    """
    args: _Arguments = (key_type, key_schemes, rsa_key_exchange, suite_codes, enable_rsa_key_exchange, groups,
                        allow_sha1, offered_suites, offered_schemes, offered_groups)
    if len(offered_suites) + len(offered_schemes) + len(offered_groups) <= _CACHEABLE_OFFER_LENGTH:
        return _negotiate_cached(args)
    return _negotiate(args)


def _negotiate(args: _Arguments) -> Negotiated | None:
    (key_type, key_schemes, rsa_key_exchange, suite_codes, enable_rsa_key_exchange, groups, allow_sha1,
     offered_suites, offered_schemes, offered_groups) = args
    scheme = choose_signature_scheme(key_type, key_schemes, offered_schemes, allow_sha1=allow_sha1)
    group = next((g for g in groups if g in offered_groups), None)
    curve = _CERTIFICATE_CURVES.get(key_type)
    curve_acceptable = curve is None or not offered_groups or curve in offered_groups
    ecdsa_key = key_type.startswith(_ECDSA_KEYS)
    offered = set(offered_suites)
    for suite in enabled_suites(suite_codes, enable_rsa_key_exchange):
        if suite.code not in offered:
            continue
        if suite.key_exchange == "RSA":
            if rsa_key_exchange:
                return suite, None, None
            continue
        if scheme is None or group is None or not curve_acceptable:
            continue
        if (suite.key_exchange == "ECDHE_ECDSA") == ecdsa_key:
            return suite, scheme, group
    return None


_negotiate_cached = functools.lru_cache(maxsize=1024)(_negotiate)


# ---- client CertificateVerify (RFC 5246 §7.4.8) ---------------------------------------------------------

# PKCS#1 v1.5 client signatures, which TLS 1.2 clients (smart cards, older HSMs) may only be able to produce.
_CLIENT_PKCS1_SCHEMES = frozenset(
    {SignatureScheme.RSA_PKCS1_SHA256, SignatureScheme.RSA_PKCS1_SHA384, SignatureScheme.RSA_PKCS1_SHA512}
)
# What our CertificateRequest offers: the TLS 1.3 schemes plus those.
CLIENT_SIGNATURE_SCHEMES: tuple[int, ...] = tuple(sorted(set(TLS13_SIGNATURE_SCHEMES) | _CLIENT_PKCS1_SCHEMES))


def verify_client_signature12(leaf_der: bytes, scheme: int, signature: bytes, signed: bytes) -> None:
    """A client CertificateVerify over ``signed`` (all handshake messages so far); failure is decrypt_error."""
    if scheme not in CLIENT_SIGNATURE_SCHEMES:
        raise TLSAlert(AlertDescription.illegal_parameter, "signature scheme we did not ask for")
    verify_client_signature(leaf_der, scheme, signature, signed, allow_pkcs1=True)


# ---- ephemeral ECDH, split at the key operation (RFC 8422 §5.4, §5.7) ------------------------------

EphemeralKey = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey


def generate_ephemeral(group: int) -> tuple[EphemeralKey, bytes]:
    """Our ECDHE private key and its public point (uncompressed for the NIST curves)."""
    if group == NamedGroup.X25519:
        x_private = x25519.X25519PrivateKey.generate()
        return x_private, x_private.public_key().public_bytes_raw()
    curve = NIST_CURVES.get(group)
    if curve is None:
        raise TLSAlert(AlertDescription.internal_error, "unsupported group chosen")
    ec_private = ec.generate_private_key(curve)
    return ec_private, ec_private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def agree(group: int, private: EphemeralKey, peer_public: bytes) -> bytes:
    """The premaster: the shared secret with the client's point. A bad point is illegal_parameter."""
    try:
        if isinstance(private, x25519.X25519PrivateKey):
            if len(peer_public) != 32:
                raise TLSAlert(AlertDescription.illegal_parameter, "bad x25519 public key length")
            return private.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
        curve = NIST_CURVES.get(group)
        if curve is None:
            raise TLSAlert(AlertDescription.internal_error, "unsupported group chosen")
        return private.exchange(ec.ECDH(), nist_peer_point(curve, peer_public))
    except ValueError as exc:  # not on the curve, all-zero x25519 result, ...
        raise TLSAlert(AlertDescription.illegal_parameter, "invalid ECDH public key") from exc


__all__ = [
    "DEFAULT_TLS12_SUITES",
    "TLS12_SUITES_BY_CODE",
    "TLS12_SUITES_BY_NAME",
    "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    "TLS_FALLBACK_SCSV",
    "CipherSuite12",
    "agree",
    "choose_signature_scheme",
    "configured_suites",
    "generate_ephemeral",
]
