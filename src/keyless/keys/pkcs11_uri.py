"""PKCS#11 URIs (RFC 7512) naming the token and key objects a key store loads, and the PIN to use.

    pkcs11:token=keyless;object=site-ecdsa?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/keyless/pin

Path attributes (before ``?``, separated by ``;``) select the token (``token``, ``serial``,
``manufacturer``, ``model``, ``slot-id``) and the key objects (``object`` = CKA_LABEL, ``id`` =
CKA_ID, ``type`` which must be ``private`` if given). Query attributes (after ``?``, separated by
``&``) say how to reach it: ``module-path`` (required), and the user PIN as ``pin-value``,
``pin-source=file:/path`` or ``pin-source=env:NAME`` (our extension). Without any of those the PIN
comes from the environment variable ``KEYLESS_PKCS11_PIN``. Values are percent-encoded.

This module is pure parsing: it needs no PKCS#11 library, so the configuration can be checked
anywhere. The PIN is never part of ``repr()``, ``str()`` or ``display``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes

PIN_ENVIRONMENT_VARIABLE = "KEYLESS_PKCS11_PIN"
MAX_PIN_FILE_BYTES = 4096

_PATH_ATTRIBUTES = frozenset(
    {"token", "manufacturer", "serial", "model", "library-manufacturer", "library-description", "library-version",
     "object", "type", "id", "slot-manufacturer", "slot-description", "slot-id"}
)
_QUERY_ATTRIBUTES = frozenset({"module-path", "module-name", "pin-value", "pin-source"})


class Pkcs11UriError(ValueError):
    """A PKCS#11 URI that cannot be used; the message never holds the PIN."""


@dataclass(frozen=True, slots=True)
class Pkcs11Uri:
    module_path: str
    token: str | None = None
    serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    slot_id: int | None = None
    object_label: str | None = None
    object_id: bytes | None = None
    pin_value: str | None = field(default=None, repr=False)
    pin_source: str | None = None
    base: Path = field(default=Path("."), repr=False, compare=False)  # resolves a relative pin file

    @property
    def display(self) -> str:
        """The URI for logs and errors: every selector, the module, never the PIN."""
        objects = [f"{name}={value}" for name, value in (
            ("object", self.object_label),
            ("id", None if self.object_id is None else "".join(f"%{b:02x}" for b in self.object_id)),
        ) if value is not None]
        return self.naming(*objects) + f"?module-path={self.module_path}"

    def naming(self, *objects: str) -> str:
        """``token_display`` followed by ``objects`` (``object=...``, ``id=...``) as path attributes."""
        token = self.token_display
        named = [part for part in objects if part]
        return ";".join([token, *named]).replace(":;", ":", 1) if named else token

    @property
    def token_display(self) -> str:
        """``pkcs11:`` and the token selectors only (a key's source adds its own object and id)."""
        parts = [f"{name}={value}" for name, value in (
            ("token", self.token), ("serial", self.serial), ("manufacturer", self.manufacturer),
            ("model", self.model), ("slot-id", self.slot_id),
        ) if value is not None]
        return f"pkcs11:{';'.join(parts)}"

    def __str__(self) -> str:
        return self.display

    def pin(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The user PIN, read now (so a rotated PIN file is picked up by a reload); None: no PIN set."""
        env = os.environ if environ is None else environ
        if self.pin_value is not None:
            return self.pin_value
        if self.pin_source is not None:
            source = self.pin_source
            if source.startswith("env:"):
                name = source[4:]
                value = env.get(name)
                if value is None:
                    raise Pkcs11UriError(f"{self.display}: pin-source env:{name} is not set")
                return value
            path = Path(source[5:] if source.startswith("file:") else source).expanduser()
            if not path.is_absolute():
                path = self.base / path
            try:
                with path.open("rb") as pin_file:
                    data = pin_file.read(MAX_PIN_FILE_BYTES + 1)
            except OSError as exc:
                raise Pkcs11UriError(f"{self.display}: cannot read the PIN file {path}: "
                                     f"{exc.strerror or type(exc).__name__}") from None
            if len(data) > MAX_PIN_FILE_BYTES:
                raise Pkcs11UriError(f"{self.display}: the PIN file {path} is too large to hold a PIN")
            try:
                return data.decode("utf-8").rstrip("\r\n")  # editors add a final newline
            except UnicodeDecodeError:
                raise Pkcs11UriError(f"{self.display}: the PIN file {path} is not UTF-8") from None
        return env.get(PIN_ENVIRONMENT_VARIABLE)


def _decode(name: str, raw: str) -> bytes:
    try:
        return unquote_to_bytes(raw)
    except ValueError:  # pragma: no cover - unquote_to_bytes leaves bad escapes as they are
        raise Pkcs11UriError(f"PKCS#11 URI: bad percent-encoding in {name}") from None


def _text(name: str, raw: str) -> str:
    try:
        return _decode(name, raw).decode("utf-8")
    except UnicodeDecodeError:
        raise Pkcs11UriError(f"PKCS#11 URI: {name} is not UTF-8") from None


def _attributes(text: str, separator: str, allowed: frozenset[str], where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in text.split(separator):
        if not part:
            continue
        name, equals, value = part.partition("=")
        if not equals:
            raise Pkcs11UriError(f"PKCS#11 URI: {where} attribute {name!r} has no '=value'")
        if name.startswith("x-"):
            continue  # RFC 7512 vendor extensions: not ours to interpret
        if name not in allowed:
            raise Pkcs11UriError(
                f"PKCS#11 URI: unknown {where} attribute {name!r} (known: {', '.join(sorted(allowed))})"
            )
        if name in found:
            raise Pkcs11UriError(f"PKCS#11 URI: {name} appears twice")
        found[name] = value
    return found


def parse_pkcs11_uri(text: str, base: Path = Path(".")) -> Pkcs11Uri:
    """Parse ``text``; ``base`` resolves a relative ``pin-source`` file. Raises ``Pkcs11UriError``."""
    if not isinstance(text, str) or not text.startswith("pkcs11:"):
        raise Pkcs11UriError("PKCS#11 URI: must start with 'pkcs11:' (RFC 7512)")
    path_part, _, query_part = text[len("pkcs11:"):].partition("?")
    path = _attributes(path_part, ";", _PATH_ATTRIBUTES, "path")
    query = _attributes(query_part, "&", _QUERY_ATTRIBUTES, "query")

    if "module-path" not in query:
        hint = " (module-name is not supported: give the full path)" if "module-name" in query else ""
        raise Pkcs11UriError(
            "PKCS#11 URI: module-path is required, e.g. ?module-path=/usr/lib/softhsm/libsofthsm2.so" + hint
        )
    if "pin-value" in query and "pin-source" in query:
        raise Pkcs11UriError("PKCS#11 URI: give either pin-value or pin-source, not both")
    object_type = path.get("type")
    if object_type is not None and _text("type", object_type) != "private":
        raise Pkcs11UriError("PKCS#11 URI: type must be 'private' (the key store loads private keys)")
    slot_id: int | None = None
    if "slot-id" in path:
        slot_text = _text("slot-id", path["slot-id"])
        if not slot_text.isdigit():
            raise Pkcs11UriError(f"PKCS#11 URI: slot-id must be a decimal number, got {slot_text!r}")
        slot_id = int(slot_text)

    def text_of(name: str, attributes: dict[str, str]) -> str | None:
        return _text(name, attributes[name]) if name in attributes else None

    module_path = text_of("module-path", query) or ""
    if not module_path:
        raise Pkcs11UriError("PKCS#11 URI: module-path is empty")
    return Pkcs11Uri(
        module_path=module_path,
        token=text_of("token", path),
        serial=text_of("serial", path),
        manufacturer=text_of("manufacturer", path),
        model=text_of("model", path),
        slot_id=slot_id,
        object_label=text_of("object", path),
        object_id=_decode("id", path["id"]) if "id" in path else None,
        pin_value=text_of("pin-value", query),
        pin_source=text_of("pin-source", query),
        base=base,
    )
