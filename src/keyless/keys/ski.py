"""The Subject Key Identifier that selects a key in a keyless request.

SHA-1 over the contents of the subjectPublicKey BIT STRING (RFC 5280 section 4.2.1.2, method 1),
always computed from the key itself and never read from a certificate's SKI extension, which
CAs fill by other methods.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes


def ski_of(public_key: CertificatePublicKeyTypes) -> bytes:
    """The 20-byte SKI of ``public_key``."""
    return x509.SubjectKeyIdentifier.from_public_key(public_key).digest

