"""Key-server configuration: YAML with the key names of Cloudflare's key server, plus ``listen``.

A schema over ``keyless.runtime.config``: ``_build`` reads one key per line with a typed reader. Every
key may be overridden by an environment variable ``KEYLESS_<KEY>`` (upper case), e.g.
``KEYLESS_PORT=3407`` or ``KEYLESS_PRIVATE_KEY_DIRS=/etc/keyless/keys,/srv/keys``; a bad override is
blamed on the variable. Relative paths are resolved against the directory of the configuration file
(the current directory for values from the environment), so a config and its keys can move together.

``load_config`` checks structure, values and that files exist; ``check_material`` then reads the TLS
files (chain order, ``auth_key`` belonging to ``auth_cert``, the CA bundle) — start-up, SIGHUP and
``--check-config`` all run both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyless.keys.loader import KeySource
from keyless.keys.pkcs11_uri import Pkcs11UriError, parse_pkcs11_uri
from keyless.runtime.config import (
    Collector,
    ConfigError,
    Origin,
    Section,
    apply_environment,
    comma_list,
    env_overrides,
    load_yaml,
    unknown_variables,
)
from keyless.runtime.tls_material import check_tls_files

DEFAULT_SEARCH_PATH = (Path("gokeyless.yaml"), Path("/etc/keyless/gokeyless.yaml"))

# Keys of Cloudflare's key server that this one does not implement, with what to do instead.
UNSUPPORTED_KEYS = {
    "hostname": "keyless does not fetch its own certificate: remove hostname/zone_id/origin_ca_api_key and "
                "set auth_cert and auth_key (`keyless pki init DIR` makes a demo pair)",
    "zone_id": "see hostname",
    "origin_ca_api_key": "see hostname",
    "auth_csr": "keyless does not request certificates: set auth_cert and auth_key",
}

# Command-line options that override keys: ``--loglevel`` is blamed for a bad level, not ``loglevel:``.
OPTION_OF_KEY = {"workers": "--workers", "strict": "--strict", "loglevel": "--loglevel", "log_format": "--log-format"}


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
    log_format: str = "text"
    workers: int = 1
    strict: bool = False
    strict_permissions: bool = True  # refuse key files others can read/write (sshd StrictModes)
    handshake_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_in_flight: int = 1024
    rsa_threads: int = 0  # 0: one per CPU
    shed_queue_time: float = 0.0  # seconds of expected queueing above which requests get 0xC0; 0: off
    source: Path | None = None
    # The command-line overrides this was loaded with, so that SIGHUP reads the file the same way.
    cli_overrides: tuple[tuple[str, Any], ...] = field(default=(), repr=False, compare=False)


_KNOWN_KEYS = frozenset(
    {
        "port", "listen", "metrics_port", "metrics_addr", "auth_cert", "auth_key", "cloudflare_ca_cert", "ca_cert",
        "private_key_dirs", "private_key_stores", "loglevel", "log_format", "workers", "strict", "handshake_timeout",
        "idle_timeout", "max_in_flight", "rsa_threads", "strict_permissions", "shed_queue_time",
    }
)


def _env_value(key: str, text: str) -> Any:
    """The value of ``KEYLESS_<KEY>``: comma-separated lists for the key sources, else the text."""
    if key == "private_key_dirs":
        return comma_list(text)
    if key == "private_key_stores":
        return [{"dir": p[4:]} if p.startswith("dir:") else {"file": p[5:]} if p.startswith("file:") else {"uri": p[4:]}
                if p.startswith("uri:") else {"uri": p} if p.startswith("pkcs11:") else p for p in comma_list(text)]
    return text


ENVIRONMENT = env_overrides(sorted(_KNOWN_KEYS), converters={
    "private_key_dirs": lambda text: _env_value("private_key_dirs", text),
    "private_key_stores": lambda text: _env_value("private_key_stores", text),
})


def environment_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """A warning per ``KEYLESS_*`` variable this daemon does not read (a typo, with a did-you-mean)."""
    return unknown_variables(ENVIRONMENT, environ)


def find_config(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("--config", f"{explicit}: no such file", "give the path of the YAML configuration")
        return path
    for candidate in DEFAULT_SEARCH_PATH:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "", "no configuration file",
        "pass --config FILE, or create ./gokeyless.yaml or /etc/keyless/gokeyless.yaml "
        "(`keyless pki init DIR` writes a ready DIR/keyserver.yaml)",
    )


def load_config(path: Path | None, environ: Mapping[str, str] | None = None, **overrides: Any) -> KeyServerConfig:
    """Read ``path`` (may be None: environment only), apply ``KEYLESS_<KEY>`` and then ``overrides``
    (the command-line options)."""
    if path is not None:
        raw, origin = load_yaml(path)
    else:
        raw, origin = {}, Origin(None, Path.cwd())
    apply_environment(raw, origin, ENVIRONMENT, environ)
    given = tuple((k, v) for k, v in overrides.items() if v is not None)
    for key, value in given:
        raw[key] = value
        origin.variables[key] = OPTION_OF_KEY.get(key, f"--{key.replace('_', '-')}")
    collect = Collector()
    top = Section(raw, "", origin, _KNOWN_KEYS | UNSUPPORTED_KEYS.keys(), collect)
    config = _build(top, path, given, collect)
    collect.check()  # every problem, one line each, before any is acted on
    return config


def _build(top: Section, source: Path | None, cli_overrides: tuple[tuple[str, Any], ...],
           collect: Collector) -> KeyServerConfig:
    """The schema: one reader per key; a bad key is collected and its default stands in meanwhile."""
    read = collect.read
    for key, advice in UNSUPPORTED_KEYS.items():
        if top.has(key):
            collect.add(top.error(key, "not supported by keyless", advice))
    metrics_host, metrics_port = read(lambda: _metrics_addr(top), ("", 0))
    return KeyServerConfig(
        auth_cert=read(lambda: top.file("auth_cert", what="PEM certificate of this key server"), Path()),
        auth_key=read(lambda: top.file("auth_key", what="PEM private key of auth_cert"), Path()),
        ca_cert=read(lambda: _ca_cert(top), Path()),
        listen=read(lambda: top.listen_host("listen", "127.0.0.1"), ""),
        port=read(lambda: top.integer("port", 2407, 0, 65535), 0),
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        key_sources=read(lambda: _key_sources(top, source), ()),
        loglevel=read(top.log_level, "INFO"),
        log_format=read(top.log_format, "text"),
        workers=read(lambda: top.integer("workers", 1, 1, 256), 1),
        strict=read(lambda: top.boolean("strict", False), False),
        strict_permissions=read(lambda: top.boolean("strict_permissions", True), True),
        handshake_timeout=read(lambda: top.duration("handshake_timeout", 10.0, 0.001, 3600.0), 0.0),
        idle_timeout=read(lambda: top.duration("idle_timeout", 30.0, 0.001, 3600.0), 0.0),
        max_in_flight=read(lambda: top.integer("max_in_flight", 1024, 1, 65536), 0),
        rsa_threads=read(lambda: top.integer("rsa_threads", 0, 0, 1024), 0),
        shed_queue_time=read(lambda: top.duration("shed_queue_time", 0.0, 0.0, 60.0), 0.0),
        source=source,
        cli_overrides=cli_overrides,
    )


def _ca_cert(top: Section) -> Path:
    if top.has("cloudflare_ca_cert") and top.has("ca_cert"):
        raise top.error("ca_cert", "given together with cloudflare_ca_cert", "set one of them")
    ca_key = "ca_cert" if top.has("ca_cert") else "cloudflare_ca_cert"
    if not top.has(ca_key):
        raise top.error("cloudflare_ca_cert", "is required",
                        "give the CA that edge client certificates must chain to (ca_cert is accepted as well)")
    return top.file(ca_key, what="PEM CA certificate of the edges")


def _metrics_addr(top: Section) -> tuple[str, int]:
    """``metrics_addr`` (host:port) if given, else 127.0.0.1 and ``metrics_port``."""
    if top.has("metrics_addr"):
        return top.host_port("metrics_addr", listen=True)
    return "127.0.0.1", top.integer("metrics_port", 2406, 0, 65535)


def _key_sources(top: Section, source: Path | None) -> tuple[KeySource, ...]:
    sources = [KeySource("dir", top.resolve("private_key_dirs", d))
               for d in top.strings("private_key_dirs", "directory paths", "/etc/keyless/keys")]
    stores = top.raw("private_key_stores", [])
    if not isinstance(stores, list):
        raise top.error("private_key_stores", "must be a list",
                        "write a list of {dir: PATH}, {file: PATH} or {uri: PKCS11-URI}")
    for index, store in enumerate(stores):
        try:
            sources.append(_store(index, store, top.origin.base))
        except ConfigError as exc:
            variable = top.origin.variables.get("private_key_stores")
            raise ConfigError(exc.key, exc.problem, exc.fix, file=None if variable else source,
                              variable=variable) from None
    if not sources:
        raise top.error("private_key_dirs", "no key source configured", "set private_key_dirs or private_key_stores")
    return tuple(sources)


def _store(index: int, store: Any, base: Path) -> KeySource:
    where = f"private_key_stores[{index}]"
    if not isinstance(store, dict) or len(store) != 1:
        # Never echo the entry itself: a uri: value may carry a pin-value.
        shape = f"keys {sorted(map(str, store))}" if isinstance(store, dict) else type(store).__name__
        raise ConfigError(where, f"each entry must be exactly one of dir: PATH, file: PATH or uri: URI, got {shape}",
                          "write one store per list item")
    (kind, value), = store.items()
    if kind == "uri":
        if not isinstance(value, str):
            raise ConfigError(f"{where}.uri", "must be a PKCS#11 URI string",
                              "write pkcs11:token=...;object=...?module-path=...")
        try:
            uri = parse_pkcs11_uri(value, base)
        except Pkcs11UriError as exc:
            raise ConfigError(f"{where}.uri", str(exc), "see docs/hsm.md for the URI syntax") from None
        return KeySource("uri", Path(uri.module_path), uri)
    if kind not in ("dir", "file"):
        raise ConfigError(where, f"unknown store type {kind!r}", "use dir:, file: or uri:")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{kind}", f"must be a path, got {value!r}", "give the path as a string")
    path = Path(value).expanduser()
    return KeySource(kind, path if path.is_absolute() else base / path)


def check_material(config: KeyServerConfig) -> list[ConfigError]:
    """Read the TLS files as start-up will: every problem, each naming its key and the file."""
    return check_tls_files(config.auth_cert, config.auth_key, config.ca_cert,
                           ("auth_cert", "auth_key", "cloudflare_ca_cert"), config.source)


__all__ = ["DEFAULT_SEARCH_PATH", "ConfigError", "KeyServerConfig", "check_material", "environment_warnings",
           "find_config", "load_config"]
