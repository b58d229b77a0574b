"""Client certificates for the mTLS tests: a client CA with an intermediate, good and bad client identities."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class ClientPKI:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "client-ca.pem"

    @property
    def other_ca(self) -> Path:
        return self.directory / "other-ca.pem"

    def cert(self, name: str) -> Path:
        """``name``.pem: the leaf (and its intermediate when it has one)."""
        return self.directory / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}-key.pem"

    def leaf(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.cert(name).read_bytes())[0]


def _name(cn: str, org: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attributes)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_key(path: Path, key: PrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _ca(name: x509.Name, key: PrivateKey, issuer: x509.Name, issuer_key: PrivateKey) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def _client(
    name: x509.Name, key: PrivateKey, issuer: x509.Certificate, issuer_key: PrivateKey, *,
    expired: bool = False, usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    end = now - datetime.timedelta(hours=1) if expired else now + datetime.timedelta(days=1)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_client_pki(directory: Path) -> ClientPKI:
    """client-ca.pem (root) → clients issued directly and through an intermediate; other-ca.pem (a stranger).

    Identities: ``alice`` (ECDSA, SANs), ``bob`` (RSA), ``carol`` (under the intermediate, chain sent),
    ``expired``, ``server-only`` (serverAuth EKU), ``mallory`` (signed by the other CA), ``mismatch``
    (bob's certificate with another RSA key: its CertificateVerify cannot verify).
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = ClientPKI(directory)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca(_name("keyless test client CA"), root_key, _name("keyless test client CA"), root_key)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _ca(_name("keyless test client intermediate"), inter_key, root.subject, root_key)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _ca(_name("some other CA"), other_key, _name("some other CA"), other_key)
    pki.ca.write_bytes(_pem(root))
    pki.other_ca.write_bytes(_pem(other))

    alice_key = ec.generate_private_key(ec.SECP256R1())
    bob_key = rsa.generate_private_key(65537, 2048)
    identities: dict[str, tuple[list[x509.Certificate], PrivateKey]] = {}
    alice_sans: list[x509.GeneralName] = [x509.DNSName("alice.clients.test"), x509.RFC822Name("alice@example.test")]
    alice = _client(_name("alice", "Example Bank"), alice_key, root, root_key, sans=alice_sans)
    identities["alice"] = ([alice], alice_key)
    identities["bob"] = ([_client(_name("bob"), bob_key, root, root_key)], bob_key)
    carol_key = ec.generate_private_key(ec.SECP256R1())
    identities["carol"] = ([_client(_name("carol"), carol_key, inter, inter_key), inter], carol_key)
    expired_key = ec.generate_private_key(ec.SECP256R1())
    identities["expired"] = ([_client(_name("expired"), expired_key, root, root_key, expired=True)], expired_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_only = _client(_name("server-only"), server_key, root, root_key, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    identities["server-only"] = ([server_only], server_key)
    mallory_key = ec.generate_private_key(ec.SECP256R1())
    identities["mallory"] = ([_client(_name("mallory"), mallory_key, other, other_key)], mallory_key)
    identities["mismatch"] = (identities["bob"][0], rsa.generate_private_key(65537, 2048))
    for name, (chain, key) in identities.items():
        pki.cert(name).write_bytes(b"".join(_pem(c) for c in chain))
        _write_key(pki.key(name), key)
    return pki
