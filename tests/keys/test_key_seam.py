"""The key seam (``keyless.keys.base.AsyncPrivateKey``) for local keys: each signs every scheme it lists
and refuses every other, decrypts raw RSA, names itself by SKI. ``test_key_seam_pkcs11.py`` runs the same
checks on keys in a SoftHSM2 token; ``tests/client/test_remote_key.py`` on ``RemoteKey`` against a real
key server."""

from __future__ import annotations

import asyncio

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from keyless.keys.base import AsyncPrivateKey, KeyOperationError
from keyless.keys.local import LocalKey
from keyless.keys.operations import OpcodeKey, PrivateKey, opcode_for
from keyless.keys.schemes import SignatureScheme, digest_for
from keyless.keys.ski import ski_of
from tests.support.verify import verify

MESSAGE = b" " * 64 + b"TLS 1.3, server CertificateVerify\x00" + bytes(32)
PREMASTER = b"\x03\x03" + bytes(range(46))

PRIVATE_KEYS: dict[str, PrivateKey] = {
    "rsa-2048": rsa.generate_private_key(65537, 2048),
    "ecdsa-p256": ec.generate_private_key(ec.SECP256R1()),
    "ecdsa-p384": ec.generate_private_key(ec.SECP384R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate(),
}


def check_seam(key: OpcodeKey, private: PrivateKey) -> int:
    """Every scheme listed signs (awaited and blocking alike) and verifies; every other scheme fails with
    ``KeyOperationError``; RSA decrypts to the raw padded block. Returns how many schemes signed."""
    assert isinstance(key, AsyncPrivateKey)
    assert key.ski == ski_of(private.public_key())
    assert key.with_context(sni="example.com") is key
    blocking = key.blocking
    assert blocking is not None
    signed = 0
    for scheme in SignatureScheme:
        if scheme in key.signature_schemes:
            signature = asyncio.run(key.sign(scheme, MESSAGE))
            opcode = opcode_for(scheme, private.public_key())
            verify(opcode, private, digest_for(scheme, MESSAGE), signature)
            verify(opcode, private, digest_for(scheme, MESSAGE), blocking.sign_sync(scheme, MESSAGE))
            signed += 1
        else:
            with pytest.raises(KeyOperationError):
                asyncio.run(key.sign(scheme, MESSAGE))
    if isinstance(private, rsa.RSAPrivateKey):
        block = asyncio.run(key.decrypt(private.public_key().encrypt(PREMASTER, padding.PKCS1v15())))
        assert len(block) == private.key_size // 8 and block[:2] == b"\x00\x02" and block.endswith(b"\x00" + PREMASTER)
        with pytest.raises(KeyOperationError):
            blocking.decrypt_sync(b"\x01" * 7)  # not a block of the modulus's length
    else:
        with pytest.raises(KeyOperationError, match="needs an RSA key"):
            asyncio.run(key.decrypt(b"\x00" * 32))
    return signed


@pytest.mark.parametrize("name", sorted(PRIVATE_KEYS))
def test_local_key_signs_every_scheme_it_lists_and_no_other(name: str) -> None:
    signed = check_seam(LocalKey(PRIVATE_KEYS[name]), PRIVATE_KEYS[name])
    assert signed == {"rsa-2048": 11, "ecdsa-p256": 4, "ecdsa-p384": 4, "ed25519": 1}[name]


def test_only_large_rsa_keys_leave_the_event_loop() -> None:
    assert not LocalKey(PRIVATE_KEYS["rsa-2048"]).offload
    assert not LocalKey(PRIVATE_KEYS["ecdsa-p256"]).offload
    assert LocalKey(rsa.generate_private_key(65537, 4096)).offload


def test_local_key_md5_sha1_is_the_bare_pkcs1_block() -> None:
    """TLS 1.0/1.1's MD5||SHA-1 signature: PKCS#1 v1.5 type 1 over the 36 bytes, no DigestInfo."""
    private = PRIVATE_KEYS["rsa-2048"]
    assert isinstance(private, rsa.RSAPrivateKey)
    signature = LocalKey(private).sign_sync(SignatureScheme.RSA_PKCS1_MD5_SHA1, MESSAGE)
    numbers = private.public_key().public_numbers()
    block = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(256, "big")
    assert block.startswith(b"\x00\x01\xff") and block.endswith(b"\x00" + digest_for(
        SignatureScheme.RSA_PKCS1_MD5_SHA1, MESSAGE))


def test_a_raw_cryptography_key_is_refused_by_the_tls_config() -> None:
    from keyless.tls.config import CertifiedKey

    private = PRIVATE_KEYS["ecdsa-p256"]
    assert not isinstance(private, AsyncPrivateKey)
    with pytest.raises(TypeError, match="AsyncPrivateKey"):
        CertifiedKey(chain=(self_signed(private),), key=private)  # type: ignore[arg-type]


def self_signed(private: PrivateKey) -> x509.Certificate:
    import datetime

    from cryptography.hazmat.primitives import hashes

    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "seam.test")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    return builder.sign(private, None if isinstance(private, ed25519.Ed25519PrivateKey) else hashes.SHA256())


def test_any_key_decrypts_a_premaster_with_implicit_rejection() -> None:
    """``decrypt_premaster`` over a local key: the premaster when all is well; a random one (never an error)
    for a wrong version, bad padding or a failing key."""
    from keyless.keys.premaster import decrypt_premaster

    private = PRIVATE_KEYS["rsa-2048"]
    assert isinstance(private, rsa.RSAPrivateKey)
    key = LocalKey(private)
    good = private.public_key().encrypt(PREMASTER, padding.PKCS1v15())

    async def failing(_ciphertext: bytes) -> bytes:
        raise KeyOperationError("the key server said no")

    async def main() -> list[bytes]:
        return [
            await decrypt_premaster(key.decrypt, 256, good, b"\x03\x03"),
            await decrypt_premaster(key.decrypt, 256, good, b"\x03\x01"),  # version rollback
            await decrypt_premaster(key.decrypt, 256, bytes(256), b"\x03\x03"),  # not a valid block
            await decrypt_premaster(failing, 256, good, b"\x03\x03"),
        ]

    premaster, *rejected = asyncio.run(main())
    assert premaster == PREMASTER
    assert all(len(r) == 48 and r != PREMASTER for r in rejected) and len(set(rejected)) == 3
