"""Fixed keys for the fuzz targets, so that an SKI or a ticket in a seed or crash file means the same key in
every run (a generated key would make every recorded input meaningless in the next process)."""

from __future__ import annotations

import datetime
import functools
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DATA = Path(__file__).resolve().parent / "data"


@functools.cache
def ecdsa_p256() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0x6B65796C657373, ec.SECP256R1())  # "keyless"


@functools.cache
def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@functools.cache
def rsa_2048() -> rsa.RSAPrivateKey:
    """A throwaway RSA key committed as test data (tests/fuzz/data/rsa-2048.pem): RSA cannot be derived."""
    key = serialization.load_pem_private_key((DATA / "rsa-2048.pem").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


TICKET_KEY_MATERIAL = bytes(range(80))  # nginx's 80-byte ssl_session_ticket_key layout
FIXED_NOW = 1_800_000_000.0  # the fuzz targets' clock: tickets in seeds never expire


HOSTNAME = "keyless.test"
_NOT_BEFORE = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(2036, 1, 1, tzinfo=datetime.UTC)


def _certificate(subject: str, public_key: Any, issuer: x509.Name, signer: Any, serial: int, *, ca: bool = False,
                 client: bool = False) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        ).add_extension(x509.SubjectAlternativeName([x509.DNSName(HOSTNAME)]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    return builder.sign(signer, hashes.SHA256(), ecdsa_deterministic=True)  # same DER in every run


@functools.cache
def fuzz_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bytes]:
    """(CA certificate, client key, client leaf DER): fixed keys, names, serials, validity and RFC 6979
    signatures, so every run builds the same DER and a recorded transcript replays."""
    ca_key = ec.derive_private_key(0xCA, ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyless fuzz CA")])
    ca = _certificate("keyless fuzz CA", ca_key.public_key(), ca_name, ca_key, 1, ca=True)
    client_key = ec.derive_private_key(0xC11E, ec.SECP256R1())
    leaf = _certificate("fuzz client", client_key.public_key(), ca_name, ca_key, 2, client=True)
    return ca, client_key, leaf.public_bytes(serialization.Encoding.DER)


@functools.cache
def site_certificate(kind: str) -> tuple[x509.Certificate, Any]:
    """The server certificate for ``kind`` ("ecdsa", "rsa", "ed25519") and its private key (fuzz CA)."""
    ca, _, _ = fuzz_ca()
    ca_key = ec.derive_private_key(0xCA, ec.SECP256R1())
    private: Any = {"ecdsa": ecdsa_p256, "rsa": rsa_2048, "ed25519": ed25519_key}[kind]()
    serial = {"ecdsa": 3, "rsa": 4, "ed25519": 5}[kind]
    cert = _certificate(HOSTNAME, private.public_key(), ca.subject, ca_key, serial)
    return cert, private
