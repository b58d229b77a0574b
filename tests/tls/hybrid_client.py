"""The client's half of the hybrid ECDHE-MLKEM groups, for the conformance client (``KeyShares``).

Written from draft-ietf-tls-ecdhe-mlkem with ``cryptography``'s ML-KEM and ECDH, independently of
``keyless.tls.hybrid`` (it shares no code with it): the table below is the draft's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.tls.conformance_client import KeyShares

X25519MLKEM768, SECP256R1MLKEM768, SECP384R1MLKEM1024 = 0x11EC, 0x11EB, 0x11ED
HYBRIDS = (X25519MLKEM768, SECP256R1MLKEM768, SECP384R1MLKEM1024)

# group: (ML-KEM first?, ECDH share length, encapsulation key length, ciphertext length) — the draft's table.
LAYOUT = {
    X25519MLKEM768: (True, 32, 1184, 1088),
    SECP256R1MLKEM768: (False, 65, 1184, 1088),
    SECP384R1MLKEM1024: (False, 97, 1568, 1568),
}
CLIENT_SHARE_LENGTH = {group: ecdh + ek for group, (_, ecdh, ek, _) in LAYOUT.items()}  # 1216, 1249, 1665
SERVER_SHARE_LENGTH = {group: ecdh + ct for group, (_, ecdh, _, ct) in LAYOUT.items()}  # 1120, 1153, 1665


def _point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


@dataclass
class HybridKeyShares(KeyShares):
    """``KeyShares`` that can also offer and finish the three hybrid groups."""

    kem768: mlkem.MLKEM768PrivateKey = field(default_factory=mlkem.MLKEM768PrivateKey.generate)
    kem1024: mlkem.MLKEM1024PrivateKey = field(default_factory=mlkem.MLKEM1024PrivateKey.generate)
    hybrid_x25519: x25519.X25519PrivateKey = field(default_factory=x25519.X25519PrivateKey.generate)
    hybrid_p256: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    hybrid_p384: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))

    def encapsulation_key(self, group: int) -> bytes:
        kem = self.kem1024 if group == SECP384R1MLKEM1024 else self.kem768
        return kem.public_key().public_bytes_raw()

    def ecdh_public(self, group: int) -> bytes:
        if group == X25519MLKEM768:
            return self.hybrid_x25519.public_key().public_bytes_raw()
        return _point(self.hybrid_p256 if group == SECP256R1MLKEM768 else self.hybrid_p384)

    def public(self, group: int) -> bytes:
        if group not in LAYOUT:
            return super().public(group)
        kem_first = LAYOUT[group][0]
        ek, ecdh = self.encapsulation_key(group), self.ecdh_public(group)
        return ek + ecdh if kem_first else ecdh + ek

    def shared(self, group: int, server_public: bytes) -> bytes:
        if group not in LAYOUT:
            return super().shared(group, server_public)
        kem_first, ecdh_length, _, ciphertext_length = LAYOUT[group]
        assert len(server_public) == SERVER_SHARE_LENGTH[group], len(server_public)
        if kem_first:
            ciphertext, ecdh = server_public[:ciphertext_length], server_public[ciphertext_length:]
        else:
            ecdh, ciphertext = server_public[:ecdh_length], server_public[ecdh_length:]
        kem = self.kem1024 if group == SECP384R1MLKEM1024 else self.kem768
        kem_secret = kem.decapsulate(ciphertext)
        if group == X25519MLKEM768:
            ecdh_secret = self.hybrid_x25519.exchange(x25519.X25519PublicKey.from_public_bytes(ecdh))
        else:
            private = self.hybrid_p256 if group == SECP256R1MLKEM768 else self.hybrid_p384
            peer = ec.EllipticCurvePublicKey.from_encoded_point(private.curve, ecdh)
            ecdh_secret = private.exchange(ec.ECDH(), peer)
        return kem_secret + ecdh_secret if kem_first else ecdh_secret + kem_secret


def with_coefficient(encapsulation_key: bytes, index: int, value: int) -> bytes:
    """``encapsulation_key`` with its ``index``-th 12-bit coefficient (FIPS 203 ByteEncode_12) set to ``value``:
    3329 (q) or more makes the key fail FIPS 203's modulus check."""
    key = bytearray(encapsulation_key)
    at = (index // 2) * 3
    if index % 2 == 0:
        key[at] = value & 0xFF
        key[at + 1] = (key[at + 1] & 0xF0) | (value >> 8)
    else:
        key[at + 1] = (key[at + 1] & 0x0F) | ((value & 0x0F) << 4)
        key[at + 2] = value >> 4
    return bytes(key)
