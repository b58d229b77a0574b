"""Known answers for the hybrid share and secret layout (draft-ietf-tls-ecdhe-mlkem), no sockets.

1. The draft's layout table, byte by byte: which part of each share and secret comes first, and its length.
2. A second implementation: tlslite-ng's ``KEMKeyExchange`` (with kyber-py's pure-Python ML-KEM) plays the
   client against our server-side ``key_exchange`` for every group, and must derive the same secret.
3. A deterministic known answer: ML-KEM keys from fixed seeds (kyber-py and cryptography must agree on the
   encapsulation key), a deterministic encapsulation by kyber-py, and fixed ECDH scalars give one exact
   client share, server share and secret, whose SHA-256 digests are pinned here.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from keyless.tls.alerts import TLSAlert
from keyless.tls.hybrid import HYBRID, check_share_encoding, key_exchange
from tests.tls.hybrid_client import (
    CLIENT_SHARE_LENGTH,
    HYBRIDS,
    LAYOUT,
    SECP256R1MLKEM768,
    SECP384R1MLKEM1024,
    SERVER_SHARE_LENGTH,
    X25519MLKEM768,
)

# ---- 1. the draft's table --------------------------------------------------------------------------------


def test_the_groups_code_points_and_sizes_are_the_drafts() -> None:
    sizes = {
        group: (HYBRID[group].client_share_length, HYBRID[group].server_share_length, HYBRID[group].kem_first)
        for group in HYBRIDS
    }
    assert sizes == {0x11EC: (1216, 1120, True), 0x11EB: (1249, 1153, False), 0x11ED: (1665, 1665, False)}
    assert sizes == {g: (CLIENT_SHARE_LENGTH[g], SERVER_SHARE_LENGTH[g], LAYOUT[g][0]) for g in HYBRIDS}


@pytest.mark.parametrize("group", HYBRIDS, ids=lambda g: f"{g:#06x}")
def test_split_and_join_put_each_part_where_the_draft_does(group: int) -> None:
    hybrid = HYBRID[group]
    ek, ecdh = b"K" * hybrid.encapsulation_key_length, b"E" * hybrid.ecdh_share_length
    share = ek + ecdh if group == X25519MLKEM768 else ecdh + ek
    assert hybrid.split_client_share(share) == (ek, ecdh)
    ciphertext = b"C" * hybrid.ciphertext_length
    assert hybrid.join(ciphertext, ecdh) == (ciphertext + ecdh if group == X25519MLKEM768 else ecdh + ciphertext)
    assert hybrid.join(b"k" * 32, b"e" * 48) == (b"k" * 32 + b"e" * 48 if group == X25519MLKEM768 else
                                                  b"e" * 48 + b"k" * 32)


@pytest.mark.parametrize("group", HYBRIDS, ids=lambda g: f"{g:#06x}")
def test_framing_is_checked_before_any_key_is_parsed(group: int) -> None:
    length = HYBRID[group].client_share_length
    for bad in (b"", bytes(length - 1), bytes(length + 1)):
        with pytest.raises(TLSAlert, match="byte key share for hybrid group"):
            check_share_encoding(group, bad)


# ---- 2. tlslite-ng as the second implementation ----------------------------------------------------------

TLSLITE_NAMES = {X25519MLKEM768: "x25519mlkem768", SECP256R1MLKEM768: "secp256r1mlkem768",
                 SECP384R1MLKEM1024: "secp384r1mlkem1024"}


@pytest.mark.parametrize("group", HYBRIDS, ids=lambda g: f"{g:#06x}")
def test_tlslite_ng_client_and_our_server_derive_the_same_secret(group: int) -> None:
    from tlslite.constants import GroupName
    from tlslite.keyexchange import KEMKeyExchange

    assert getattr(GroupName, TLSLITE_NAMES[group]) == group
    theirs = KEMKeyExchange(group, (3, 4))
    private = theirs.get_random_private_key()
    client_share = bytes(theirs.calc_public_value(private))
    assert len(client_share) == CLIENT_SHARE_LENGTH[group]
    server_share, secret = key_exchange(group, client_share)
    assert len(server_share) == SERVER_SHARE_LENGTH[group]
    assert bytes(theirs.calc_shared_key(private, bytearray(server_share))) == secret
    assert len(secret) == (80 if group == SECP384R1MLKEM1024 else 64)


# ---- 3. a deterministic known answer ----------------------------------------------------------------------

SEED = bytes(range(64))  # d || z (FIPS 203 ML-KEM.KeyGen_internal)
MESSAGE = bytes(range(64, 96))  # m (FIPS 203 ML-KEM.Encaps_internal)
CLIENT_X25519 = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")  # RFC 7748 §6.1
SERVER_X25519 = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")  # RFC 7748 §6.1
RFC7748_SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

# SHA-256 of the X25519MLKEM768 client share (1216 bytes) and server share (1120 bytes) built from the inputs
# above, and the 64-byte shared secret itself: the ML-KEM secret, then RFC 7748's X25519 answer.
KNOWN = {
    "client_share": "86861a628e1a44bde5a2a295155e2a83fe7159d6080d59796e7a6dc50674d2a7",
    "server_share": "7ee5bcb561df359c31b29a72b8b0db1b5e39145a508fa59b3e03b80eb17e75a4",
}
KNOWN_SECRET = bytes.fromhex("9cddd089ffe70e3996e76f7c8d06746df34d07e8657bc0fcf2bb0e1c3084aea1") + RFC7748_SHARED


def test_x25519mlkem768_known_answer() -> None:
    from kyber_py.ml_kem import ML_KEM_768  # a dev dependency (tlslite-ng's ML-KEM)

    ek, _dk = ML_KEM_768._keygen_internal(SEED[:32], SEED[32:])
    ours = mlkem.MLKEM768PrivateKey.from_seed_bytes(SEED)
    assert ours.public_key().public_bytes_raw() == ek  # two implementations, one encoding
    kem_secret, ciphertext = ML_KEM_768._encaps_internal(ek, MESSAGE)
    assert ours.decapsulate(ciphertext) == kem_secret

    client = x25519.X25519PrivateKey.from_private_bytes(CLIENT_X25519)
    server = x25519.X25519PrivateKey.from_private_bytes(SERVER_X25519)
    client_share = ek + client.public_key().public_bytes_raw()
    server_share = ciphertext + server.public_key().public_bytes_raw()
    ecdh_secret = server.exchange(client.public_key())
    assert ecdh_secret == RFC7748_SHARED
    secret = kem_secret + ecdh_secret

    hybrid = HYBRID[X25519MLKEM768]
    assert hybrid.split_client_share(client_share) == (ek, client.public_key().public_bytes_raw())
    assert hybrid.join(ciphertext, server.public_key().public_bytes_raw()) == server_share
    assert hybrid.join(kem_secret, ecdh_secret) == secret
    digests = {name: hashlib.sha256(value).hexdigest()
               for name, value in (("client_share", client_share), ("server_share", server_share))}
    assert digests == KNOWN
    assert secret == KNOWN_SECRET
