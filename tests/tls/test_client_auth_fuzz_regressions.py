"""Inputs the fuzzing campaign (tests/fuzz, target tls_messages) found in client-certificate checking."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.client_auth import verify_client_certificate
from keyless.tls.tls12_messages import parse_client_certificate
from tests.fuzz import keys
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


REGRESSIONS = Path(__file__).resolve().parents[1] / "fuzz" / "regressions" / "tls_messages"


@pytest.mark.parametrize("name", ["bad-subject-unexpected-tag", "bad-subject-invalid-value"])
def test_a_certificate_whose_subject_does_not_parse_is_bad_certificate(name: str) -> None:
    # The certificate loads (cryptography parses lazily) but the verifier's parse of the subject raises
    # ValueError, which escaped as an internal_error alert and a "bug" log line instead of bad_certificate.
    data = (REGRESSIONS / name).read_bytes()
    chain = parse_client_certificate(data[1:])  # the fuzz input: selector byte, then a TLS 1.2 Certificate body
    with pytest.raises(TLSAlert) as raised:
        verify_client_certificate(chain, [keys.fuzz_ca()[0]], keys.FIXED_NOW)
    assert raised.value.description == AlertDescription.bad_certificate


@pytest.mark.parametrize("forge", ["version", "subject"])
def test_the_tls13_engine_answers_a_forged_client_certificate_with_bad_certificate(forge: str) -> None:
    # End to end through the engine (the fuzz harness plays the client and seals its flight under the keys the
    # server installs): before the fix both certificates ended in internal_error and a "bug:" log line.
    from keyless.tls.codec import handshake_message
    from tests.fuzz.fuzz_tls_engine import peer_outcome

    leaf = keys.fuzz_ca()[2]
    if forge == "version":
        leaf = leaf.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x12", 1)
    else:
        leaf = parse_client_certificate((REGRESSIONS / "bad-subject-unexpected-tag").read_bytes()[1:])[0]
    entries = len(leaf).to_bytes(3, "big") + leaf + b"\x00\x00"
    certificate = handshake_message(11, b"\x00" + len(entries).to_bytes(3, "big") + entries)
    hello = (Path(__file__).resolve().parents[1] / "fuzz" / "data" / "hellos" / "python.bin").read_bytes()
    record = b"\x16\x03\x01" + len(hello).to_bytes(2, "big") + hello
    program = b"\x00" + len(certificate).to_bytes(2, "big") + certificate
    events = peer_outcome(13, 2, len(record).to_bytes(2, "big") + record + program)  # variant 2: client auth
    assert events[-2:] == ["ConnectionClosed", AlertDescription.bad_certificate], events
