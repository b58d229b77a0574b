"""A throwaway PKI for trying keyless and for tests: ``keyless pki init DIR``.

Layout (every path is an attribute of ``DemoPKI``)::

    ca.pem, ca-key.pem                  the CA (ECDSA P-256) that signs everything below
    keyserver.pem, keyserver-key.pem    the key server's TLS certificate (localhost, 127.0.0.1)
    edge.pem, edge-key.pem              the edge's client certificate for mutual TLS to the key server
    keys/<name>.key                     site private keys, PKCS#8 PEM: the key server's private_key_dirs
    certs/<name>.pem                    site certificates for the host name (+ *.host, localhost, 127.0.0.1)
    keyserver.yaml                      a ready key-server configuration using the above on 127.0.0.1

With ``--pq`` (``create_demo_pki(..., pq=True)``) also::

    pq-ca.pem, pq-ca-key.pem            an ML-DSA-65 CA (FIPS 204), self-signed with ML-DSA
    keys/mldsa{44,65,87}.key            ML-DSA site keys (PKCS#8), next to the classical ones
    certs/mldsa{44,65,87}.pem           their site certificates for the same names, signed by the ML-DSA CA

Private keys are written with mode 0600, in directories of mode 0700 (an existing directory loses
group and world write), as the key server and the edge require. Not for production: the CA key sits next to everything.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SITE_KEYS = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519")
PQ_SITE_KEYS = ("mldsa44", "mldsa65", "mldsa87")
VALIDITY = datetime.timedelta(days=365)

SiteKey = (
    ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    | mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey
)


@dataclass(frozen=True, slots=True)
class DemoPKI:
    directory: Path
    ca: Path
    ca_key: Path
    keyserver_cert: Path
    keyserver_key: Path
    edge_cert: Path
    edge_key: Path
    keys_dir: Path
    certs_dir: Path
    keyserver_config: Path
    hostname: str

    def site_key(self, name: str) -> Path:
        return self.keys_dir / f"{name}.key"

    def site_cert(self, name: str) -> Path:
        return self.certs_dir / f"{name}.pem"

    @property
    def pq_ca(self) -> Path:
        return self.directory / "pq-ca.pem"

    @property
    def pq_ca_key(self) -> Path:
        return self.directory / "pq-ca-key.pem"


def demo_pki_paths(directory: Path, hostname: str = "keyless.test") -> DemoPKI:
    d = Path(directory)
    return DemoPKI(
        directory=d, ca=d / "ca.pem", ca_key=d / "ca-key.pem", keyserver_cert=d / "keyserver.pem",
        keyserver_key=d / "keyserver-key.pem", edge_cert=d / "edge.pem", edge_key=d / "edge-key.pem",
        keys_dir=d / "keys", certs_dir=d / "certs", keyserver_config=d / "keyserver.yaml", hostname=hostname,
    )


def new_site_key(name: str) -> SiteKey:
    if name == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if name == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if name == "ecdsa-p521":
        return ec.generate_private_key(ec.SECP521R1())
    if name.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(name[4:]))
    if name == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if name == "mldsa44":
        return mldsa.MLDSA44PrivateKey.generate()
    if name == "mldsa65":
        return mldsa.MLDSA65PrivateKey.generate()
    if name == "mldsa87":
        return mldsa.MLDSA87PrivateKey.generate()
    raise ValueError(f"unknown site key type {name!r}")


def private_directory(directory: Path) -> None:
    """Create ``directory`` (mode 0700) or make an existing one unwritable by group and others: the key
    server and the edge refuse keys in a directory others can write (``keyless.keys.permissions``)."""
    directory = Path(directory)
    if not directory.is_dir():
        if not directory.parent.is_dir():
            private_directory(directory.parent)
        directory.mkdir(mode=0o700)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask; this is not
    else:
        mode = stat.S_IMODE(directory.stat().st_mode)
        if mode & 0o022:
            os.chmod(directory, mode & ~0o022)


def write_private_key(path: Path, key: SiteKey | ec.EllipticCurvePrivateKey) -> None:
    """Write ``key`` as PKCS#8 PEM with mode 0600 (also when replacing a file of another mode)."""
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    private_directory(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode applies only to a new file
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_certificate(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "keyless demo"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _sans(names: list[str]) -> x509.SubjectAlternativeName:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(general)


def issue_certificate(
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    subject_key: SiteKey,
    common_name: str, names: list[str], usage: x509.ObjectIdentifier,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    now = now or datetime.datetime.now(datetime.UTC)
    public = subject_key.public_key()
    is_rsa = isinstance(subject_key, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
                       critical=False)
    )
    if names:
        builder = builder.add_extension(_sans(names), critical=False)
    return builder.sign(ca_key, _signing_hash(ca_key))


def _signing_hash(ca_key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    """ECDSA and RSA CAs sign with SHA-256; Ed25519 and ML-DSA sign the whole TBSCertificate (no hash)."""
    if isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return hashes.SHA256()
    return None


def create_ca(common_name: str = "keyless demo CA") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    return _self_signed_ca(common_name, key), key


def create_pq_ca(common_name: str = "keyless demo ML-DSA CA") -> tuple[x509.Certificate, mldsa.MLDSA65PrivateKey]:
    """An ML-DSA-65 CA: the issuer of the ``--pq`` site certificates."""
    key = mldsa.MLDSA65PrivateKey.generate()
    return _self_signed_ca(common_name, key), key


def _self_signed_ca(
    common_name: str, key: ec.EllipticCurvePrivateKey | mldsa.MLDSA65PrivateKey
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY * 2)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _signing_hash(key))
    )
    return cert


def keyserver_yaml(pki: DemoPKI, port: int = 2407, metrics_port: int = 2406) -> str:
    return (
        "# keyless key server: generated by `keyless pki init` (demo PKI, loopback only)\n"
        f"listen: 127.0.0.1\nport: {port}\nmetrics_addr: 127.0.0.1:{metrics_port}\n"
        f"auth_cert: {pki.keyserver_cert}\nauth_key: {pki.keyserver_key}\n"
        f"cloudflare_ca_cert: {pki.ca}\n"
        f"private_key_dirs:\n  - {pki.keys_dir}\n"
        "loglevel: info\n"
    )


def create_demo_pki(
    directory: Path, hostname: str = "keyless.test", site_keys: tuple[str, ...] = SITE_KEYS, *, pq: bool = False
) -> DemoPKI:
    """Write a complete demo PKI into ``directory`` (created if needed; existing files are replaced); ``pq``
    adds the ML-DSA CA and the ML-DSA site keys and certificates (``PQ_SITE_KEYS``)."""
    pki = demo_pki_paths(Path(directory).resolve(), hostname)
    private_directory(pki.directory)
    ca_cert, ca_key = create_ca()
    write_certificate(pki.ca, ca_cert)
    write_private_key(pki.ca_key, ca_key)

    server_key = ec.generate_private_key(ec.SECP256R1())
    write_private_key(pki.keyserver_key, server_key)
    write_certificate(pki.keyserver_cert, issue_certificate(
        ca_cert, ca_key, server_key, "keyless key server", ["localhost", "127.0.0.1", "::1"],
        ExtendedKeyUsageOID.SERVER_AUTH))

    edge_key = ec.generate_private_key(ec.SECP256R1())
    write_private_key(pki.edge_key, edge_key)
    write_certificate(pki.edge_cert, issue_certificate(
        ca_cert, ca_key, edge_key, "keyless edge", [], ExtendedKeyUsageOID.CLIENT_AUTH))

    site_names = [hostname, f"*.{hostname}", "localhost", "127.0.0.1"]
    for name in site_keys:
        key = new_site_key(name)
        write_private_key(pki.site_key(name), key)
        write_certificate(pki.site_cert(name), issue_certificate(
            ca_cert, ca_key, key, hostname, site_names, ExtendedKeyUsageOID.SERVER_AUTH))
    if pq:
        pq_ca_cert, pq_ca_key = create_pq_ca()
        write_certificate(pki.pq_ca, pq_ca_cert)
        write_private_key(pki.pq_ca_key, pq_ca_key)
        for name in PQ_SITE_KEYS:
            key = new_site_key(name)
            write_private_key(pki.site_key(name), key)
            write_certificate(pki.site_cert(name), issue_certificate(
                pq_ca_cert, pq_ca_key, key, hostname, site_names, ExtendedKeyUsageOID.SERVER_AUTH))
    pki.keyserver_config.write_text(keyserver_yaml(pki))
    return pki
