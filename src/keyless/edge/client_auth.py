"""Client certificates on the edge (mTLS termination), per site, as nginx's ``ssl_verify_client``.

One optional section per ``certificates`` entry::

    client_auth:
      mode: required          # none | optional | required     (nginx ssl_verify_client off | optional | on)
      ca: clients-ca.pem      # PEM, the CAs client chains must lead to   (ssl_client_certificate)
      depth: 1                # intermediates allowed below them, 0..7    (ssl_verify_depth, default 1)
      forward: X-Client-Cert- # prefix of the identity headers sent to the origin (default shown)

The TLS engine asks for and verifies the certificate (``keyless.tls.client_auth``: chain, dates, key usage,
the CertificateVerify signature); nothing of it reaches a key server. This module parses the section (a
bad value is a ``ConfigError`` naming the key and the fix), and turns a verified chain into the headers the
origin gets. Headers under any configured prefix (and the default one) that a client sends are always
removed first, whatever the site: a client cannot forge an identity.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from keyless.runtime.errors import ConfigError, MaterialProblem
from keyless.runtime.tls_material import read_ca_bundle

MODES = ("none", "optional", "required")
DEFAULT_FORWARD = "X-Client-Cert-"
DEFAULT_DEPTH = 1  # nginx's ssl_verify_depth default: the client's CA, or one intermediate below it
MAX_DEPTH = 7  # keyless.tls.client_auth.MAX_CLIENT_DEPTH: a client may send at most 8 certificates
_ALLOWED_KEYS = {"mode", "ca", "forward", "depth"}
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# A prefix that would swallow one of these would break the proxying itself.
_ESSENTIAL_HEADERS = (
    "host", "content-length", "content-type", "transfer-encoding", "connection", "forwarded",
    "x-forwarded-for", "x-forwarded-proto", "authorization", "cookie", "user-agent", "accept",
)


@dataclass(frozen=True)
class ClientAuthConfig:
    """One site's client authentication: equal values mean the same policy (sites sharing names must agree)."""

    mode: str = "none"
    ca: Path | None = None
    ca_der: tuple[bytes, ...] = field(default=(), repr=False)  # plain data, checked when parsed
    forward: str = DEFAULT_FORWARD
    depth: int = DEFAULT_DEPTH

    @functools.cached_property
    def ca_certificates(self) -> tuple[x509.Certificate, ...]:
        return tuple(x509.load_der_x509_certificate(der) for der in self.ca_der)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("ca_certificates", None)  # the parsed cache (not picklable): made again from ca_der
        return state

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def required(self) -> bool:
        return self.mode == "required"


NO_CLIENT_AUTH = ClientAuthConfig()


def parse_client_auth(value: object, key: str, base: Path) -> ClientAuthConfig | None:
    """The ``client_auth`` section of one certificate entry (``key`` names it in errors); None if absent."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(
            key, f"must be a mapping, not {type(value).__name__}", "write client_auth: {mode: ..., ca: ...}"
        )
    unknown = sorted(str(k) for k in value if k not in _ALLOWED_KEYS)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "unknown key", f"use one of: {', '.join(sorted(_ALLOWED_KEYS))}")
    mode = _mode(value.get("mode"), f"{key}.mode")
    ca_path: Path | None = None
    certificates: tuple[x509.Certificate, ...] = ()
    if "ca" in value or mode != "none":
        ca_path = _ca_file(value.get("ca"), f"{key}.ca", base)
        certificates = load_ca_certificates(ca_path, f"{key}.ca")
    return ClientAuthConfig(
        mode=mode,
        ca=ca_path,
        ca_der=tuple(certificate.public_bytes(Encoding.DER) for certificate in certificates),
        forward=_forward(value.get("forward", DEFAULT_FORWARD), f"{key}.forward"),
        depth=_depth(value.get("depth", DEFAULT_DEPTH), f"{key}.depth"),
    )


def _mode(value: object, key: str) -> str:
    fix = "use none, optional or required (nginx ssl_verify_client off, optional, on)"
    if value is None:
        raise ConfigError(key, "missing", fix)
    if isinstance(value, bool):  # YAML reads a bare on/off/yes/no as a boolean
        raise ConfigError(key, f"{value!r} is not a mode (YAML read on/off as a boolean)", fix)
    if value not in MODES:
        raise ConfigError(key, f"unknown mode {value!r}", fix)
    return str(value)


def _ca_file(value: object, key: str, base: Path) -> Path:
    if value is None:
        raise ConfigError(key, "missing", "give the PEM file of the CA(s) that sign client certificates")
    if not isinstance(value, str) or not value:
        raise ConfigError(key, "must be a file path", "give the path as a string")
    path = Path(value)
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise ConfigError(
            key, f"file {str(path)!r} does not exist", "check the path (relative paths start at the config file)"
        )
    return path


def load_ca_certificates(path: Path, key: str) -> tuple[x509.Certificate, ...]:
    try:
        certificates = read_ca_bundle(path)
    except MaterialProblem as exc:
        raise exc.at(key) from None
    for certificate in certificates:
        try:
            is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise ConfigError(
                key,
                f"{certificate.subject.rfc4514_string()!r} is not a CA certificate (no basicConstraints CA:TRUE)",
                "give the CA that signs the client certificates, not a client certificate",
            )
    return tuple(certificates)


def _forward(value: object, key: str) -> str:
    fix = f"write a header-name prefix such as {DEFAULT_FORWARD}"
    if not isinstance(value, str) or not 2 <= len(value) <= 64 or not set(value) <= _TOKEN:
        raise ConfigError(key, f"{value!r} is not a header-name prefix (2..64 token characters)", fix)
    lowered = value.lower()
    swallowed = [name for name in _ESSENTIAL_HEADERS if name.startswith(lowered)]
    if swallowed:
        raise ConfigError(key, f"{value!r} would also remove the {swallowed[0]} header", fix)
    return value


def _depth(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DEPTH:
        raise ConfigError(
            key, f"{value!r} is not an integer in 0..{MAX_DEPTH}", "give the intermediates allowed (nginx default 1)"
        )
    return value


def check_shared_names(policies: Sequence[tuple[Sequence[str], ClientAuthConfig]]) -> None:
    """Certificates sharing a name serve one site: their client authentication must be the same, or which
    one applied would depend on the certificate the client's algorithms happened to pick."""
    first_for_name: dict[str, int] = {}
    for index, (names, policy) in enumerate(policies):
        for name in names:
            other = first_for_name.setdefault(name, index)
            if other != index and policies[other][1] != policy:
                raise ConfigError(
                    f"certificates[{index}].client_auth",
                    f"differs from certificates[{other}].client_auth although both serve {name}",
                    "give every certificate of the same names the same client_auth section",
                )


def anchored(policy: ClientAuthConfig, chain: Sequence[bytes]) -> bool:
    """Whether a chain verified earlier (a resumed session's) still hangs off one of ``policy``'s CAs: one
    certificate of it issued and signed by one of them. Not a new verification (dates and usage were checked
    when the session was made); the binding nginx gets from its session context, so that replacing a site's
    ``ca`` also ends the sessions its old CA's clients could resume."""
    try:
        certificates = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError:
        return False
    for certificate in certificates:
        for ca in policy.ca_certificates:
            if certificate.issuer != ca.subject:
                continue
            try:
                certificate.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return True
    return False


# --- the identity the origin gets ------------------------------------------------------------------


def strip_prefixes(policies: Sequence[ClientAuthConfig]) -> tuple[bytes, ...]:
    """Every identity-header prefix in use, and the default one, lower-cased (h11 lower-cases names)."""
    return tuple(sorted({DEFAULT_FORWARD.lower().encode()} | {p.forward.lower().encode() for p in policies}))


def identity_headers(policy: ClientAuthConfig, chain: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """The headers for the origin: ``<prefix>Verify`` SUCCESS or NONE, and for a verified chain the leaf's
    ``Subject`` (RFC 4514), ``SAN`` (comma-separated ``DNS:``/``email:``/``URI:``/``IP:`` entries) and
    ``Fingerprint`` (SHA-256 of the DER, hex). Values outside printable ASCII are percent-encoded."""
    if not policy.enabled:
        return []
    prefix = policy.forward.lower().encode()
    if not chain:
        return [(prefix + b"verify", b"NONE")]
    leaf_der = chain[0]
    leaf = x509.load_der_x509_certificate(leaf_der)
    return [
        (prefix + b"verify", b"SUCCESS"),
        (prefix + b"subject", _header_value(leaf.subject.rfc4514_string())),
        (prefix + b"san", _header_value(", ".join(_subject_alt_names(leaf)))),
        (prefix + b"fingerprint", hashlib.sha256(leaf_der).hexdigest().encode()),
    ]


def _subject_alt_names(leaf: x509.Certificate) -> list[str]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    entries: list[str] = []
    kinds: tuple[tuple[str, Any], ...] = (
        ("DNS", x509.DNSName), ("email", x509.RFC822Name), ("URI", x509.UniformResourceIdentifier),
        ("IP", x509.IPAddress),
    )
    for label, kind in kinds:
        entries.extend(f"{label}:{value}" for value in san.get_values_for_type(kind))
    return entries


def _header_value(text: str) -> bytes:
    """Printable ASCII as is (but %), everything else percent-encoded UTF-8: no CR/LF or NUL can reach a header."""
    out = bytearray()
    for byte in text.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


__all__ = [
    "DEFAULT_FORWARD",
    "MODES",
    "NO_CLIENT_AUTH",
    "ClientAuthConfig",
    "anchored",
    "check_shared_names",
    "identity_headers",
    "parse_client_auth",
    "strip_prefixes",
]
