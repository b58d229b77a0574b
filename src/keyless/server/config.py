"""Key-server configuration: YAML with the key names of Cloudflare's key server, plus ``listen``.

Every key may be overridden by an environment variable ``KEYLESS_<KEY>`` (upper case), e.g.
``KEYLESS_PORT=3407`` or ``KEYLESS_PRIVATE_KEY_DIRS=/etc/keyless/keys,/srv/keys``. Relative paths
are resolved against the directory of the configuration file (the current directory for values
from the environment), so a config and its keys can move together. An unknown key or a bad value
stops start-up with a ``ConfigError`` naming the key and how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from keyless.keys.loader import KeySource
from keyless.keys.pkcs11_uri import Pkcs11UriError, parse_pkcs11_uri

DEFAULT_SEARCH_PATH = (Path("gokeyless.yaml"), Path("/etc/keyless/gokeyless.yaml"))

LOG_LEVELS = {
    "debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING", "error": "ERROR",
    "critical": "CRITICAL", "fatal": "CRITICAL",
}
# Cloudflare's key server takes numeric levels, 0 (debug) to 5 (fatal).
NUMERIC_LOG_LEVELS = {0: "DEBUG", 1: "INFO", 2: "WARNING", 3: "ERROR", 4: "CRITICAL", 5: "CRITICAL"}

# Keys of Cloudflare's key server that this one does not implement, with what to do instead.
UNSUPPORTED_KEYS = {
    "hostname": "keyless does not fetch its own certificate: remove hostname/zone_id/origin_ca_api_key and "
                "set auth_cert and auth_key (`keyless pki init DIR` makes a demo pair)",
    "zone_id": "see hostname",
    "origin_ca_api_key": "see hostname",
    "auth_csr": "keyless does not request certificates: set auth_cert and auth_key",
}


class ConfigError(Exception):
    """A configuration problem; the message names the key and the fix."""


@dataclass(frozen=True, slots=True)
class KeyServerConfig:
    auth_cert: Path
    auth_key: Path = field(repr=False)
    ca_cert: Path
    listen: str = "127.0.0.1"
    port: int = 2407
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 2406
    key_sources: tuple[KeySource, ...] = ()
    loglevel: str = "INFO"
    workers: int = 1
    strict: bool = False
    strict_permissions: bool = True  # refuse key files others can read/write (sshd StrictModes)
    handshake_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_in_flight: int = 1024
    rsa_threads: int = 0  # 0: one per CPU
    source: Path | None = None


_KNOWN_KEYS = frozenset(
    {
        "port", "listen", "metrics_port", "metrics_addr", "auth_cert", "auth_key", "cloudflare_ca_cert", "ca_cert",
        "private_key_dirs", "private_key_stores", "loglevel", "workers", "strict", "handshake_timeout",
        "idle_timeout", "max_in_flight", "rsa_threads", "strict_permissions",
    }
)


def find_config(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"--config {explicit}: no such file")
        return path
    for candidate in DEFAULT_SEARCH_PATH:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "no configuration file: pass --config FILE, or create ./gokeyless.yaml or /etc/keyless/gokeyless.yaml "
        "(`keyless pki init DIR` writes a ready DIR/keyserver.yaml)"
    )


def load_config(path: Path | None, environ: Mapping[str, str] | None = None, **overrides: Any) -> KeyServerConfig:
    """Read ``path`` (may be None: environment only), apply ``KEYLESS_<KEY>`` and then ``overrides``."""
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of key: value")
        raw = {str(k): v for k, v in loaded.items()}
        base = path.parent.resolve()
    env = os.environ if environ is None else environ
    for key in _KNOWN_KEYS:
        value = env.get(f"KEYLESS_{key.upper()}")
        if value is not None:
            raw[key] = _env_value(key, value)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return _build(raw, base, path)


def _env_value(key: str, text: str) -> Any:
    if key in ("private_key_dirs",):
        return [part for part in text.split(",") if part]
    if key == "private_key_stores":
        return [{"dir": p[4:]} if p.startswith("dir:") else {"file": p[5:]} if p.startswith("file:") else {"uri": p[4:]}
                if p.startswith("uri:") else {"uri": p} if p.startswith("pkcs11:") else p for p in text.split(",") if p]
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _build(raw: dict[str, Any], base: Path, source: Path | None) -> KeyServerConfig:
    for key in raw:
        if key in UNSUPPORTED_KEYS:
            raise ConfigError(f"{key}: not supported by keyless: {UNSUPPORTED_KEYS[key]}")
        if key not in _KNOWN_KEYS:
            raise ConfigError(f"{key}: unknown configuration key (known keys: {', '.join(sorted(_KNOWN_KEYS))})")

    def path_of(key: str, required: bool = True) -> Path | None:
        value = raw.get(key)
        if value is None:
            if required:
                raise ConfigError(f"{key}: required (path to a PEM file)")
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: must be a file path, got {value!r}")
        return _resolve(value, base)

    ca_key = "cloudflare_ca_cert" if "cloudflare_ca_cert" in raw else "ca_cert"
    if "cloudflare_ca_cert" in raw and "ca_cert" in raw:
        raise ConfigError("ca_cert: set either cloudflare_ca_cert or ca_cert, not both")
    auth_cert = path_of("auth_cert")
    auth_key = path_of("auth_key")
    if ca_key not in raw:
        raise ConfigError("cloudflare_ca_cert: required (the CA that edge client certificates must chain to; "
                          "ca_cert is accepted as well)")
    ca_cert = path_of(ca_key)
    for key, path in (("auth_cert", auth_cert), ("auth_key", auth_key), (ca_key, ca_cert)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{key}: {path} does not exist or is not a file")

    port = _int(raw, "port", 2407, 0, 65535)
    listen = raw.get("listen", "127.0.0.1")
    if not isinstance(listen, str) or not listen:
        raise ConfigError(f"listen: must be an address such as 127.0.0.1, 0.0.0.0 or ::, got {listen!r}")
    metrics_host, metrics_port = "127.0.0.1", _int(raw, "metrics_port", 2406, 0, 65535)
    if "metrics_addr" in raw:
        metrics_host, metrics_port = _host_port("metrics_addr", raw["metrics_addr"])

    sources: list[KeySource] = []
    dirs = raw.get("private_key_dirs", [])
    if isinstance(dirs, str):
        dirs = [dirs]
    if not isinstance(dirs, list) or not all(isinstance(d, str) and d for d in dirs):
        raise ConfigError(f"private_key_dirs: must be a list of directory paths, got {dirs!r}")
    sources.extend(KeySource("dir", _resolve(d, base)) for d in dirs)
    stores = raw.get("private_key_stores", [])
    if not isinstance(stores, list):
        raise ConfigError(
            f"private_key_stores: must be a list of {{dir: PATH}}, {{file: PATH}} or {{uri: URI}}, got {stores!r}"
        )
    for index, store in enumerate(stores):
        sources.append(_store(index, store, base))
    if not sources:
        raise ConfigError("private_key_dirs: no key source configured (set private_key_dirs or private_key_stores)")

    loglevel = _loglevel(raw.get("loglevel", "info"))
    strict = raw.get("strict", False)
    if not isinstance(strict, bool):
        raise ConfigError(f"strict: must be true or false, got {strict!r}")
    strict_permissions = raw.get("strict_permissions", True)
    if not isinstance(strict_permissions, bool):
        raise ConfigError(f"strict_permissions: must be true or false, got {strict_permissions!r} (false only "
                          "warns about key files others can read or write)")
    return KeyServerConfig(
        auth_cert=auth_cert,  # type: ignore[arg-type]
        auth_key=auth_key,  # type: ignore[arg-type]
        ca_cert=ca_cert,  # type: ignore[arg-type]
        listen=listen,
        port=port,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        key_sources=tuple(sources),
        loglevel=loglevel,
        workers=_int(raw, "workers", 1, 1, 256),
        strict=strict,
        strict_permissions=strict_permissions,
        handshake_timeout=_seconds(raw, "handshake_timeout", 10.0),
        idle_timeout=_seconds(raw, "idle_timeout", 30.0),
        max_in_flight=_int(raw, "max_in_flight", 1024, 1, 65536),
        rsa_threads=_int(raw, "rsa_threads", 0, 0, 1024),
        source=source,
    )


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _int(raw: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        else:
            raise ConfigError(f"{key}: must be a whole number between {low} and {high}, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{key}: must be between {low} and {high}, got {value}")
    return value


def _seconds(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ConfigError(f"{key}: must be a number of seconds between 0 and 3600, got {value!r}")
    return float(value)


def _host_port(key: str, value: Any) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{key}: must be host:port such as 127.0.0.1:2406 or [::1]:2406, got {value!r}")
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{key}: the port after ':' must be 0-65535, got {value!r}")
    return host, int(port_text)


def _store(index: int, store: Any, base: Path) -> KeySource:
    where = f"private_key_stores[{index}]"
    if not isinstance(store, dict) or len(store) != 1:
        # Never echo the entry itself: a uri: value may carry a pin-value.
        shape = f"keys {sorted(map(str, store))}" if isinstance(store, dict) else type(store).__name__
        raise ConfigError(f"{where}: each entry must be exactly one of dir: PATH, file: PATH or uri: URI, got {shape}")
    (kind, value), = store.items()
    if kind == "uri":
        if not isinstance(value, str):
            raise ConfigError(f"{where}.uri: must be a PKCS#11 URI string "
                              "(pkcs11:token=...;object=...?module-path=...)")
        try:
            uri = parse_pkcs11_uri(value, base)
        except Pkcs11UriError as exc:
            raise ConfigError(f"{where}.uri: {exc}") from None
        return KeySource("uri", Path(uri.module_path), uri)
    if kind not in ("dir", "file"):
        raise ConfigError(f"{where}: unknown store type {kind!r} (use dir:, file: or uri:)")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{kind}: must be a path, got {value!r}")
    return KeySource(kind, _resolve(value, base))


def _loglevel(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value in NUMERIC_LOG_LEVELS:
        return NUMERIC_LOG_LEVELS[value]
    if isinstance(value, str) and value.lower() in LOG_LEVELS:
        return LOG_LEVELS[value.lower()]
    raise ConfigError(f"loglevel: must be one of debug, info, warning, error, critical (or 0-5), got {value!r}")
