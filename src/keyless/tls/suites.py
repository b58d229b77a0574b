"""TLS 1.3 cipher suites, key-exchange groups and signature-scheme selection (RFC 8446 §4.2.3, §4.2.7, §B.4).

``CipherSuite13`` is shared with the record layer (AEAD class and key length) and the key schedule (hash).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyless.keys.schemes import MLDSA_SCHEMES, PSS_SCHEMES, SignatureScheme
from keyless.tls.alerts import AlertDescription, TLSAlert

TLS13 = 0x0304
TLS12 = 0x0303

AEADClass = type[AESGCM] | type[ChaCha20Poly1305]


@dataclass(frozen=True, slots=True)
class CipherSuite13:
    """One TLS 1.3 cipher suite: an AEAD and the hash of its key schedule (RFC 8446 §B.4)."""

    code: int
    name: str
    hash_algorithm: type[hashes.SHA256] | type[hashes.SHA384]
    key_length: int
    aead: AEADClass
    iv_length: int = 12
    # Derived from hash_algorithm once (plain attributes: the key schedule reads them ~20 times a handshake).
    hash_length: int = field(init=False, repr=False, compare=False)
    hash_name: str = field(init=False, repr=False, compare=False)  # hashlib's name: its hash is the fastest

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash_length", self.hash_algorithm.digest_size)
        object.__setattr__(self, "hash_name", self.hash_algorithm.name)


TLS_AES_128_GCM_SHA256 = CipherSuite13(0x1301, "TLS_AES_128_GCM_SHA256", hashes.SHA256, 16, AESGCM)
TLS_AES_256_GCM_SHA384 = CipherSuite13(0x1302, "TLS_AES_256_GCM_SHA384", hashes.SHA384, 32, AESGCM)
TLS_CHACHA20_POLY1305_SHA256 = CipherSuite13(
    0x1303, "TLS_CHACHA20_POLY1305_SHA256", hashes.SHA256, 32, ChaCha20Poly1305
)

# Server preference order.
DEFAULT_TLS13_SUITES: tuple[CipherSuite13, ...] = (
    TLS_AES_128_GCM_SHA256,
    TLS_AES_256_GCM_SHA384,
    TLS_CHACHA20_POLY1305_SHA256,
)
TLS13_SUITES_BY_CODE: dict[int, CipherSuite13] = {s.code: s for s in DEFAULT_TLS13_SUITES}


class NamedGroup(IntEnum):
    SECP256R1 = 0x0017
    SECP384R1 = 0x0018
    SECP521R1 = 0x0019
    X25519 = 0x001D
    X448 = 0x001E
    # draft-ietf-tls-ecdhe-mlkem: hybrid ECDHE + ML-KEM groups (TLS 1.3 only; see keyless.tls.hybrid).
    SECP256R1MLKEM768 = 0x11EB
    X25519MLKEM768 = 0x11EC
    SECP384R1MLKEM1024 = 0x11ED


# The IANA names (what OpenSSL prints and configuration files use; matched case-insensitively there).
GROUP_NAMES: dict[int, str] = {
    NamedGroup.SECP256R1: "secp256r1",
    NamedGroup.SECP384R1: "secp384r1",
    NamedGroup.SECP521R1: "secp521r1",
    NamedGroup.X25519: "x25519",
    NamedGroup.X448: "x448",
    NamedGroup.SECP256R1MLKEM768: "SecP256r1MLKEM768",
    NamedGroup.X25519MLKEM768: "X25519MLKEM768",
    NamedGroup.SECP384R1MLKEM1024: "SecP384r1MLKEM1024",
}

# The (EC)DHE groups: TLS 1.2 ECDHE and TLS 1.3 key shares. TLS 1.2 negotiates only these.
DEFAULT_GROUPS: tuple[NamedGroup, ...] = (NamedGroup.X25519, NamedGroup.SECP256R1, NamedGroup.SECP384R1)
ECDHE_GROUPS: frozenset[int] = frozenset(DEFAULT_GROUPS)
HYBRID_GROUPS: frozenset[int] = frozenset(
    (NamedGroup.X25519MLKEM768, NamedGroup.SECP256R1MLKEM768, NamedGroup.SECP384R1MLKEM1024)
)
# TLS 1.3 server preference: a hybrid group whenever the client sent its share (X25519MLKEM768 first: what
# Chromium, Firefox and Safari send), else classical ECDHE as before.
DEFAULT_TLS13_GROUPS: tuple[NamedGroup, ...] = (
    NamedGroup.X25519MLKEM768,
    NamedGroup.SECP256R1MLKEM768,
    NamedGroup.SECP384R1MLKEM1024,
    *DEFAULT_GROUPS,
)

# RFC 8446 §4.2.3: the ECDSA scheme bound to each curve (by cryptography's curve name). TLS 1.3 allows only
# these; our TLS 1.2 ServerKeyExchange prefers them too.
ECDSA_SCHEME_FOR_CURVE: dict[str, SignatureScheme] = {
    "secp256r1": SignatureScheme.ECDSA_SECP256R1_SHA256,
    "secp384r1": SignatureScheme.ECDSA_SECP384R1_SHA384,
    "secp521r1": SignatureScheme.ECDSA_SECP521R1_SHA512,
}

# RFC 8446 §4.4.3: RSASSA-PKCS1-v1_5 and SHA-1 schemes MUST NOT be used in CertificateVerify: every PSS
# scheme, ECDSA with the curve-bound hashes, and Ed25519.
TLS13_SIGNATURE_SCHEMES: frozenset[int] = PSS_SCHEMES | set(ECDSA_SCHEME_FOR_CURVE.values()) | {SignatureScheme.ED25519}
# Our own CertificateVerify may also be ML-DSA (draft-ietf-tls-mldsa, TLS 1.3 only); not asked of clients (yet).
SERVER_TLS13_SIGNATURE_SCHEMES: frozenset[int] = TLS13_SIGNATURE_SCHEMES | MLDSA_SCHEMES

# RFC 8446 §4.1.3: the last 8 bytes of ServerHello.random when a TLS 1.3 server negotiates an older version.
DOWNGRADE_TLS12 = b"DOWNGRD\x01"
DOWNGRADE_TLS11 = b"DOWNGRD\x00"


def server_random_with_downgrade(random32: bytes, negotiated_version: int) -> bytes:
    """Stamp the downgrade sentinel into a 32-byte server random (a 1.3-capable server negotiating < 1.3)."""
    if negotiated_version >= TLS13:
        return random32
    sentinel = DOWNGRADE_TLS12 if negotiated_version == TLS12 else DOWNGRADE_TLS11
    return random32[:24] + sentinel


def choose_cipher_suite(
    server_preference: Sequence[CipherSuite13], offered: Iterable[int]
) -> CipherSuite13 | None:
    """The first suite in server preference order that the client offered."""
    offered_set = set(offered)
    for suite in server_preference:
        if suite.code in offered_set:
            return suite
    return None


def choose_signature_scheme(key_schemes: Sequence[int], offered: Sequence[int]) -> int | None:
    """First scheme the key supports (in the key's preference order) that the client offered, restricted
    to those allowed in a TLS 1.3 CertificateVerify."""
    offered_set = set(offered)
    for scheme in key_schemes:
        if scheme in offered_set and scheme in SERVER_TLS13_SIGNATURE_SCHEMES:
            return scheme
    return None


# ---- (EC)DHE key exchange for the supported groups (RFC 8446 §4.2.8.2, §7.4) -------------------

# The NIST groups we can do (EC)DHE on, for TLS 1.3 key shares and TLS 1.2 ECDHE alike.
NIST_CURVES: dict[int, ec.EllipticCurve] = {
    NamedGroup.SECP256R1: ec.SECP256R1(),
    NamedGroup.SECP384R1: ec.SECP384R1(),
}


# RFC 8446 §4.2.8.2 and RFC 7748: the key_exchange length of each group we can do (EC)DHE on; an
# X25519 share is the raw u-coordinate, a NIST share an uncompressed point 0x04 || X || Y.
KEY_SHARE_LENGTHS: dict[int, int] = {NamedGroup.X25519: 32, NamedGroup.SECP256R1: 65, NamedGroup.SECP384R1: 97}


def check_key_share_encoding(group: int, peer_public: bytes) -> None:
    """The framing of a share for a group we implement (illegal_parameter if wrong). Shares for groups we do
    not implement are not ours to judge and are skipped (§4.2.8); the point itself is validated when used."""
    expected = KEY_SHARE_LENGTHS.get(group)
    if expected is None:
        return
    if len(peer_public) != expected:
        raise TLSAlert(AlertDescription.illegal_parameter, f"key share of {len(peer_public)} bytes for group {group}")
    if group != NamedGroup.X25519 and peer_public[0] != 4:
        raise TLSAlert(AlertDescription.illegal_parameter, "key share is not an uncompressed point")


def nist_peer_point(curve: ec.EllipticCurve, peer_public: bytes) -> ec.EllipticCurvePublicKey:
    """The peer's ECDH share on a NIST curve. Only uncompressed points (0x04 || X || Y) are allowed: TLS 1.3
    (RFC 8446 §4.2.8.2) and our TLS 1.2 ec_point_formats (RFC 8422 §5.1.2); a point off the curve is ValueError."""
    if not peer_public or peer_public[0] != 4:
        raise TLSAlert(AlertDescription.illegal_parameter, "ECDH share is not an uncompressed point")
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, peer_public)


def key_exchange(group: int, peer_public: bytes) -> tuple[bytes, bytes]:
    """Generate our ephemeral key for ``group`` and agree with the peer's share.

    Returns (our public key_exchange bytes, shared secret). A malformed or degenerate peer share raises
    TLSAlert(illegal_parameter) (RFC 8446 §4.2.8: the peer's share must be validated).
    """
    try:
        if group == NamedGroup.X25519:
            if len(peer_public) != 32:
                raise TLSAlert(AlertDescription.illegal_parameter, "bad x25519 key share length")
            private = x25519.X25519PrivateKey.generate()
            shared = private.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
            ours = private.public_key().public_bytes_raw()
            return ours, shared
        curve = NIST_CURVES.get(group)
        if curve is None:
            raise TLSAlert(AlertDescription.illegal_parameter, "unsupported group")
        peer = nist_peer_point(curve, peer_public)
        ec_private = ec.generate_private_key(curve)
        shared = ec_private.exchange(ec.ECDH(), peer)
        ours = ec_private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return ours, shared
    except TLSAlert:
        raise
    except ValueError as exc:  # invalid point, all-zero x25519 output, ...
        raise TLSAlert(AlertDescription.illegal_parameter, "invalid key share") from exc
