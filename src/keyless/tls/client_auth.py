"""Client-certificate authentication for the TLS 1.3 server (RFC 8446 §4.4.2.4, §4.4.3)."""

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

from keyless.keys.schemes import SignatureScheme, scheme_hash, scheme_key_kind
from keyless.tls.alerts import AlertDescription, TLSAlert

MAX_CLIENT_CHAIN = 8


def verify_client_certificate(chain_der: Sequence[bytes], trusted: Sequence[x509.Certificate], now: float) -> None:
    """The client's chain must lead to one of ``trusted`` and be valid for client authentication now."""
    if len(chain_der) > MAX_CLIENT_CHAIN:
        raise TLSAlert(AlertDescription.bad_certificate, "client chain too long")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError as exc:
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
    except VerificationError as exc:
        raise TLSAlert(AlertDescription.bad_certificate, "client certificate does not verify") from exc


def verify_client_signature(leaf_der: bytes, scheme: int, signature: bytes, signed: bytes) -> None:
    """Check a client CertificateVerify; any failure is decrypt_error (§4.4.3)."""
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
            pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
            public.verify(signature, signed, pss, algorithm)
        else:
            raise TLSAlert(AlertDescription.illegal_parameter, "signature scheme does not match the certificate")
    except (InvalidSignature, ValueError, UnsupportedAlgorithm) as exc:
        raise TLSAlert(AlertDescription.decrypt_error, "client CertificateVerify does not verify") from exc
