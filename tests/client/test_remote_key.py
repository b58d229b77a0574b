"""RemoteKey against a real key-server process: every TLS signature scheme, decryption, error codes."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from keyless.client import (
    BadOpcodeError,
    CryptoError,
    KeylessClient,
    KeyNotFoundError,
    Request,
    make_ssl_context,
)
from keyless.keys.base import AsyncPrivateKey, KeyOperationError
from keyless.keys.schemes import SignatureScheme, scheme_hash
from keyless.keys.ski import ski_of
from keyless.pki import DemoPKI
from keyless.protocol import ErrorCode, Opcode
from tests.support.keyserver import KeyServerProcess

T = TypeVar("T")
MESSAGE = b"TLS 1.3, server CertificateVerify\x00" + bytes(range(64))

RSA_SCHEMES = [
    SignatureScheme.RSA_PKCS1_SHA1, SignatureScheme.RSA_PKCS1_SHA256, SignatureScheme.RSA_PKCS1_SHA384,
    SignatureScheme.RSA_PKCS1_SHA512, SignatureScheme.RSA_PSS_RSAE_SHA256, SignatureScheme.RSA_PSS_RSAE_SHA384,
    SignatureScheme.RSA_PSS_RSAE_SHA512, SignatureScheme.RSA_PSS_PSS_SHA256, SignatureScheme.RSA_PSS_PSS_SHA384,
    SignatureScheme.RSA_PSS_PSS_SHA512, SignatureScheme.RSA_PKCS1_MD5_SHA1,
]
ECDSA_SCHEMES = [
    SignatureScheme.ECDSA_SHA1, SignatureScheme.ECDSA_SECP256R1_SHA256, SignatureScheme.ECDSA_SECP384R1_SHA384,
    SignatureScheme.ECDSA_SECP521R1_SHA512,
]
CASES = (
    [("rsa-2048", s) for s in RSA_SCHEMES]
    + [(k, s) for k in ("ecdsa-p256", "ecdsa-p384") for s in ECDSA_SCHEMES]
    + [("ed25519", SignatureScheme.ED25519)]
)


def run_with_client(pki: DemoPKI, ks: KeyServerProcess, body: Callable[[KeylessClient], Awaitable[T]],
                    **options: object) -> T:
    async def main() -> T:
        context = make_ssl_context(pki.edge_cert, pki.edge_key, pki.ca)
        async with KeylessClient([f"127.0.0.1:{ks.port}"], context, server_name="localhost",
                                 **options) as client:  # type: ignore[arg-type]
            return await body(client)

    return asyncio.run(main())


def certificate(pki: DemoPKI, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.site_cert(name).read_bytes())


def verify(public: object, scheme: SignatureScheme, message: bytes, signature: bytes) -> None:
    """Check ``signature`` with cryptography's own verifiers (raises InvalidSignature)."""
    algorithm = scheme_hash(scheme)
    if isinstance(public, ed25519.Ed25519PublicKey):
        public.verify(signature, message)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        assert algorithm is not None
        public.verify(signature, message, ec.ECDSA(algorithm))
    elif isinstance(public, rsa.RSAPublicKey):
        if scheme == SignatureScheme.RSA_PKCS1_MD5_SHA1:
            numbers = public.public_numbers()
            k = (public.key_size + 7) // 8
            block = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(k, "big")
            digest = hashlib.md5(message).digest() + hashlib.sha1(message).digest()
            if block != b"\x00\x01" + b"\xff" * (k - 39) + b"\x00" + digest:
                raise InvalidSignature("MD5+SHA1 block mismatch")
        elif scheme.name.startswith("RSA_PSS"):
            assert algorithm is not None
            public.verify(signature, message, padding.PSS(padding.MGF1(algorithm), algorithm.digest_size), algorithm)
        else:
            assert algorithm is not None
            public.verify(signature, message, padding.PKCS1v15(), algorithm)
    else:
        raise AssertionError(type(public))


def test_every_scheme_round_trips_and_verifies(client_pki: DemoPKI, keyserver: KeyServerProcess) -> None:
    async def body(client: KeylessClient) -> list[tuple[str, SignatureScheme, bytes]]:
        keys = {name: client.remote_key(certificate(client_pki, name)) for name in {n for n, _ in CASES}}
        for name, key in keys.items():
            assert isinstance(key, AsyncPrivateKey)
            assert key.blocking is None  # every operation is awaited: a round trip to a key server
            assert key.signature_schemes == {scheme for n, scheme in CASES if n == name}  # all signed below
        signatures = await asyncio.gather(*(keys[name].sign(scheme, MESSAGE) for name, scheme in CASES))
        return [(name, scheme, sig) for (name, scheme), sig in zip(CASES, signatures, strict=True)]

    before = keyserver.sign_count()
    results = run_with_client(client_pki, keyserver, body)
    assert keyserver.sign_count() - before == len(CASES)
    for name, scheme, signature in results:
        public = certificate(client_pki, name).public_key()
        verify(public, scheme, MESSAGE, signature)
        with pytest.raises(InvalidSignature):
            verify(public, scheme, MESSAGE + b"!", signature)


def test_scheme_that_does_not_fit_the_key_fails_locally(client_pki: DemoPKI, keyserver: KeyServerProcess) -> None:
    async def body(client: KeylessClient) -> None:
        ec_key = client.remote_key(certificate(client_pki, "ecdsa-p256"))
        for scheme in (SignatureScheme.RSA_PSS_RSAE_SHA256, SignatureScheme.ED25519):
            with pytest.raises(KeyOperationError, match="cannot sign"):
                await ec_key.sign(scheme, MESSAGE)
        with pytest.raises(KeyOperationError, match="RSA"):
            await ec_key.decrypt(bytes(256))

    before = keyserver.sign_count()
    run_with_client(client_pki, keyserver, body)
    assert keyserver.sign_count() == before  # nothing was sent


def test_decrypt_and_premaster(client_pki: DemoPKI, keyserver: KeyServerProcess) -> None:
    public = certificate(client_pki, "rsa-2048").public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    premaster = b"\x03\x03" + os.urandom(46)
    good = public.encrypt(premaster, padding.PKCS1v15())
    # A block with valid RSA but broken PKCS#1 padding: encrypt raw 0x00 0x01 ... instead of 0x00 0x02.
    numbers = public.public_numbers()
    bad_block = b"\x00\x01" + b"\xff" * (256 - 51) + b"\x00" + premaster
    bad = pow(int.from_bytes(bad_block, "big"), numbers.e, numbers.n).to_bytes(256, "big")
    wrong_version = public.encrypt(b"\x03\x01" + premaster[2:], padding.PKCS1v15())

    async def body(client: KeylessClient) -> tuple[bytes, ...]:
        key = client.remote_key(public)
        raw = await key.decrypt(good)
        results = [await key.decrypt_premaster(c, b"\x03\x03") for c in (good, bad, bad, wrong_version)]
        # a key the server does not hold: the operation fails, still no exception
        unknown = client.remote_key(rsa.generate_private_key(65537, 2048).public_key())
        results.append(await unknown.decrypt_premaster(good, b"\x03\x03"))
        return (raw, *results)

    raw, from_good, from_bad1, from_bad2, from_wrong_version, from_unknown = run_with_client(
        client_pki, keyserver, body)
    assert len(raw) == 256 and raw[:2] == b"\x00\x02" and raw.endswith(b"\x00" + premaster)
    assert from_good == premaster
    for value in (from_bad1, from_bad2, from_wrong_version, from_unknown):
        assert len(value) == 48 and value != premaster
    assert from_bad1 != from_bad2  # fresh randomness each time


def test_error_answers_are_typed_with_their_code(client_pki: DemoPKI, keyserver: KeyServerProcess) -> None:
    async def body(client: KeylessClient) -> list[BaseException]:
        errors: list[BaseException] = []
        stranger = client.remote_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        ec_ski = ski_of(certificate(client_pki, "ecdsa-p256").public_key())
        attempts: list[Awaitable[bytes]] = [
            stranger.sign(SignatureScheme.ECDSA_SECP256R1_SHA256, MESSAGE),
            client.call(Request(Opcode.ECDSA_SIGN_SHA256, b"short digest", ec_ski)),
            client.call(Request(Opcode.RSA_DECRYPT, bytes(256), ec_ski)),
            client.call(Request(0xDF, b"", ec_ski)),  # unused (0xC0-0xC2 are ML-DSA)
        ]
        for attempt in attempts:
            try:
                await attempt
            except KeyOperationError as exc:
                errors.append(exc)
        return errors

    errors = run_with_client(client_pki, keyserver, body)
    assert [type(e) for e in errors] == [KeyNotFoundError, CryptoError, CryptoError, BadOpcodeError]
    assert [getattr(e, "code", None) for e in errors] == [
        ErrorCode.KEY_NOT_FOUND, ErrorCode.CRYPTO_FAILED, ErrorCode.CRYPTO_FAILED, ErrorCode.BAD_OPCODE]
    assert "key not found" in str(errors[0])


def test_ping_reports_each_endpoint(client_pki: DemoPKI, keyserver: KeyServerProcess) -> None:
    async def body(client: KeylessClient) -> dict[str, float | Exception]:
        return await client.ping()

    result = run_with_client(client_pki, keyserver, body)
    assert list(result) == [f"127.0.0.1:{keyserver.port}"]
    (latency,) = result.values()
    assert isinstance(latency, float) and 0 < latency < 2


def test_opcode_table() -> None:
    from keyless.client import opcode_for

    rsa_public = rsa.generate_private_key(65537, 1024).public_key()
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key()
    ed_public = ed25519.Ed25519PrivateKey.generate().public_key()
    assert opcode_for(SignatureScheme.RSA_PKCS1_SHA1, rsa_public) == 0x03
    assert opcode_for(SignatureScheme.RSA_PKCS1_SHA256, rsa_public) == 0x05
    assert opcode_for(SignatureScheme.RSA_PKCS1_SHA512, rsa_public) == 0x07
    assert opcode_for(SignatureScheme.RSA_PKCS1_MD5_SHA1, rsa_public) == 0x02
    assert opcode_for(SignatureScheme.RSA_PSS_RSAE_SHA384, rsa_public) == 0x36
    assert opcode_for(SignatureScheme.RSA_PSS_PSS_SHA512, rsa_public) == 0x37
    assert opcode_for(SignatureScheme.ECDSA_SHA1, ec_public) == 0x13
    assert opcode_for(SignatureScheme.ECDSA_SECP384R1_SHA384, ec_public) == 0x16  # TLS 1.2: any hash
    assert opcode_for(SignatureScheme.ED25519, ed_public) == 0x18
    with pytest.raises(KeyOperationError):
        opcode_for(SignatureScheme.ECDSA_SECP256R1_SHA256, rsa_public)
    with pytest.raises(KeyOperationError):
        opcode_for(SignatureScheme.RSA_PKCS1_MD5_SHA1, ec_public)
