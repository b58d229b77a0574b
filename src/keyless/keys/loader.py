"""Load private keys from files and directories into a key store.

Accepted: PEM or DER; PKCS#1 (``RSA PRIVATE KEY``), SEC1 (``EC PRIVATE KEY``) and PKCS#8
(``PRIVATE KEY``); RSA of at least 2048 bits, ECDSA on P-256/P-384/P-521, Ed25519, and ML-DSA-44/65/87
(PKCS#8 only, the one format FIPS 204 keys come in; signed by external μ, ``keyless.keys.mldsa``). A PEM file may
hold several blocks (``openssl ecparam -genkey`` writes ``EC PARAMETERS`` first; some tools put the
certificate next to the key): every private-key block is loaded, other blocks are ignored.

A file that cannot be used (unreadable, encrypted, corrupt, unsupported algorithm, readable or
writable by others, reached through a symlink out of its key directory) is reported by path and
skipped; with ``strict`` the first such problem stops loading. Files that are clearly not keys
(certificates, public keys, CSRs) are skipped quietly: key directories often hold them.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keyless.keys.mldsa import MLDSA_PRIVATE_TYPES
from keyless.keys.operations import PrivateKey
from keyless.keys.permissions import UnsafeKeyFile, check_key_file, directory_problems
from keyless.keys.pkcs11_uri import Pkcs11Uri
from keyless.keys.store import InMemoryKeyStore, KeyHandle, LocalKeyHandle

log = logging.getLogger(__name__)

MIN_RSA_BITS = 2048
SUPPORTED_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_PRIVATE_KEY_LABELS = frozenset({b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY"})
_NOT_KEY_LABELS = frozenset(
    {b"CERTIFICATE", b"TRUSTED CERTIFICATE", b"PUBLIC KEY", b"RSA PUBLIC KEY", b"CERTIFICATE REQUEST",
     b"NEW CERTIFICATE REQUEST", b"EC PARAMETERS", b"X509 CRL"}
)


class KeyLoadError(Exception):
    """A key file that cannot be used; the message names the path and why, never key bytes."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class NotAKeyFile(Exception):
    """The file holds no private key (a certificate, a public key...): skipped without complaint."""


@dataclass(frozen=True, slots=True)
class KeySource:
    """One configured place to load keys from: ``kind`` is ``"dir"``, ``"file"`` or ``"uri"`` (a
    PKCS#11 token: ``uri`` holds the parsed URI, ``path`` the module)."""

    kind: str
    path: Path
    uri: Pkcs11Uri | None = None


@dataclass(slots=True)
class LoadReport:
    store: InMemoryKeyStore
    problems: list[KeyLoadError] = field(default_factory=list)
    seconds: float = 0.0


def check_supported(key: object, path: str) -> PrivateKey:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyLoadError(path, f"RSA-{key.key_size} is too short (at least {MIN_RSA_BITS} bits)")
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in SUPPORTED_CURVES:
            raise KeyLoadError(path, f"unsupported curve {key.curve.name} (P-256, P-384 or P-521)")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey | MLDSA_PRIVATE_TYPES):
        return key
    raise KeyLoadError(path, f"unsupported key type {type(key).__name__} (RSA, ECDSA, Ed25519 or ML-DSA)")


def _load_pem(data: bytes, path: str) -> list[PrivateKey]:
    keys: list[PrivateKey] = []
    saw_block = False
    for match in _PEM_BLOCK.finditer(data):
        saw_block = True
        label = match.group(1)
        block = match.group(0)
        if label == b"ENCRYPTED PRIVATE KEY" or (label in _PRIVATE_KEY_LABELS and b"Proc-Type: 4,ENCRYPTED" in block):
            raise KeyLoadError(
                path, "the key is encrypted (keyless needs unencrypted key files: protect them with file permissions)"
            )
        if label in _NOT_KEY_LABELS:
            continue
        if label not in _PRIVATE_KEY_LABELS:
            continue
        try:
            key = serialization.load_pem_private_key(block, password=None)
        except TypeError:
            raise KeyLoadError(path, "the key is encrypted") from None
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyLoadError(path, f"cannot parse the {label.decode()} block: {_short(exc)}") from None
        keys.append(check_supported(key, path))
    if not keys:
        if saw_block:
            raise NotAKeyFile(path)
        raise KeyLoadError(path, "PEM file without any complete PEM block")
    return keys


def _load_der(data: bytes, path: str) -> list[PrivateKey]:
    try:
        key = serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise KeyLoadError(path, "the key is encrypted") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        if _is_der_non_key(data):
            raise NotAKeyFile(path) from None
        raise KeyLoadError(path, f"not a PEM or DER private key ({_short(exc)})") from None
    return [check_supported(key, path)]


def _is_der_non_key(data: bytes) -> bool:
    for attempt in (x509.load_der_x509_certificate, serialization.load_der_public_key, x509.load_der_x509_csr):
        try:
            attempt(data)
            return True
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    return False


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def load_key_file(path: Path) -> list[PrivateKey]:
    """The private keys in one file; raises ``KeyLoadError`` or ``NotAKeyFile``."""
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyLoadError(name, f"cannot read: {exc.strerror or exc}") from None
    if b"-----BEGIN" in data:
        return _load_pem(data, name)
    return _load_der(data, name)


def _files_under(root: Path, *, strict_permissions: bool) -> tuple[list[Path], list[KeyLoadError]]:
    """Regular files below ``root``, recursively, skipping hidden entries, in a stable order; and the
    entries refused on the way.

    Symlinks are followed only while they stay inside ``root``: a link out of it (say, to the key
    server's own ``auth_key``) would make that key signable by every edge, so it is refused. A
    directory reached a second time (a loop such as ``sub/up -> ..``, or an alias) is not entered
    again, so loading always ends. A directory others can write (or own) is refused with its files,
    since they could put any key there (only a warning without ``strict_permissions``).
    """
    base = Path(os.path.realpath(root))
    found: list[Path] = []
    problems: list[KeyLoadError] = []
    entered: set[tuple[int, int]] = set()
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            info = os.stat(directory)
            unsafe = directory_problems(Path(os.path.realpath(directory)))
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as exc:
            problems.append(KeyLoadError(str(directory), f"cannot read the directory: {exc.strerror or exc}"))
            continue
        if (info.st_dev, info.st_ino) in entered:
            log.warning("not entering %s again: it leads to a directory already loaded (a symlink loop or alias)",
                        directory)
            continue
        entered.add((info.st_dev, info.st_ino))
        if unsafe:
            if strict_permissions:
                problems.append(KeyLoadError(str(directory), "key directory refused with every key in it: "
                                             + "; ".join(unsafe) + " (strict_permissions: false only warns)"))
                continue
            log.warning("unsafe key directory (loaded: strict_permissions is off): %s", "; ".join(unsafe))
        subdirectories: list[Path] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                target = Path(os.path.realpath(path))
                if target != base and base not in target.parents:
                    problems.append(KeyLoadError(str(path), f"symlink to {target}, outside the key directory {base}: "
                                                 "not followed (copy the key into the directory, or list the "
                                                 "other directory in private_key_dirs)"))
                    continue
            if path.is_dir():
                subdirectories.append(path)
            elif path.is_file():
                found.append(path)
        pending.extend(reversed(subdirectories))
    return found, problems


def _load_token(uri: Pkcs11Uri, handles: list[KeyHandle]) -> list[KeyLoadError]:
    """Append the keys of a PKCS#11 token to ``handles``; the problems met, named by URI (no PIN)."""
    try:
        from keyless.keys.pkcs11 import Pkcs11LoadError, load_pkcs11_keys
    except ImportError:
        return [KeyLoadError(uri.display, "PKCS#11 support needs python-pkcs11: pip install 'keyless[hsm]'")]
    try:
        found, skipped = load_pkcs11_keys(uri)
    except Pkcs11LoadError as exc:
        return [KeyLoadError(uri.display, str(exc).removeprefix(uri.display + ": "))]
    for handle in found:
        log.info("loaded %s key %s from %s", handle.description, handle.ski.hex(), handle.source)
        handles.append(handle)
    return [KeyLoadError(uri.display, reason) for reason in skipped]


def load_keys(sources: list[KeySource], *, strict: bool = False, strict_permissions: bool = True) -> LoadReport:
    """Load every key of every source; raises the first ``KeyLoadError`` when ``strict``. Key files
    others could read, write or replace are refused (``keyless.keys.permissions``), or only warned
    about without ``strict_permissions``."""
    started = time.perf_counter()
    handles: list[KeyHandle] = []
    problems: list[KeyLoadError] = []

    def problem(error: KeyLoadError) -> None:
        if strict:
            raise error
        log.warning("skipping key file %s: %s", error.path, error.reason)
        problems.append(error)

    for source in sources:
        if source.kind == "uri" and source.uri is not None:
            for error in _load_token(source.uri, handles):
                problem(error)
            continue
        if source.kind == "dir":
            if not source.path.is_dir():
                problem(KeyLoadError(str(source.path), "not a directory"))
                continue
            paths, refused = _files_under(source.path, strict_permissions=strict_permissions)
            for error in refused:
                problem(error)
        else:
            paths = [source.path]
        for path in paths:
            try:
                keys = load_key_file(path)
            except NotAKeyFile:
                if source.kind == "file":
                    problem(KeyLoadError(str(path), "holds no private key"))
                else:
                    log.debug("ignoring %s: no private key in it", path)
                continue
            except KeyLoadError as error:
                problem(error)
                continue
            try:  # checked once the file is known to hold a private key: certificates may be world-readable
                check_key_file(path, strict=strict_permissions)
            except UnsafeKeyFile as unsafe:
                problem(KeyLoadError(unsafe.path, unsafe.reason))
                continue
            for key in keys:
                handle = LocalKeyHandle(key, str(path))
                log.info("loaded %s key %s from %s", handle.description, handle.ski.hex(), path)
                handles.append(handle)
    return LoadReport(InMemoryKeyStore(handles), problems, time.perf_counter() - started)
