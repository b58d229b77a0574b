"""ML-DSA keys by external μ: our μ is cryptography's, a signature over it verifies over the message, the
key server's opcodes refuse what they must, key files load, and certificates serve TLS 1.3 only."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import mldsa

from keyless.keys.base import KeyOperationError
from keyless.keys.loader import KeySource, load_keys
from keyless.keys.local import LocalKey
from keyless.keys.mldsa import MU_LENGTH, external_mu, public_key_hash
from keyless.keys.operations import OperationError, opcode_for
from keyless.keys.schemes import SignatureScheme, signature_schemes_for
from keyless.keys.store import LocalKeyHandle
from keyless.pki import create_demo_pki
from keyless.protocol import ErrorCode, Opcode
from keyless.tls.config import CertifiedKey

PARAMETER_SETS = {
    "mldsa44": (mldsa.MLDSA44PrivateKey, SignatureScheme.MLDSA44, Opcode.MLDSA44_SIGN_MU),
    "mldsa65": (mldsa.MLDSA65PrivateKey, SignatureScheme.MLDSA65, Opcode.MLDSA65_SIGN_MU),
    "mldsa87": (mldsa.MLDSA87PrivateKey, SignatureScheme.MLDSA87, Opcode.MLDSA87_SIGN_MU),
}
TLS13_CV_INPUT = b"\x20" * 64 + b"TLS 1.3, server CertificateVerify\x00" + os.urandom(32)


@pytest.mark.parametrize("name", sorted(PARAMETER_SETS))
@pytest.mark.parametrize("message", [b"", b"x", TLS13_CV_INPUT, os.urandom(5000)], ids=["empty", "1", "cv", "5000"])
def test_mu_is_cryptographys_mu(name: str, message: bytes) -> None:
    key = PARAMETER_SETS[name][0].generate()
    hasher = mldsa.MLDSAMuHasher(key.public_key())
    hasher.update(message)
    expected = hasher.finalize()
    assert external_mu(key.public_key(), message) == expected
    assert external_mu(key.public_key(), message, tr=public_key_hash(key.public_key())) == expected
    assert len(expected) == MU_LENGTH


@pytest.mark.parametrize("name", sorted(PARAMETER_SETS))
def test_signature_over_mu_verifies_over_the_cv_input(name: str) -> None:
    key_class, scheme, opcode = PARAMETER_SETS[name]
    key = key_class.generate()
    signature = key.sign_mu(external_mu(key.public_key(), TLS13_CV_INPUT))
    key.public_key().verify(signature, TLS13_CV_INPUT)  # raises InvalidSignature otherwise
    local = LocalKey(key)
    assert local.signature_schemes == frozenset({scheme}) == signature_schemes_for(key.public_key())
    assert opcode_for(scheme, key.public_key()) == opcode
    key.public_key().verify(asyncio.run(local.sign(scheme, TLS13_CV_INPUT)), TLS13_CV_INPUT)
    with pytest.raises(KeyOperationError):
        asyncio.run(local.sign(SignatureScheme.ED25519, TLS13_CV_INPUT))


@pytest.mark.parametrize("length", [0, 32, 63, 65, 128, len(TLS13_CV_INPUT)])
def test_mu_of_the_wrong_length_is_a_format_error(length: int) -> None:
    handle = LocalKeyHandle(mldsa.MLDSA65PrivateKey.generate(), "test")
    with pytest.raises(OperationError) as caught:
        handle.execute(Opcode.MLDSA65_SIGN_MU, bytes(length))
    assert caught.value.code == ErrorCode.FORMAT
    assert "64-byte" in caught.value.reason


def test_opcode_of_another_parameter_set_or_key_type_is_a_crypto_error() -> None:
    handle = LocalKeyHandle(mldsa.MLDSA65PrivateKey.generate(), "test")
    for opcode in (Opcode.MLDSA44_SIGN_MU, Opcode.MLDSA87_SIGN_MU, Opcode.ED25519_SIGN, Opcode.ECDSA_SIGN_SHA256):
        with pytest.raises(OperationError) as caught:
            handle.execute(opcode, bytes(64 if opcode != Opcode.ECDSA_SIGN_SHA256 else 32))
        assert caught.value.code == ErrorCode.CRYPTO_FAILED
    assert handle.description == "ML-DSA-65"


def test_pki_pq_keys_load_by_ski_and_certificates_are_tls13_only(tmp_path: Path) -> None:
    pki = create_demo_pki(tmp_path / "pki", site_keys=("ecdsa-p256",), pq=True)
    report = load_keys([KeySource("dir", pki.keys_dir)], strict=True)
    assert not report.problems
    ca = x509.load_pem_x509_certificate(pki.pq_ca.read_bytes())
    assert isinstance(ca.public_key(), mldsa.MLDSA65PublicKey)
    for name, (_, scheme, _) in PARAMETER_SETS.items():
        leaf = x509.load_pem_x509_certificate(pki.site_cert(name).read_bytes())
        leaf.verify_directly_issued_by(ca)
        public = leaf.public_key()
        handle = report.store.find(x509.SubjectKeyIdentifier.from_public_key(public).digest)
        assert handle is not None and handle.kind.name == "MLDSA", name
        certified = CertifiedKey(chain=(leaf,), key=LocalKey(_private(pki.site_key(name))))
        assert certified.tls13_schemes == (scheme,)
        assert certified.tls12_schemes == ()
        assert certified.key_type == name
        assert not certified.rsa_key_exchange


def _private(path: Path) -> mldsa.MLDSA65PrivateKey:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey)
    return key  # type: ignore[return-value]
