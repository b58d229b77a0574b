"""The edge's configuration file (YAML), validated up front.

A bad file stops start-up with one ``ConfigError`` that names the offending key (``certificates[1].chain``)
and says how to fix it, before any socket is opened. Everything here is plain data: loading
certificates and keys, or connecting to key servers, happens in ``keyless.edge.sites``.

Example (see ``examples/edge.yaml`` for every key with comments)::

    listen: [{address: 0.0.0.0, port: 443}]
    key_server_tls: {client_cert: edge.pem, client_key: edge-key.pem, ca: ca.pem}
    certificates:
      - names: [example.com, "*.example.com"]
        chain: example.com.pem
        key_servers: ["10.0.0.7:2407", "10.0.0.8:2407"]
        default: true
    origin: {mode: http, address: 127.0.0.1:8080}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_KEYSERVER_PORT = 2407
DEFAULT_TICKET_ROTATION = 3600.0
DEFAULT_TICKET_LIFETIME = 7200


class ConfigError(Exception):
    """The configuration cannot be used. The message names the key and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{key}: {problem} (fix: {fix})")
        self.key = key


@dataclass(frozen=True)
class Listener:
    address: str
    port: int


@dataclass(frozen=True)
class KeyServerTLS:
    """The mutually-authenticated link to key servers: our client certificate, and the CA of theirs."""

    client_cert: Path
    client_key: Path = field(repr=False)
    ca: Path
    timeout: float = 10.0
    server_name: str | None = None  # name to verify in the key server's certificate; default: the host
    send_client_ip: bool = False  # tell the key servers the end user's IP with each operation (tag 0x03)


@dataclass(frozen=True)
class SiteConfig:
    """One certificate: the names it answers for, its chain, and where its private key lives."""

    names: tuple[str, ...]
    chain: Path
    key_servers: tuple[tuple[str, int], ...] = ()
    key_server_tls: KeyServerTLS | None = None
    key_file: Path | None = field(default=None, repr=False)
    default: bool = False

    @property
    def label(self) -> str:
        return self.names[0] if self.names else self.chain.name


@dataclass(frozen=True)
class OriginConfig:
    mode: str  # "http" or "tcp"
    host: str
    port: int
    proxy_protocol: bool = False  # tcp mode: send a PROXY protocol v2 header first
    connect_timeout: float = 5.0
    response_timeout: float = 30.0  # http: time to the response head; else 504
    pool_size: int = 8  # http: idle keep-alive connections kept to the origin


@dataclass(frozen=True)
class TicketConfig:
    enabled: bool = True
    key_files: tuple[Path, ...] = ()  # like nginx ssl_session_ticket_key: the first seals, all open
    redis_url: str | None = field(
        default=None, repr=False
    )  # may hold a password; keys shared through Redis instead (one per rotation slot)
    rotation: float = DEFAULT_TICKET_ROTATION  # generated keys: seconds between new sealing keys
    lifetime: int = DEFAULT_TICKET_LIFETIME
    session_cache_size: int = 10000  # TLS 1.2 session IDs (0 disables)


@dataclass(frozen=True)
class Limits:
    handshake_timeout: float = 10.0
    idle_timeout: float = 60.0
    send_timeout: float = 60.0  # like nginx send_timeout: each write must drain within it
    max_connections: int = 10000
    max_header_size: int = 16384
    drain_timeout: float = 30.0


@dataclass(frozen=True)
class EdgeConfig:
    listeners: tuple[Listener, ...]
    sites: tuple[SiteConfig, ...]
    origin: OriginConfig
    tickets: TicketConfig = TicketConfig()
    limits: Limits = Limits()
    metrics_addr: tuple[str, int] | None = None
    workers: int = 1
    enable_tls12: bool = True
    enable_rsa_key_exchange: bool = False
    loglevel: str = "info"
    source: Path | None = None
    strict_permissions: bool = True  # refuse private key files others can read or write (sshd StrictModes)


_TOP_KEYS = {
    "listen",
    "certificates",
    "key_server_tls",
    "origin",
    "tickets",
    "limits",
    "metrics_addr",
    "workers",
    "tls12",
    "rsa_key_exchange",
    "loglevel",
    "strict_permissions",
}


def load_config(path: Path | str) -> EdgeConfig:
    """Read and validate an edge configuration file; relative paths are relative to the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            str(path), f"cannot read the configuration file ({exc.strerror})", "pass --config FILE"
        ) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML ({exc})", "fix the YAML syntax") from exc
    return parse_config(document, base=path.parent, source=path)


def parse_config(document: object, *, base: Path, source: Path | None = None) -> EdgeConfig:
    top = _mapping(document, "(top level)", _TOP_KEYS)
    raw_tls = top.get("key_server_tls")
    default_tls = _key_server_tls(raw_tls, "key_server_tls", base) if raw_tls is not None else None
    sites = _sites(top.get("certificates"), default_tls, base)
    listeners = _listeners(top.get("listen", [{"address": "127.0.0.1", "port": 8443}]))
    origin = _origin(top.get("origin"))
    tickets = _tickets(top.get("tickets", {}), base)
    limits = _limits(top.get("limits", {}))
    metrics_addr = _host_port(top["metrics_addr"], "metrics_addr", None) if top.get("metrics_addr") else None
    workers = _int(top.get("workers", 1), "workers", 1, 256)
    loglevel = str(top.get("loglevel", "info")).lower()
    if loglevel not in ("debug", "info", "warning", "error"):
        raise ConfigError("loglevel", f"unknown level {loglevel!r}", "use debug, info, warning or error")
    return EdgeConfig(
        listeners=listeners,
        sites=sites,
        origin=origin,
        tickets=tickets,
        limits=limits,
        metrics_addr=metrics_addr,
        workers=workers,
        enable_tls12=_bool(top.get("tls12", True), "tls12"),
        enable_rsa_key_exchange=_bool(top.get("rsa_key_exchange", False), "rsa_key_exchange"),
        loglevel=loglevel,
        source=source,
        strict_permissions=_bool(top.get("strict_permissions", True), "strict_permissions"),
    )


def _listeners(value: object) -> tuple[Listener, ...]:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError("listen", "must be a non-empty list", "write listen: [{address: 0.0.0.0, port: 443}]")
    listeners = []
    for index, item in enumerate(value):
        key = f"listen[{index}]"
        entry = _mapping(item, key, {"address", "port"})
        address = str(entry.get("address", "127.0.0.1"))
        port = _int(entry.get("port", 443), f"{key}.port", 0, 65535)
        listeners.append(Listener(address, port))
    return tuple(listeners)


def _sites(value: object, default_tls: KeyServerTLS | None, base: Path) -> tuple[SiteConfig, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(
            "certificates", "at least one certificate is needed", "add certificates: [{names: [...], chain: ..., ...}]"
        )
    sites = []
    allowed = {"names", "chain", "key_servers", "key_server_tls", "key_file", "default"}
    for index, item in enumerate(value):
        key = f"certificates[{index}]"
        entry = _mapping(item, key, allowed)
        names = entry.get("names", [])
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(
                f"{key}.names", "must be a list of host names", 'write names: [example.com, "*.example.com"]'
            )
        for name in names:
            _check_name(name, f"{key}.names")
        if "chain" not in entry:
            raise ConfigError(f"{key}.chain", "missing", "give the PEM file with the certificate chain, leaf first")
        chain = _existing_file(entry["chain"], f"{key}.chain", base)
        servers: tuple[tuple[str, int], ...] = ()
        key_file = None
        tls = default_tls
        if "key_file" in entry and "key_servers" in entry:
            raise ConfigError(key, "has both key_file and key_servers", "keep one: the key lives in one place")
        if "key_file" in entry:
            key_file = _existing_file(entry["key_file"], f"{key}.key_file", base)
        elif "key_servers" in entry:
            raw = entry["key_servers"]
            if isinstance(raw, str):
                raw = [raw]
            if not isinstance(raw, list) or not raw:
                raise ConfigError(
                    f"{key}.key_servers", "must be a non-empty list", 'write key_servers: ["10.0.0.7:2407"]'
                )
            servers = tuple(_host_port(s, f"{key}.key_servers[{i}]", DEFAULT_KEYSERVER_PORT) for i, s in enumerate(raw))
            if "key_server_tls" in entry:
                tls = _key_server_tls(entry["key_server_tls"], f"{key}.key_server_tls", base)
            if tls is None:
                raise ConfigError(
                    "key_server_tls",
                    f"{key} uses key servers but no mTLS settings are given",
                    "add key_server_tls: {client_cert: ..., client_key: ..., ca: ...}",
                )
        else:
            raise ConfigError(
                key, "says nowhere where the private key is", "add key_servers: [host:port] (or key_file)"
            )
        sites.append(
            SiteConfig(
                names=tuple(n.lower() for n in names),
                chain=chain,
                key_servers=servers,
                key_server_tls=tls if servers else None,
                key_file=key_file,
                default=_bool(entry.get("default", False), f"{key}.default"),
            )
        )
    defaults = [i for i, s in enumerate(sites) if s.default]
    if len(defaults) > 1:
        raise ConfigError(f"certificates[{defaults[1]}].default", "more than one default certificate", "keep one")
    return tuple(sites)


def _check_name(name: str, key: str) -> None:
    labels = name.lower().split(".")
    if name.endswith(".") or any(not label for label in labels):
        raise ConfigError(key, f"{name!r} is not a host name", "write names without empty labels or a trailing dot")
    if "*" in name and (labels[0] != "*" or "*" in ".".join(labels[1:]) or len(labels) < 3):
        raise ConfigError(key, f"{name!r}: a wildcard must be the whole first label", 'write "*.example.com"')


def _key_server_tls(value: object, key: str, base: Path) -> KeyServerTLS:
    entry = _mapping(value, key, {"client_cert", "client_key", "ca", "timeout", "server_name", "send_client_ip"})
    for name in ("client_cert", "client_key", "ca"):
        if name not in entry:
            raise ConfigError(f"{key}.{name}", "missing", f"give the PEM file for {name.replace('_', ' ')}")
    server_name = entry.get("server_name")
    return KeyServerTLS(
        client_cert=_existing_file(entry["client_cert"], f"{key}.client_cert", base),
        client_key=_existing_file(entry["client_key"], f"{key}.client_key", base),
        ca=_existing_file(entry["ca"], f"{key}.ca", base),
        timeout=_float(entry.get("timeout", 10.0), f"{key}.timeout", 0.05, 300.0),
        server_name=str(server_name) if server_name else None,
        send_client_ip=_bool(entry.get("send_client_ip", False), f"{key}.send_client_ip"),
    )


def _origin(value: object) -> OriginConfig:
    if value is None:
        raise ConfigError("origin", "missing", "add origin: {mode: http, address: 127.0.0.1:8080}")
    allowed = {"mode", "address", "proxy_protocol", "connect_timeout", "response_timeout", "pool_size"}
    entry = _mapping(value, "origin", allowed)
    mode = str(entry.get("mode", "http"))
    if mode not in ("http", "tcp"):
        raise ConfigError("origin.mode", f"unknown mode {mode!r}", "use http (reverse proxy) or tcp (byte pipe)")
    if "address" not in entry:
        raise ConfigError("origin.address", "missing", "give the origin as host:port")
    host, port = _host_port(entry["address"], "origin.address", None)
    proxy_protocol = _bool(entry.get("proxy_protocol", False), "origin.proxy_protocol")
    if proxy_protocol and mode != "tcp":
        raise ConfigError("origin.proxy_protocol", "only for mode tcp", "http mode sends X-Forwarded-For instead")
    return OriginConfig(
        mode=mode,
        host=host,
        port=port,
        proxy_protocol=proxy_protocol,
        connect_timeout=_float(entry.get("connect_timeout", 5.0), "origin.connect_timeout", 0.01, 600.0),
        response_timeout=_float(entry.get("response_timeout", 30.0), "origin.response_timeout", 0.01, 3600.0),
        pool_size=_int(entry.get("pool_size", 8), "origin.pool_size", 0, 1024),
    )


def _tickets(value: object, base: Path) -> TicketConfig:
    entry = _mapping(value, "tickets", {"enabled", "key_files", "redis", "rotation", "lifetime", "session_cache_size"})
    raw = entry.get("key_files", [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise ConfigError("tickets.key_files", "must be a list of files", "write key_files: [/etc/keyless/ticket.key]")
    files = tuple(_existing_file(f, f"tickets.key_files[{i}]", base) for i, f in enumerate(raw))
    lifetime = _int(entry.get("lifetime", DEFAULT_TICKET_LIFETIME), "tickets.lifetime", 1, 604800)
    redis_url = entry.get("redis")
    if redis_url is not None and not (isinstance(redis_url, str) and redis_url.startswith(("redis://", "rediss://"))):
        raise ConfigError("tickets.redis", f"{redis_url!r} is not a Redis URL", "write redis://host:6379/0")
    if redis_url and files:
        raise ConfigError("tickets.redis", "given together with tickets.key_files", "keep one source of ticket keys")
    return TicketConfig(
        enabled=_bool(entry.get("enabled", True), "tickets.enabled"),
        key_files=files,
        redis_url=redis_url,
        rotation=_float(entry.get("rotation", DEFAULT_TICKET_ROTATION), "tickets.rotation", 1.0, 604800.0),
        lifetime=lifetime,
        session_cache_size=_int(entry.get("session_cache_size", 10000), "tickets.session_cache_size", 0, 10_000_000),
    )


def _limits(value: object) -> Limits:
    allowed = {"handshake_timeout", "idle_timeout", "send_timeout", "max_connections", "max_header_size",
               "drain_timeout"}
    entry = _mapping(value, "limits", allowed)
    return Limits(
        handshake_timeout=_float(entry.get("handshake_timeout", 10.0), "limits.handshake_timeout", 0.01, 600.0),
        idle_timeout=_float(entry.get("idle_timeout", 60.0), "limits.idle_timeout", 0.01, 86400.0),
        send_timeout=_float(entry.get("send_timeout", 60.0), "limits.send_timeout", 0.01, 3600.0),
        max_connections=_int(entry.get("max_connections", 10000), "limits.max_connections", 1, 1_000_000),
        max_header_size=_int(entry.get("max_header_size", 16384), "limits.max_header_size", 1024, 1 << 20),
        drain_timeout=_float(entry.get("drain_timeout", 30.0), "limits.drain_timeout", 0.0, 3600.0),
    )


# --- scalar helpers -------------------------------------------------------------------------------


def _mapping(value: object, key: str, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a mapping, not {type(value).__name__}", "write key: value pairs")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        prefix = "" if key == "(top level)" else f"{key}."
        raise ConfigError(f"{prefix}{unknown[0]}", "unknown key", f"use one of: {', '.join(sorted(allowed))}")
    return value


def _existing_file(value: object, key: str, base: Path) -> Path:
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


def _host_port(value: object, key: str, default_port: int | None) -> tuple[str, int]:
    text = str(value).strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, ""
    host = host.strip("[]")
    if not host:
        raise ConfigError(key, f"{text!r} has no host", "write host:port")
    if not port_text:
        if default_port is None:
            raise ConfigError(key, f"{text!r} has no port", "write host:port")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(key, f"{text!r} has a bad port", "write host:port with a port in 0..65535")
    return host, int(port_text)


def _int(value: object, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            key, f"{value!r} is not an integer in {low}..{high}", f"use a whole number from {low} to {high}"
        )
    return value


def _float(value: object, key: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= float(value) <= high:
        raise ConfigError(key, f"{value!r} is not a number in {low}..{high}", f"use seconds from {low} to {high}")
    return float(value)


def _bool(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"{value!r} is not true or false", "write true or false")
    return value


__all__ = [
    "ConfigError",
    "EdgeConfig",
    "KeyServerTLS",
    "Limits",
    "Listener",
    "OriginConfig",
    "SiteConfig",
    "TicketConfig",
    "load_config",
    "parse_config",
]
