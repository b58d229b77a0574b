"""Client-certificate authentication for the TLS 1.3 and 1.2 servers (RFC 8446 §4.4.2.4, §4.4.3; RFC 5246 §7.4.8)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from keyless.keys.schemes import SignatureScheme, is_pss, scheme_hash, scheme_key_kind
from keyless.tls.alerts import AlertDescription, TLSAlert

MAX_CLIENT_CHAIN = 8  # certificates a client may send
MAX_CLIENT_DEPTH = MAX_CLIENT_CHAIN - 1  # intermediates between its leaf and a trusted CA


def verify_client_certificate(
    chain_der: Sequence[bytes], trusted: Sequence[x509.Certificate], now: float, max_depth: int = MAX_CLIENT_DEPTH
) -> None:
    """The client's chain must lead to one of ``trusted`` through at most ``max_depth`` intermediates (OpenSSL's
    and nginx's verify depth) and be valid for client authentication now.

    The alert says why, as OpenSSL's ``ssl_verify_alarm_type`` does: certificate_expired (the leaf or an
    intermediate is past its notAfter), unknown_ca (no certificate leads to a trusted CA, a self-signed leaf
    included), unsupported_certificate (no clientAuth extended key usage, or a key usage without
    digitalSignature), bad_certificate (anything else: not yet valid, too deep, a bad signature in the chain).
    """
    if len(chain_der) > MAX_CLIENT_CHAIN:
        raise TLSAlert(AlertDescription.bad_certificate, "client chain too long")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain_der]
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is not a ValueError
        raise TLSAlert(AlertDescription.bad_certificate, "unparsable client certificate") from exc
    if not trusted:
        raise TLSAlert(AlertDescription.unknown_ca, "no client CA configured")
    when = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
    # Client certificates often carry no subjectAltName (the web-PKI default requires one): allow that.
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(list(trusted)))
        .time(when)
        .max_chain_depth(max(0, min(max_depth, MAX_CLIENT_DEPTH)))
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verifier.verify(certs[0], certs[1:])
    except VerificationError as exc:
        try:
            alert = _failure_alert(certs, trusted, when)
        except Exception:  # a name or extension cryptography parses only now (found by fuzzing): no finer reason
            alert = AlertDescription.bad_certificate
        raise TLSAlert(alert, "client certificate does not verify") from exc
    except (ValueError, TypeError) as exc:  # a field cryptography parses only now (found by fuzzing)
        raise TLSAlert(AlertDescription.bad_certificate, "client certificate does not parse") from exc


def _failure_alert(
    certs: Sequence[x509.Certificate], trusted: Sequence[x509.Certificate], when: datetime.datetime
) -> AlertDescription:
    """Why a chain did not verify, for the alert (the verifier's own error is text, not a reason code)."""
    trusted_subjects = {ca.subject for ca in trusted}
    trusted_der = {ca.public_bytes(Encoding.DER) for ca in trusted}
    if not any(c.issuer in trusted_subjects or c.public_bytes(Encoding.DER) in trusted_der for c in certs):
        return AlertDescription.unknown_ca
    if any(when > c.not_valid_after_utc for c in certs):
        return AlertDescription.certificate_expired
    if not _usable_for_client_auth(certs[0]):
        return AlertDescription.unsupported_certificate
    return AlertDescription.bad_certificate


def _usable_for_client_auth(leaf: x509.Certificate) -> bool:
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
            return False
    except x509.ExtensionNotFound:
        pass
    try:
        return bool(leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature)
    except x509.ExtensionNotFound:
        return True


def verify_client_signature(
    leaf_der: bytes, scheme: int, signature: bytes, signed: bytes, *, allow_pkcs1: bool = False
) -> None:
    """Check a client CertificateVerify; any failure is decrypt_error (§4.4.3).

    RSA schemes verify as RSASSA-PSS unless ``allow_pkcs1`` (TLS 1.2 only: RFC 8446 §4.4.3 forbids PKCS#1 v1.5
    in TLS 1.3), where a non-PSS RSA scheme verifies as RSASSA-PKCS1-v1_5."""
    try:
        public = x509.load_der_x509_certificate(leaf_der).public_key()
        sig_scheme = SignatureScheme(scheme)
        algorithm = scheme_hash(sig_scheme)
        kind = scheme_key_kind(sig_scheme)
        if isinstance(public, ed25519.Ed25519PublicKey) and sig_scheme == SignatureScheme.ED25519:
            public.verify(signature, signed)
        elif isinstance(public, ec.EllipticCurvePublicKey) and kind.name == "ECDSA" and algorithm is not None:
            public.verify(signature, signed, ec.ECDSA(algorithm))
        elif isinstance(public, rsa.RSAPublicKey) and algorithm is not None and kind.name == "RSA":
            rsa_padding: padding.AsymmetricPadding
            if allow_pkcs1 and not is_pss(sig_scheme):
                rsa_padding = padding.PKCS1v15()
            else:
                rsa_padding = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
            public.verify(signature, signed, rsa_padding, algorithm)
        else:
            raise TLSAlert(AlertDescription.illegal_parameter, "signature scheme does not match the certificate")
    except (InvalidSignature, ValueError, UnsupportedAlgorithm) as exc:
        raise TLSAlert(AlertDescription.decrypt_error, "client CertificateVerify does not verify") from exc
