"""TLS 1.2 PRF against a known-answer vector and against tlslite-ng's independent implementation."""

from __future__ import annotations

import os

import pytest
from tlslite import mathtls

from keyless.tls import tls12_prf

# The widely used TLS 1.2 PRF (SHA-256) test vector (posted to the IETF TLS list, used by many stacks).
SECRET = bytes.fromhex("9bbe436ba940f017b17652849a71db35")
SEED = bytes.fromhex("a0ba9f936cda311827a6f796ffd5198c")
EXPECTED_100 = bytes.fromhex(
    "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa0"
    "22f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66"
)


def test_known_answer_sha256() -> None:
    assert tls12_prf.prf("sha256", SECRET, b"test label", SEED, 100) == EXPECTED_100


@pytest.mark.parametrize(("hash_name", "theirs"), [("sha256", mathtls.PRF_1_2), ("sha384", mathtls.PRF_1_2_SHA384)])
@pytest.mark.parametrize("length", [1, 12, 48, 104, 200])
def test_matches_tlslite(hash_name: str, theirs: object, length: int) -> None:
    secret, seed = os.urandom(48), os.urandom(64)
    ours = tls12_prf.prf(hash_name, secret, b"key expansion", seed, length)
    assert ours == bytes(theirs(bytearray(secret), b"key expansion", bytearray(seed), length))  # type: ignore[operator]


def test_master_secrets_match_tlslite() -> None:
    premaster, client_random, server_random = os.urandom(48), os.urandom(32), os.urandom(32)
    suite = 0xC02F  # ECDHE_RSA_WITH_AES_128_GCM_SHA256: PRF SHA-256
    theirs = mathtls.calcMasterSecret(
        (3, 3), suite, bytearray(premaster), bytearray(client_random), bytearray(server_random)
    )
    assert tls12_prf.master_secret("sha256", premaster, client_random, server_random) == bytes(theirs)
    session_hash = os.urandom(48)
    ems = tls12_prf.extended_master_secret("sha384", premaster, session_hash)
    assert ems == bytes(
        mathtls.PRF_1_2_SHA384(bytearray(premaster), b"extended master secret", bytearray(session_hash), 48)
    )
    assert len(ems) == 48 and ems != tls12_prf.extended_master_secret("sha256", premaster, session_hash)


def test_key_block_seed_order_and_finished_length() -> None:
    master, s_rand, c_rand = os.urandom(48), os.urandom(32), os.urandom(32)
    block = tls12_prf.key_block("sha256", master, s_rand, c_rand, 40)
    assert block == tls12_prf.prf("sha256", master, b"key expansion", s_rand + c_rand, 40)
    assert block != tls12_prf.prf("sha256", master, b"key expansion", c_rand + s_rand, 40)
    client = tls12_prf.finished_verify_data("sha256", master, tls12_prf.CLIENT_FINISHED, bytes(32))
    server = tls12_prf.finished_verify_data("sha256", master, tls12_prf.SERVER_FINISHED, bytes(32))
    assert len(client) == len(server) == 12 and client != server
