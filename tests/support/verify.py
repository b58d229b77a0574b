"""Valid payloads for each key opcode and checks of the results with ``cryptography``'s verifiers."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from keyless.keys.operations import MD5SHA1, OPERATIONS, Action, PrivateKey

MESSAGE = b"keyless test message"
PREMASTER = b"\x03\x03" + bytes(46)


def payload_for(opcode: int, key: PrivateKey) -> bytes:
    """A valid request payload for ``opcode``: a digest of MESSAGE, a ciphertext, or the message."""
    op = OPERATIONS[opcode]
    if op.action == Action.RSA_DECRYPT:
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.public_key().encrypt(PREMASTER, padding.PKCS1v15())
    if op.action == Action.MLDSA_MU:  # μ of MESSAGE by cryptography's own hasher (any 64 bytes for another key)
        if not isinstance(key, mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey):
            return bytes(64)
        hasher = mldsa.MLDSAMuHasher(key.public_key())
        hasher.update(MESSAGE)
        return hasher.finalize()
    if op.hash is None:
        return MESSAGE
    if isinstance(op.hash, MD5SHA1):
        return hashlib.md5(MESSAGE).digest() + hashlib.sha1(MESSAGE).digest()
    h = hashes.Hash(op.hash)
    h.update(MESSAGE)
    return h.finalize()


def verify(opcode: int, key: PrivateKey, payload: bytes, result: bytes) -> None:
    """Raise unless ``result`` is the correct answer to ``opcode`` over ``payload``."""
    op = OPERATIONS[opcode]
    public = key.public_key()
    if op.action == Action.RSA_DECRYPT:
        assert isinstance(key, rsa.RSAPrivateKey)
        k = (key.key_size + 7) // 8
        assert len(result) == k
        assert result[:2] == b"\x00\x02"  # PKCS#1 v1.5 type 2 padding is still there
        assert result.endswith(b"\x00" + PREMASTER)
        return
    if op.action == Action.MLDSA_MU:
        assert isinstance(public, mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey)
        public.verify(result, MESSAGE)  # a signature over μ is an ordinary ML-DSA signature over the message
        return
    if op.action == Action.ED25519:
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(result, payload)
        return
    if op.action == Action.ECDSA:
        assert isinstance(public, ec.EllipticCurvePublicKey) and op.hash is not None
        decode_dss_signature(result)  # DER SEQUENCE { r, s }
        public.verify(result, payload, ec.ECDSA(utils.Prehashed(op.hash)))
        return
    assert isinstance(public, rsa.RSAPublicKey) and op.hash is not None
    assert len(result) == (public.key_size + 7) // 8
    if isinstance(op.hash, MD5SHA1):
        numbers = public.public_numbers()
        block = pow(int.from_bytes(result, "big"), numbers.e, numbers.n).to_bytes(len(result), "big")
        # PKCS#1 v1.5 type 1 padding around the bare 36-byte digest: no DigestInfo
        assert block == b"\x00\x01" + b"\xff" * (len(result) - 39) + b"\x00" + payload
        return
    if op.action == Action.RSA_PSS:
        pss = padding.PSS(mgf=padding.MGF1(op.hash), salt_length=op.hash.digest_size)
        public.verify(result, payload, pss, utils.Prehashed(op.hash))
        return
    public.verify(result, payload, padding.PKCS1v15(), utils.Prehashed(op.hash))
