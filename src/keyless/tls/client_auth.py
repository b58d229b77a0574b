"""Client-certificate authentication for the TLS 1.3 and 1.2 servers (RFC 8446 §4.4.2.4, §4.4.3; RFC 5246 §7.4.8)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from keyless.keys.schemes import SignatureScheme, is_pss, scheme_hash, scheme_key_kind
from keyless.tls.alerts import AlertDescription, TLSAlert

MAX_CLIENT_CHAIN = 8


def verify_client_certificate(chain_der: Sequence[bytes], trusted: Sequence[x509.Certificate], now: float) -> None:
    """The client's chain must lead to one of ``trusted`` and be valid for client authentication now."""
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
        .max_chain_depth(MAX_CLIENT_CHAIN)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verifier.verify(certs[0], certs[1:])
    except (VerificationError, ValueError) as exc:  # ValueError: a field cryptography parses only now
        raise TLSAlert(AlertDescription.bad_certificate, "client certificate does not verify") from exc


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
