"""Inputs the fuzzing campaign (tests/fuzz, target tls_messages) found in client-certificate checking."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.client_auth import verify_client_certificate
from tests.tls.tls13_helpers import client_identity, pki


def test_a_certificate_with_an_invalid_version_is_bad_certificate() -> None:
    # cryptography raises x509.InvalidVersion (not a ValueError) for version 18; the engine turned that into an
    # internal_error alert and a "bug" log line instead of bad_certificate.
    cert_path, _ = client_identity()
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    version_v3 = b"\xa0\x03\x02\x01\x02"
    assert version_v3 in der
    forged = der.replace(version_v3, b"\xa0\x03\x02\x01\x12", 1)
    try:
        verify_client_certificate([forged], [pki().ca_cert], 1_800_000_000.0)
    except TLSAlert as alert:
        assert alert.description == AlertDescription.bad_certificate
    else:
        raise AssertionError("a certificate with version 18 was accepted")
