"""A key server whose certificate expired, or was replaced by one the edge's CA did not issue: the
client's error, and the health check's log line, name the certificate and its dates (issue 18)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyless.client import ConnectFailed, KeylessClient, make_ssl_context
from keyless.pki import DemoPKI, write_private_key
from tests.support.keyserver import start_keyserver
from tests.support.waiting import async_wait_until

DAY = datetime.timedelta(days=1)


def issue(pki: DemoPKI, tmp_path: Path, *, expired: bool, own_ca: bool) -> tuple[Path, Path, str]:
    """A key-server certificate like the demo one (same names), expired or from an unknown CA."""
    template = x509.load_pem_x509_certificate(pki.keyserver_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    if own_ca:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone else's CA")])
    else:
        loaded = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        ca_key = loaded
        issuer = x509.load_pem_x509_certificate(pki.ca.read_bytes()).subject
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = (now - 30 * DAY, now - DAY) if expired else (now - DAY, now + 30 * DAY)
    name = "replaced key server" if own_ca else "old key server"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after))
    san = template.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    builder = builder.add_extension(san.value, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = tmp_path / "ks-cert.pem", tmp_path / "ks-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private_key(key_path, key)  # mode 0600: the key server refuses a key others can read
    return cert_path, key_path, f"{not_after:%Y-%m-%d %H:%M:%S}"


@pytest.mark.parametrize(("expired", "own_ca", "subject", "state"), [
    (True, False, "CN=old key server", "EXPIRED since"),
    (False, True, "CN=replaced key server", "within its dates"),
])
def test_a_bad_key_server_certificate_is_named_with_its_dates(
    fault_pki: DemoPKI, tmp_path: Path, caplog: pytest.LogCaptureFixture, expired: bool, own_ca: bool,
    subject: str, state: str,
) -> None:
    cert_path, key_path, not_after = issue(fault_pki, tmp_path, expired=expired, own_ca=own_ca)
    caplog.set_level(logging.WARNING, logger="keyless.client")
    with start_keyserver(fault_pki, tmp_path, auth_cert=str(cert_path), auth_key=str(key_path)) as server:
        async def main() -> object:
            context = make_ssl_context(fault_pki.edge_cert, fault_pki.edge_key, fault_pki.ca)
            async with KeylessClient([f"127.0.0.1:{server.port}"], context, server_name="localhost",
                                     health_interval=0.05, timeout=30) as client:
                result = (await client.ping())[f"127.0.0.1:{server.port}"]
                await async_wait_until(lambda: "failed its health check" in caplog.text, "the health check's line")
                return result

        result = asyncio.run(main())
    assert isinstance(result, ConnectFailed)
    for text in (str(result), caplog.text):
        assert "CERTIFICATE_VERIFY_FAILED" in text
        assert subject in text and state in text and f"to {not_after} UTC" in text
    assert "PRIVATE" not in caplog.text
