"""Checks of TLS files named in a configuration: a chain leaf first, a key that belongs to its certificate,
a CA bundle, and certificates in their validity period.

Each function raises ``MaterialProblem(problem, fix)``; the caller knows the key that named the file and
turns it into a ``ConfigError``. Nothing here puts key material in a message: a key file is described by
its path and by what kind of PEM block it holds.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from keyless.runtime.errors import ConfigError, MaterialProblem

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MaterialProblem(f"cannot read {str(path)!r} ({exc.strerror})", "check the path and its permissions") \
            from None


def read_certificates(path: Path) -> list[x509.Certificate]:
    data = _read_bytes(path)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        hint = " (it holds a private key)" if b"PRIVATE KEY-----" in data else ""
        raise MaterialProblem(f"{str(path)!r} holds no PEM certificate{hint}",
                              "give a PEM file with -----BEGIN CERTIFICATE----- blocks") from None
    return certificates


def _describe(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def read_chain(path: Path) -> list[x509.Certificate]:
    """A certificate chain as a TLS server sends it: the leaf, then each certificate's issuer."""
    chain = read_certificates(path)
    for index in range(len(chain) - 1):
        if _issued_by(chain[index], chain[index + 1]):
            continue
        upper, lower = chain[index + 1], chain[index]
        if _issued_by(upper, lower):
            problem = (f"{str(path)!r} is in the wrong order: certificate {index + 1} ({_describe(lower)}) "
                       f"issued certificate {index + 2} ({_describe(upper)}), which must come before it")
        else:
            problem = (f"{str(path)!r} is not a chain: certificate {index + 2} ({_describe(upper)}) did not "
                       f"issue certificate {index + 1} ({_describe(lower)})")
        raise MaterialProblem(problem, "put the leaf certificate first, then its issuer, then that one's issuer "
                                       "(e.g. cat leaf.pem intermediate.pem > chain.pem)")
    return chain


def read_private_key(path: Path) -> PrivateKeyTypes:
    data = _read_bytes(path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise MaterialProblem(f"{str(path)!r} is an encrypted private key",
                              "store the key unencrypted, readable only by the daemon's user") from None
    except (ValueError, UnsupportedAlgorithm):
        pass
    if b"-----BEGIN CERTIFICATE-----" in data:
        raise MaterialProblem(f"{str(path)!r} holds a certificate, not a private key",
                              "point this key at the private key file (-----BEGIN PRIVATE KEY-----)")
    raise MaterialProblem(f"{str(path)!r} holds no PEM private key",
                          "give an unencrypted PEM private key (PKCS#8 or traditional)")


def check_key_matches(key: PrivateKeyTypes, leaf: x509.Certificate, cert_key: str) -> None:
    if key.public_key().public_bytes(*_SPKI) != leaf.public_key().public_bytes(*_SPKI):
        raise MaterialProblem(f"the private key does not belong to the certificate in {cert_key} "
                              f"({_describe(leaf)})", f"give the key that was issued with {cert_key}'s certificate")


def read_ca_bundle(path: Path) -> list[x509.Certificate]:
    certificates = read_certificates(path)
    if not certificates:
        raise MaterialProblem(f"{str(path)!r} holds no certificate", "give the PEM file of the CA certificate(s)")
    return certificates


def check_tls_files(cert: Path, key: Path, ca: Path, names: tuple[str, str, str],
                    file: Path | None) -> list[ConfigError]:
    """A daemon's mutual-TLS files as start-up loads them — certificate chain, its private key (which must
    belong to the leaf), CA bundle — each problem blamed on its key (``names``: the keys of the three)."""
    cert_key, key_key, ca_key = names
    problems: list[ConfigError] = []
    leaf = None
    try:
        leaf = read_chain(cert)[0]
    except MaterialProblem as exc:
        problems.append(exc.at(cert_key, file))
    try:
        private = read_private_key(key)
        if leaf is not None:
            check_key_matches(private, leaf, cert_key)
    except MaterialProblem as exc:
        problems.append(exc.at(key_key, file))
    try:
        read_ca_bundle(ca)
    except MaterialProblem as exc:
        problems.append(exc.at(ca_key, file))
    return problems


def validity_problem(cert: x509.Certificate, now: datetime.datetime | None = None) -> str | None:
    """Why ``cert`` is not valid now (expired, not yet valid), or None."""
    moment = now or datetime.datetime.now(datetime.UTC)
    if moment > cert.not_valid_after_utc:
        return f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if moment < cert.not_valid_before_utc:
        return f"is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    return None


__all__ = ["check_key_matches", "check_tls_files", "read_ca_bundle", "read_certificates", "read_chain",
           "read_private_key", "validity_problem"]
