"""Loading keys: formats, encodings, recursion, and every kind of bad file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keyless.keys.loader import KeyLoadError, KeySource, load_keys
from keyless.keys.ski import ski_of
from keyless.keys.store import legacy_rsa_digest

Enc = serialization.Encoding
Fmt = serialization.PrivateFormat


def write(path: Path, key: object, encoding: serialization.Encoding, fmt: serialization.PrivateFormat,
          password: bytes | None = None) -> Path:
    algorithm = (serialization.BestAvailableEncryption(password) if password
                 else serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(encoding, fmt, algorithm))  # type: ignore[attr-defined]
    path.chmod(0o600)  # keys others can read are refused (tests/keys/test_key_hygiene.py)
    return path


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def test_every_encoding_and_format_recursively(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    p521 = ec.generate_private_key(ec.SECP521R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    root = tmp_path / "keys"
    write(root / "rsa-pkcs1.pem", rsa_key, Enc.PEM, Fmt.TraditionalOpenSSL)
    write(root / "a" / "p256-sec1.der", p256, Enc.DER, Fmt.TraditionalOpenSSL)
    write(root / "a" / "b" / "p384-pkcs8.der", p384, Enc.DER, Fmt.PKCS8)
    write(root / "a" / "b" / "c" / "ed25519.pem", ed, Enc.PEM, Fmt.PKCS8)
    # `openssl ecparam -genkey` style: EC PARAMETERS block before the SEC1 key
    sec1 = p521.private_bytes(Enc.PEM, Fmt.TraditionalOpenSSL, serialization.NoEncryption())
    params = b"-----BEGIN EC PARAMETERS-----\nBgUrgQQAIw==\n-----END EC PARAMETERS-----\n"
    (root / "p521-with-params.pem").write_bytes(params + sec1)
    (root / "p521-with-params.pem").chmod(0o600)
    (root / ".hidden.key").write_bytes(b"junk")  # hidden files are ignored
    report = load_keys([KeySource("dir", root)])
    assert report.problems == []
    skis = {h.ski for h in report.store}
    assert skis == {ski_of(k.public_key()) for k in (rsa_key, p256, p384, p521, ed)}
    assert report.store.find_by_digest(legacy_rsa_digest(rsa_key.public_key())) is not None


def test_single_file_source_and_duplicates(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    a = write(tmp_path / "a.pem", rsa_key, Enc.PEM, Fmt.PKCS8)
    b = write(tmp_path / "b.der", rsa_key, Enc.DER, Fmt.PKCS8)
    report = load_keys([KeySource("file", a), KeySource("file", b)])
    assert len(report.store) == 1  # the same key twice is one key
    handle = report.store.find(ski_of(rsa_key.public_key()))
    assert handle is not None and handle.source == str(a)


def test_bad_files_are_reported_by_path_and_skipped(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    root = tmp_path / "keys"
    good = write(root / "good.pem", ec.generate_private_key(ec.SECP256R1()), Enc.PEM, Fmt.PKCS8)
    encrypted = write(root / "encrypted.pem", rsa_key, Enc.PEM, Fmt.PKCS8, password=b"secret")
    legacy_encrypted = write(root / "legacy-encrypted.pem", rsa_key, Enc.PEM, Fmt.TraditionalOpenSSL, password=b"pw")
    garbage = root / "garbage.key"
    garbage.write_bytes(os.urandom(300))
    weak = write(root / "weak.pem", rsa.generate_private_key(65537, 1024), Enc.PEM, Fmt.PKCS8)
    curve = write(root / "k1.pem", ec.generate_private_key(ec.SECP256K1()), Enc.PEM, Fmt.PKCS8)
    unreadable = write(root / "unreadable.pem", rsa_key, Enc.PEM, Fmt.PKCS8)
    unreadable.chmod(0)
    # certificates and public keys in a key directory are not problems
    (root / "cert.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    (root / "pub.pem").write_bytes(rsa_key.public_key().public_bytes(Enc.PEM, spki))
    report = load_keys([KeySource("dir", root)])
    reported = {Path(p.path).name: p.reason for p in report.problems}
    expected = {encrypted.name, legacy_encrypted.name, garbage.name, weak.name, curve.name}
    if os.geteuid() != 0:  # root reads any file
        expected.add(unreadable.name)
    assert expected <= set(reported), reported
    assert "cert.pem" not in reported and "pub.pem" not in reported
    assert "encrypted" in reported[encrypted.name] and "encrypted" in reported[legacy_encrypted.name]
    assert "too short" in reported[weak.name]
    assert {h.source for h in report.store} >= {str(good)}
    with pytest.raises(KeyLoadError) as caught:
        load_keys([KeySource("dir", root)], strict=True)
    assert str(root) in caught.value.path


def test_missing_directory_and_file_without_key(tmp_path: Path) -> None:
    cert_only = tmp_path / "cert.pem"
    cert_only.write_bytes(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")
    report = load_keys([KeySource("dir", tmp_path / "nope"), KeySource("file", cert_only)])
    assert len(report.store) == 0
    assert [Path(p.path).name for p in report.problems] == ["nope", "cert.pem"]
