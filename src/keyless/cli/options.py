"""Options shared by ``keyless ping`` and ``keyless bench``: which key servers, the mutual-TLS files,
and the public keys to test.

``--pki DIR`` (a directory made by ``keyless pki init DIR``) stands for ``--ca DIR/ca.pem --cert
DIR/edge.pem --key DIR/edge-key.pem`` and, for ``ping``, ``--keys DIR/certs``; explicit options win.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from keyless.keys.mldsa import MLDSA_PUBLIC_TYPES
from keyless.keys.schemes import SignatureScheme, mldsa_scheme_of


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("key server")
    group.add_argument("-s", "--server", action="append", default=[], metavar="HOST[:PORT]",
                       help="key server address (repeatable; a name resolving to several addresses gives several "
                            "servers; port default 2407)")
    group.add_argument("--pki", metavar="DIR", help="a `keyless pki init` directory: default for --ca/--cert/--key")
    group.add_argument("--ca", metavar="FILE", help="CA certificate(s) that signed the key server's certificate")
    group.add_argument("--cert", metavar="FILE", help="our client certificate (PEM)")
    group.add_argument("--key", metavar="FILE", help="our client certificate's private key (PEM)")
    group.add_argument("--server-name", metavar="NAME",
                       help="name to verify in the key server's certificate (default: the host given)")
    group.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                       help="per-operation timeout (default 10)")


class UsageError(Exception):
    """A bad or missing option; the message says which and what to do."""


def tls_files(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """(ca, client cert, client key) from the options, or ``UsageError``."""
    pki = Path(args.pki) if args.pki else None
    ca = Path(args.ca) if args.ca else (pki / "ca.pem" if pki else None)
    cert = Path(args.cert) if args.cert else (pki / "edge.pem" if pki else None)
    key = Path(args.key) if args.key else (pki / "edge-key.pem" if pki else None)
    if ca is None or cert is None or key is None:
        raise UsageError("give --pki DIR, or all of --ca, --cert and --key")
    for label, path in (("--ca", ca), ("--cert", cert), ("--key", key)):
        if not path.is_file():
            raise UsageError(f"{label} {path}: no such file")
    return ca, cert, key


def servers(args: argparse.Namespace) -> list[str]:
    if not args.server:
        raise UsageError("give at least one --server HOST[:PORT]")
    return list(args.server)


def format_ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def load_public_key(data: bytes) -> CertificatePublicKeyTypes:
    """The public key of a PEM certificate, or a PEM public key; ``ValueError`` for anything else."""
    try:
        return x509.load_pem_x509_certificate(data).public_key()
    except ValueError:
        public = serialization.load_pem_public_key(data)
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | MLDSA_PUBLIC_TYPES):
        raise ValueError(f"keyless supports RSA, ECDSA, Ed25519 and ML-DSA keys, not {type(public).__name__}")
    return public


def scheme_for(public: CertificatePublicKeyTypes) -> SignatureScheme:
    """The signature scheme a TLS 1.3 server would use with this key (RSA: PSS; ECDSA: the curve's; ML-DSA:
    its parameter set's)."""
    mldsa = mldsa_scheme_of(public)
    if mldsa is not None:
        return mldsa
    if isinstance(public, rsa.RSAPublicKey):
        return SignatureScheme.RSA_PSS_RSAE_SHA256
    if isinstance(public, ec.EllipticCurvePublicKey):
        return {
            "secp384r1": SignatureScheme.ECDSA_SECP384R1_SHA384,
            "secp521r1": SignatureScheme.ECDSA_SECP521R1_SHA512,
        }.get(public.curve.name, SignatureScheme.ECDSA_SECP256R1_SHA256)
    return SignatureScheme.ED25519


__all__ = ["UsageError", "add_connection_arguments", "format_ms", "load_public_key", "scheme_for", "servers",
           "tls_files"]
