"""Shared fixtures for the TLS 1.3 engine tests: a throw-away PKI per key type, configs, and a driver
that runs our engine against Python's OpenSSL client in memory (``SSLContext.wrap_bio``)."""

from __future__ import annotations

import datetime
import functools
import ipaddress
import ssl
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keyless.keys.local import LocalKey
from keyless.tls.config import CertifiedKey, ServerConfig, static_certificate
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import NEED_DATA, ConnectionClosed, Event, KeyOperationRequired

HOSTNAME = "keyless.test"
KEY_KINDS = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-pss", "ed25519")


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey

    @property
    def ca_pem(self) -> Path:
        return self.directory / "ca.pem"


@functools.lru_cache(maxsize=1)
def pki() -> Pki:
    directory = Path(tempfile.mkdtemp(prefix="keyless-tls13-"))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyless test CA")])
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "ca-key.pem").write_bytes(
        ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Pki(directory, ca_cert, ca_key)


def _issue(public_key: Any, common_name: str, *, client: bool = False) -> x509.Certificate:
    authority = pki()
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(authority.ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.ca_key.public_key()), critical=False
        )
    )
    if not client:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(HOSTNAME),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    return builder.sign(authority.ca_key, hashes.SHA256())


def _rsa_pss_certificate() -> tuple[x509.Certificate, Any]:
    """An RSASSA-PSS-OID key and certificate: cryptography cannot create those, openssl can."""
    authority = pki()
    d = authority.directory
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048", "-out", d / "pss.key"],
        check=True,
        capture_output=True,
    )
    (d / "pss.ext").write_text(
        f"subjectAltName=DNS:{HOSTNAME},DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    subprocess.run(
        ["openssl", "req", "-new", "-key", d / "pss.key", "-subj", f"/CN={HOSTNAME}", "-out", d / "pss.csr"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["openssl", "x509", "-req", "-in", d / "pss.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca-key.pem",
         "-CAcreateserial", "-days", "30", "-extfile", d / "pss.ext", "-out", d / "pss.pem"],
        check=True,
        capture_output=True,
    )
    cert = x509.load_pem_x509_certificate((d / "pss.pem").read_bytes())
    key = serialization.load_pem_private_key((d / "pss.key").read_bytes(), None)
    return cert, key


@functools.cache
def site(kind: str = "ecdsa-p256") -> tuple[CertifiedKey, Any, Path, Path]:
    """(CertifiedKey with a LocalKey, the private key, cert chain PEM path, key PEM path) for ``kind``."""
    private: Any
    if kind == "rsa-pss":
        cert, private = _rsa_pss_certificate()
    else:
        if kind == "ecdsa-p256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif kind == "ecdsa-p384":
            private = ec.generate_private_key(ec.SECP384R1())
        elif kind == "rsa-2048":
            private = rsa.generate_private_key(65537, 2048)
        elif kind == "ed25519":
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(kind)
        cert = _issue(private.public_key(), HOSTNAME)
    d = pki().directory
    chain_path = d / f"{kind}.pem"
    key_path = d / f"{kind}.key"
    chain_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return CertifiedKey(chain=(cert,), key=LocalKey(private)), private, chain_path, key_path


def client_identity() -> tuple[Path, Path]:
    """A client certificate (for client-auth tests) signed by the test CA: (cert path, key path)."""
    d = pki().directory
    cert_path, key_path = d / "client.pem", d / "client.key"
    if not cert_path.exists():
        private = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(private.public_key(), "test client", client=True)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return cert_path, key_path


def server_config(kind: str = "ecdsa-p256", **overrides: Any) -> ServerConfig:
    certified = site(kind)[0]
    return ServerConfig(certificate_callback=static_certificate(certified), **overrides)


def client_context(**kwargs: Any) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki().ca_pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    for name, value in kwargs.items():
        setattr(ctx, name, value)
    return ctx


@dataclass
class Exchange:
    """Our engine and one in-memory Python ssl client, with the events the engine produced."""

    conn: TLSServerConnection
    client: ssl.SSLObject
    to_client: ssl.MemoryBIO
    to_server: ssl.MemoryBIO
    events: list[Event] = field(default_factory=list)
    key_operations: int = 0

    def server_step(self) -> None:
        """Feed what the client wrote, drain events (answering key operations), pass bytes back."""
        data = self.to_server.read()
        if data:
            self.conn.receive_data(data)
        for _ in range(1000):
            event = self.conn.next_event()
            if event is NEED_DATA:
                break
            self.events.append(event)
            if isinstance(event, KeyOperationRequired):
                self.key_operations += 1
                self.conn.complete_key_operation(event.op_id, self.answer_key_operation(event))
            if isinstance(event, ConnectionClosed):
                break
        out = self.conn.data_to_send()
        if out:
            self.to_client.write(out)

    def answer_key_operation(self, event: KeyOperationRequired) -> bytes | BaseException:
        """Sign with the local key (a failure here is the test's failure)."""
        assert event.scheme is not None
        signature: bytes = event.key.sign_sync(event.scheme, event.data)  # type: ignore[attr-defined]
        return signature

    def handshake(self, max_rounds: int = 20) -> None:
        for _ in range(max_rounds):
            try:
                self.client.do_handshake()
            except ssl.SSLWantReadError:
                pass
            self.server_step()
            if any(isinstance(e, ConnectionClosed) for e in self.events):
                raise AssertionError(f"server closed the connection: {self.events[-1]!r}")
            if self.client_done() and self.conn.handshake_complete:
                return
        raise AssertionError("handshake did not finish")

    def client_done(self) -> bool:
        try:
            self.client.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def client_read(self, max_rounds: int = 20) -> bytes:
        for _ in range(max_rounds):
            try:
                return self.client.read(65536)
            except ssl.SSLWantReadError:
                self.server_step()
        raise AssertionError("client read nothing")

    def client_write(self, data: bytes) -> None:
        self.client.write(data)
        self.server_step()


def exchange(config: ServerConfig, ctx: ssl.SSLContext | None = None, session: Any = None,
             server_hostname: str | None = HOSTNAME) -> Exchange:
    ctx = ctx or client_context()
    to_client, to_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(to_client, to_server, server_hostname=server_hostname, session=session)
    return Exchange(TLSServerConnection(config), client, to_client, to_server)
