"""LocalKey: the in-process AsyncPrivateKey the engine's tests (and a key-in-file edge) sign with."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from keyless.keys.base import AsyncPrivateKey, KeyOperationError
from keyless.keys.local import LocalKey
from keyless.keys.schemes import SignatureScheme

MESSAGE = b" " * 64 + b"TLS 1.3, server CertificateVerify\x00" + bytes(32)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def test_is_an_async_private_key(rsa_key: rsa.RSAPrivateKey) -> None:
    key = LocalKey(rsa_key)
    assert isinstance(key, AsyncPrivateKey)
    assert "private" not in repr(key).lower() or "RSAPublicKey" in repr(key)


def test_rsa_pss_and_pkcs1(rsa_key: rsa.RSAPrivateKey) -> None:
    key = LocalKey(rsa_key)
    public = rsa_key.public_key()
    pss = key.sign_sync(SignatureScheme.RSA_PSS_RSAE_SHA256, MESSAGE)
    public.verify(pss, MESSAGE, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    pkcs1 = asyncio.run(key.sign(SignatureScheme.RSA_PKCS1_SHA384, MESSAGE))
    public.verify(pkcs1, MESSAGE, padding.PKCS1v15(), hashes.SHA384())
    md5sha1 = key.sign_sync(SignatureScheme.RSA_PKCS1_MD5_SHA1, MESSAGE)
    recovered = pow(int.from_bytes(md5sha1, "big"), public.public_numbers().e, public.public_numbers().n)
    assert recovered.to_bytes(256, "big").startswith(b"\x00\x01\xff")


def test_ecdsa_and_ed25519() -> None:
    ec_private = ec.generate_private_key(ec.SECP384R1())
    signature = LocalKey(ec_private).sign_sync(SignatureScheme.ECDSA_SECP384R1_SHA384, MESSAGE)
    ec_private.public_key().verify(signature, MESSAGE, ec.ECDSA(hashes.SHA384()))
    ed = ed25519.Ed25519PrivateKey.generate()
    ed.public_key().verify(LocalKey(ed).sign_sync(SignatureScheme.ED25519, MESSAGE), MESSAGE)


def test_mismatched_scheme_is_a_key_operation_error(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(KeyOperationError):
        LocalKey(ed25519.Ed25519PrivateKey.generate()).sign_sync(SignatureScheme.ECDSA_SECP256R1_SHA256, MESSAGE)
    with pytest.raises(KeyOperationError):
        LocalKey(ec.generate_private_key(ec.SECP256R1())).sign_sync(SignatureScheme.RSA_PSS_RSAE_SHA256, MESSAGE)
    with pytest.raises(KeyOperationError):
        LocalKey(rsa_key).sign_sync(SignatureScheme.ED25519, MESSAGE)


def test_raw_decrypt_keeps_the_padding(rsa_key: rsa.RSAPrivateKey) -> None:
    premaster = b"\x03\x03" + bytes(range(46))
    ciphertext = rsa_key.public_key().encrypt(premaster, padding.PKCS1v15())
    block = asyncio.run(LocalKey(rsa_key).decrypt(ciphertext))
    assert len(block) == 256
    assert block[:2] == b"\x00\x02" and block.endswith(b"\x00" + premaster)
    with pytest.raises(KeyOperationError):
        LocalKey(rsa_key).decrypt_sync(ciphertext[1:])
    with pytest.raises(KeyOperationError):
        LocalKey(ec.generate_private_key(ec.SECP256R1())).decrypt_sync(ciphertext)
