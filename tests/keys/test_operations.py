"""Every key opcode against every key type, each result checked with ``cryptography``'s verifiers."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keyless.keys.operations import OPERATIONS, OperationError, PrivateKey, make_executor
from keyless.keys.rsa_raw import python_raw_rsa_for, raw_rsa_for
from keyless.keys.schemes import KeyKind
from keyless.keys.store import LocalKeyHandle
from keyless.protocol import ErrorCode, Opcode
from tests.support.verify import payload_for, verify


def _keys() -> dict[str, PrivateKey]:
    return {
        "rsa-2048": rsa.generate_private_key(65537, 2048),
        "rsa-3072": rsa.generate_private_key(65537, 3072),
        "ecdsa-p256": ec.generate_private_key(ec.SECP256R1()),
        "ecdsa-p384": ec.generate_private_key(ec.SECP384R1()),
        "ecdsa-p521": ec.generate_private_key(ec.SECP521R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


KEYS = _keys()


CASES = [(name, opcode) for name in KEYS for opcode in sorted(OPERATIONS)]


@pytest.mark.parametrize(("key_name", "opcode"), CASES, ids=[f"{n}-{Opcode(o).name}" for n, o in CASES])
def test_every_opcode_against_every_key_type(key_name: str, opcode: int) -> None:
    key = KEYS[key_name]
    handle = LocalKeyHandle(key, key_name)
    op = OPERATIONS[opcode]
    if op.kind is not handle.kind:
        # (no ML-DSA key here: tests/keys/test_mldsa_keys.py; payload_for gives any 64-byte μ then)
        other = next((k for k in KEYS.values() if LocalKeyHandle(k, "x").kind is op.kind), key)
        with pytest.raises(OperationError) as caught:
            handle.execute(opcode, payload_for(opcode, other))
        assert caught.value.code == ErrorCode.CRYPTO_FAILED
        return
    payload = payload_for(opcode, key)
    result = handle.execute(opcode, payload)
    verify(opcode, key, payload, result)


@pytest.mark.parametrize("opcode", [o for o, op in OPERATIONS.items() if op.hash is not None])
def test_digest_of_the_wrong_length_is_a_crypto_error(opcode: int) -> None:
    op = OPERATIONS[opcode]
    key = next(k for k in KEYS.values() if LocalKeyHandle(k, "x").kind is op.kind)
    assert op.hash is not None
    for size in (0, op.hash.digest_size - 1, op.hash.digest_size + 1):
        with pytest.raises(OperationError) as caught:
            make_executor(key)(opcode, bytes(size))
        assert caught.value.code == ErrorCode.CRYPTO_FAILED


def test_decrypt_refuses_wrong_length_and_out_of_range_ciphertext() -> None:
    key = KEYS["rsa-2048"]
    assert isinstance(key, rsa.RSAPrivateKey)
    handle = LocalKeyHandle(key, "rsa")
    n = key.public_key().public_numbers().n
    for bad in (b"", bytes(255), bytes(257), n.to_bytes(256, "big"), b"\xff" * 256):
        with pytest.raises(OperationError) as caught:
            handle.execute(Opcode.RSA_DECRYPT, bad)
        assert caught.value.code == ErrorCode.CRYPTO_FAILED


def test_raw_rsa_backends_agree_with_textbook_rsa() -> None:
    key = KEYS["rsa-2048"]
    assert isinstance(key, rsa.RSAPrivateKey)
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    for _ in range(5):
        c = int.from_bytes(os.urandom(256), "big") % n
        block = c.to_bytes(256, "big")
        expected = pow(c, numbers.d, n).to_bytes(256, "big")
        assert raw_rsa_for(key).private_op(block) == expected
        assert python_raw_rsa_for(key).private_op(block) == expected
    # small values keep their leading zeros
    assert raw_rsa_for(key).private_op((1).to_bytes(256, "big")) == (1).to_bytes(256, "big")


def test_handles_do_not_reveal_key_material() -> None:
    key = KEYS["ecdsa-p256"]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    handle = LocalKeyHandle(key, "file.key")
    secret = str(key.private_numbers().private_value)
    assert secret not in repr(handle)
    assert not any(isinstance(getattr(handle, name), ec.EllipticCurvePrivateKey) for name in handle.__slots__)
    assert handle.kind is KeyKind.ECDSA and not handle.offload
    assert LocalKeyHandle(KEYS["rsa-2048"], "r").offload
