"""Hybrid ECDHE + ML-KEM key agreement for TLS 1.3 (draft-ietf-tls-ecdhe-mlkem).

A hybrid group's key_exchange is the concatenation of two parts: an ML-KEM (FIPS 203) part and an (EC)DHE
part, in the order the draft fixes per group:

    group               code    order          client share         server share          shared secret
    X25519MLKEM768      0x11EC  ML-KEM, ECDH   ek(1184) || 32       ct(1088) || 32        ss(32) || x25519(32)
    SecP256r1MLKEM768   0x11EB  ECDH, ML-KEM   65 || ek(1184)       65 || ct(1088)        p256(32) || ss(32)
    SecP384r1MLKEM1024  0x11ED  ECDH, ML-KEM   97 || ek(1568)       97 || ct(1568)        p384(48) || ss(32)

The client's share carries an ML-KEM encapsulation key and its ECDH share; the server answers with the ML-KEM
ciphertext it encapsulated to that key and its own ECDH share; the (EC)DHE input of the key schedule is the
concatenation of the two secrets, in the same order. Each part is fixed-length, so a share of any other
length is illegal_parameter; so is an encapsulation key that fails FIPS 203's input check (§7.2: every
coefficient below q = 3329), which ``cryptography``'s ``from_public_bytes`` performs (a test proves it).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import mlkem

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.suites import (
    HYBRID_GROUPS,
    KEY_SHARE_LENGTHS,
    NamedGroup,
    check_key_share_encoding,
)
from keyless.tls.suites import key_exchange as ecdhe_key_exchange

MLKEMPublicKey = type[mlkem.MLKEM768PublicKey] | type[mlkem.MLKEM1024PublicKey]


@dataclass(frozen=True, slots=True)
class HybridGroup:
    """One hybrid group: which ML-KEM, which (EC)DHE group, and which part comes first on the wire."""

    code: int
    kem: MLKEMPublicKey
    encapsulation_key_length: int
    ciphertext_length: int
    ecdh_group: int
    kem_first: bool

    @property
    def ecdh_share_length(self) -> int:
        return KEY_SHARE_LENGTHS[self.ecdh_group]

    @property
    def client_share_length(self) -> int:
        return self.encapsulation_key_length + self.ecdh_share_length

    @property
    def server_share_length(self) -> int:
        return self.ciphertext_length + self.ecdh_share_length

    def split_client_share(self, share: bytes) -> tuple[bytes, bytes]:
        """(encapsulation key, ECDH share) of a client share already checked for length."""
        if self.kem_first:
            return share[: self.encapsulation_key_length], share[self.encapsulation_key_length :]
        return share[self.ecdh_share_length :], share[: self.ecdh_share_length]

    def join(self, kem_part: bytes, ecdh_part: bytes) -> bytes:
        """The server share (ciphertext, ECDH share) or the shared secret, in this group's order."""
        return kem_part + ecdh_part if self.kem_first else ecdh_part + kem_part


HYBRID: dict[int, HybridGroup] = {
    NamedGroup.X25519MLKEM768: HybridGroup(
        NamedGroup.X25519MLKEM768, mlkem.MLKEM768PublicKey, 1184, 1088, NamedGroup.X25519, kem_first=True
    ),
    NamedGroup.SECP256R1MLKEM768: HybridGroup(
        NamedGroup.SECP256R1MLKEM768, mlkem.MLKEM768PublicKey, 1184, 1088, NamedGroup.SECP256R1, kem_first=False
    ),
    NamedGroup.SECP384R1MLKEM1024: HybridGroup(
        NamedGroup.SECP384R1MLKEM1024, mlkem.MLKEM1024PublicKey, 1568, 1568, NamedGroup.SECP384R1, kem_first=False
    ),
}
assert set(HYBRID) == HYBRID_GROUPS

# Every group a TLS 1.3 key share may use here.
TLS13_GROUPS: frozenset[int] = frozenset(KEY_SHARE_LENGTHS) | HYBRID_GROUPS


def check_share_encoding(group: int, share: bytes) -> None:
    """The framing of a client share for any group we implement (illegal_parameter if wrong): its length
    and, for a NIST curve, the uncompressed-point prefix of the ECDH part. The encapsulation key and the
    point themselves are checked when the share is used. Shares for groups we do not implement are skipped."""
    hybrid = HYBRID.get(group)
    if hybrid is None:
        check_key_share_encoding(group, share)
        return
    if len(share) != hybrid.client_share_length:
        raise TLSAlert(
            AlertDescription.illegal_parameter,
            f"{len(share)}-byte key share for hybrid group 0x{group:04x} (needs {hybrid.client_share_length})",
        )
    check_key_share_encoding(hybrid.ecdh_group, hybrid.split_client_share(share)[1])


def key_exchange(group: int, peer_share: bytes) -> tuple[bytes, bytes]:
    """Our TLS 1.3 server share for ``group`` and the shared secret (ECDHE or hybrid).

    A malformed share (length, point, encapsulation key) raises TLSAlert(illegal_parameter)."""
    hybrid = HYBRID.get(group)
    if hybrid is None:
        return ecdhe_key_exchange(group, peer_share)
    check_share_encoding(group, peer_share)
    encapsulation_key, ecdh_share = hybrid.split_client_share(peer_share)
    try:
        public = hybrid.kem.from_public_bytes(encapsulation_key)  # FIPS 203 §7.2 length and modulus checks
    except ValueError as exc:
        raise TLSAlert(AlertDescription.illegal_parameter, "invalid ML-KEM encapsulation key") from exc
    kem_secret, ciphertext = public.encapsulate()
    our_ecdh, ecdh_secret = ecdhe_key_exchange(hybrid.ecdh_group, ecdh_share)
    return hybrid.join(ciphertext, our_ecdh), hybrid.join(kem_secret, ecdh_secret)
