"""The edge's configuration file (YAML), validated up front.

A schema over ``keyless.runtime.config``: a bad file stops start-up with one ``ConfigError`` that names
the file, the offending key (``certificates[1].chain``) and how to fix it, before any socket is opened.
Scalar keys may be overridden from the environment: ``KEYLESS_<KEY>`` for top-level keys
(``KEYLESS_WORKERS``, ``KEYLESS_LOGLEVEL``, ``KEYLESS_METRICS_ADDR``) and ``KEYLESS_<SECTION>_<KEY>`` for
the keys of ``key_server_tls``, ``origin``, ``tickets`` and ``limits`` (``KEYLESS_TICKETS_REDIS``).

``load_config`` returns plain data; ``check_material`` reads the TLS and ticket-key files the data names
(chain order, keys that belong to their certificates, ticket key sizes, certificates out of their
validity period). Connecting to key servers happens in ``keyless.edge.sites``.

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

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyless.edge.client_auth import ClientAuthConfig, parse_client_auth
from keyless.runtime.config import (
    Collector,
    ConfigError,
    MaterialProblem,
    Origin,
    Section,
    apply_environment,
    env_overrides,
    load_yaml,
    unknown_variables,
)
from keyless.runtime.tls_material import (
    check_key_matches,
    check_tls_files,
    read_chain,
    read_private_key,
    validity_problem,
)
from keyless.tls.hybrid import TLS13_GROUPS
from keyless.tls.suites import ECDHE_GROUPS, GROUP_NAMES

DEFAULT_KEYSERVER_PORT = 2407
DEFAULT_TICKET_ROTATION = 3600.0
DEFAULT_TICKET_LIFETIME = 7200


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    groups: tuple[int, ...] | None = None  # key-exchange preference (NamedGroup codes); None: the engine's default
    hybrid_hello_retry: bool = False  # HelloRetryRequest for a hybrid group the client supports but sent no share for


@dataclass(frozen=True)
class KeyServerTLS:
    """The mutually-authenticated link to key servers: our client certificate, and the CA of theirs."""

    client_cert: Path
    client_key: Path = field(repr=False)
    ca: Path
    timeout: float = 10.0
    server_name: str | None = None  # name to verify in the key server's certificate; default: the host
    send_client_ip: bool = False  # tell the key servers the end user's IP with each operation (tag 0x03)
    # Hedging and outlier ejection (keyless.client.resilience; defaults there, docs/client.md).
    hedge_delay_min: float = 0.025
    hedge_delay_max: float = 1.0
    hedge_budget_percent: int = 10  # 0: never hedge
    eject_after: int = 3  # timeouts or lost hedge races in a row
    ejection_time: float = 10.0  # the first ejection; x N for the Nth in a row, at most 300 s


@dataclass(frozen=True)
class SiteConfig:
    """One certificate: the names it answers for, its chain, and where its private key lives."""

    names: tuple[str, ...]
    chain: Path
    key_servers: tuple[tuple[str, int], ...] = ()
    key_server_tls: KeyServerTLS | None = None
    key_file: Path | None = field(default=None, repr=False)
    default: bool = False
    client_auth: ClientAuthConfig | None = None  # keyless.edge.client_auth; None: no client certificates

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
    loglevel: str = "INFO"  # Python's level name
    log_format: str = "text"
    source: Path | None = None
    key_server_tls: KeyServerTLS | None = None  # the top-level default that sites without their own use
    strict_permissions: bool = True  # refuse private key files others can read or write (sshd StrictModes)



# --- the schema -------------------------------------------------------------------------------------

_TOP_KEYS = frozenset({"listen", "certificates", "key_server_tls", "origin", "tickets", "limits", "metrics_addr",
                       "workers", "tls12", "rsa_key_exchange", "loglevel", "log_format", "strict_permissions"})
_LISTEN_KEYS = frozenset({"address", "port", "groups", "hybrid_hello_retry"})
_KEY_SERVER_TLS_KEYS = frozenset({"client_cert", "client_key", "ca", "timeout", "server_name", "send_client_ip",
                                  "hedge_delay_min", "hedge_delay_max", "hedge_budget_percent", "eject_after",
                                  "ejection_time"})
_ORIGIN_KEYS = frozenset({"mode", "address", "proxy_protocol", "connect_timeout", "response_timeout", "pool_size"})
_TICKET_KEYS = frozenset({"enabled", "key_files", "redis", "rotation", "lifetime", "session_cache_size"})
_LIMIT_KEYS = frozenset({"handshake_timeout", "idle_timeout", "send_timeout", "max_connections", "max_header_size",
                         "drain_timeout"})
# A site's keys. A site sub-section (such as client_auth:) adds its name here and one reader call in _site().
SITE_KEYS = {"names", "chain", "key_servers", "key_server_tls", "key_file", "default", "client_auth"}

ENVIRONMENT = env_overrides(
    ("metrics_addr", "workers", "tls12", "rsa_key_exchange", "loglevel", "log_format", "strict_permissions"),
    {"key_server_tls": sorted(_KEY_SERVER_TLS_KEYS), "origin": sorted(_ORIGIN_KEYS), "tickets": sorted(_TICKET_KEYS),
     "limits": sorted(_LIMIT_KEYS)},
)


def environment_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """A warning per ``KEYLESS_*`` variable this daemon does not read (a typo, with a did-you-mean)."""
    return unknown_variables(ENVIRONMENT, environ)


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> EdgeConfig:
    """Read and validate an edge configuration file; relative paths are relative to the file."""
    path = Path(path)
    document, origin = load_yaml(path)
    apply_environment(document, origin, ENVIRONMENT, environ)
    return _read(document, origin, path)


def parse_config(document: object, *, base: Path, source: Path | None = None) -> EdgeConfig:
    """Validate an already-parsed document (no environment overrides)."""
    return _read(document, Origin(source, base), source)


def _read(document: object, origin: Origin, source: Path | None) -> EdgeConfig:
    collect = Collector()
    config = _build(Section(document, "", origin, _TOP_KEYS, collect), source, collect)
    collect.check()  # every problem, one line each, before any is acted on
    return config


def _build(top: Section, source: Path | None, collect: Collector) -> EdgeConfig:
    """The schema: one reader per key; a bad key is collected and its default stands in meanwhile."""
    read = collect.read
    default_tls = read(lambda: _key_server_tls(top.section("key_server_tls", _KEY_SERVER_TLS_KEYS))
                       if top.has("key_server_tls") else None, None)
    return EdgeConfig(
        listeners=read(lambda: _listeners(top), ()),
        sites=_sites(top, default_tls, collect),
        origin=read(lambda: _origin(top), OriginConfig("http", "", 0)),
        tickets=read(lambda: _tickets(top.section("tickets", _TICKET_KEYS)), TicketConfig()),
        limits=read(lambda: _limits(top.section("limits", _LIMIT_KEYS)), Limits()),
        metrics_addr=read(lambda: top.host_port("metrics_addr", listen=True) if top.raw("metrics_addr") else None,
                          None),
        workers=read(lambda: top.integer("workers", 1, 1, 256), 1),
        enable_tls12=read(lambda: top.boolean("tls12", True), True),
        enable_rsa_key_exchange=read(lambda: top.boolean("rsa_key_exchange", False), False),
        loglevel=read(top.log_level, "INFO"),
        log_format=read(top.log_format, "text"),
        source=source,
        key_server_tls=default_tls,
        strict_permissions=top.boolean("strict_permissions", True),
    )


def _listeners(top: Section) -> tuple[Listener, ...]:
    entries = top.sections("listen", _LISTEN_KEYS, default=[{"address": "127.0.0.1", "port": 8443}])
    if not entries:
        raise top.error("listen", "must be a non-empty list", "write listen: [{address: 0.0.0.0, port: 443}]")
    return tuple(Listener(entry.listen_host("address", "127.0.0.1"), entry.integer("port", 443, 0, 65535),
                          groups=_groups(entry), hybrid_hello_retry=entry.boolean("hybrid_hello_retry", False))
                 for entry in entries)


def _groups(entry: Section) -> tuple[int, ...] | None:
    """A listener's key-exchange groups, most preferred first, by IANA name (case-insensitive)."""
    if not entry.has("groups"):
        return None
    known = {GROUP_NAMES[code].lower(): code for code in TLS13_GROUPS}
    choices = ", ".join(GROUP_NAMES[code] for code in sorted(TLS13_GROUPS, key=lambda code: (code < 0x100, code)))
    names = entry.strings("groups", "group names", "X25519MLKEM768, x25519, secp256r1")
    codes: list[int] = []
    for name in names:
        code = known.get(name.lower())
        if code is None:
            raise entry.error("groups", f"{name!r} is not a group this edge implements", f"use some of: {choices}")
        if code in codes:
            raise entry.error("groups", f"{name!r} is listed twice", "list each group once")
        codes.append(code)
    if not codes:
        raise entry.error("groups", "is empty", "list at least one group, or remove groups: for the default")
    if not any(code in ECDHE_GROUPS for code in codes):
        raise entry.error("groups", "has no classical group (TLS 1.2 and clients without ML-KEM need one)",
                          "add x25519 (and secp256r1)")
    return tuple(codes)


def _sites(top: Section, default_tls: KeyServerTLS | None, collect: Collector) -> tuple[SiteConfig, ...]:
    value = top.raw("certificates")
    if not isinstance(value, list) or not value:
        collect.add(top.error("certificates", "at least one certificate is needed",
                              "add certificates: [{names: [...], chain: ..., ...}]"))
        return ()
    sites: dict[int, SiteConfig] = {}
    for index, item in enumerate(value):  # each site on its own: one bad site hides no other's problems
        site = collect.read(lambda item=item, index=index: _site(  # type: ignore[misc]
            Section(item, f"certificates[{index}]", top.origin, SITE_KEYS), default_tls), None)
        if site is not None:
            sites[index] = site
    defaults = [index for index, site in sites.items() if site.default]
    if len(defaults) > 1:
        collect.add(top.error(f"certificates[{defaults[1]}].default", "more than one default certificate",
                              "keep one"))
    return tuple(sites.values())


def _site(entry: Section, default_tls: KeyServerTLS | None) -> SiteConfig:
    names = entry.raw("names", [])
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise entry.error("names", "must be a list of host names", 'write names: [example.com, "*.example.com"]')
    for name in names:
        _check_name(entry, name)
    if not entry.has("chain"):
        raise entry.error("chain", "missing", "give the PEM file with the certificate chain, leaf first")
    chain = entry.file("chain")
    if entry.has("key_file") and entry.has("key_servers"):
        raise entry.error("", "has both key_file and key_servers", "keep one: the key lives in one place")
    servers: tuple[tuple[str, int], ...] = ()
    key_file = None
    tls = default_tls
    if entry.has("key_file"):
        key_file = entry.file("key_file")
    elif entry.has("key_servers"):
        raw = entry.raw("key_servers")
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise entry.error("key_servers", "must be a non-empty list", 'write key_servers: ["10.0.0.7:2407"]')
        servers = tuple(entry.host_port_value(f"key_servers[{i}]", s, default_port=DEFAULT_KEYSERVER_PORT)
                        for i, s in enumerate(raw))
        if entry.has("key_server_tls"):
            tls = _key_server_tls(entry.section("key_server_tls", _KEY_SERVER_TLS_KEYS))
        if tls is None:
            raise ConfigError("key_server_tls", f"{entry.path} uses key servers but no mTLS settings are given",
                              "add key_server_tls: {client_cert: ..., client_key: ..., ca: ...}",
                              file=entry.origin.file)
    else:
        raise entry.error("", "says nowhere where the private key is", "add key_servers: [host:port] (or key_file)")
    # Site sub-sections plug in here: read with their own parser over entry.section(NAME, KEYS) (their
    # errors then name certificates[i].NAME.key), stored in a SiteConfig field; NAME joins SITE_KEYS.
    return SiteConfig(
        names=tuple(n.lower() for n in names),
        chain=chain,
        key_servers=servers,
        key_server_tls=tls if servers else None,
        key_file=key_file,
        default=entry.boolean("default", False),
        client_auth=parse_client_auth(entry.raw("client_auth", None), entry.where("client_auth"), entry.origin.base),
    )


def _check_name(entry: Section, name: str) -> None:
    labels = name.lower().split(".")
    if name.endswith(".") or any(not label for label in labels):
        raise entry.error("names", f"{name!r} is not a host name", "write names without empty labels or a trailing dot")
    if "*" in name and (labels[0] != "*" or "*" in ".".join(labels[1:]) or len(labels) < 3):
        raise entry.error("names", f"{name!r}: a wildcard must be the whole first label", 'write "*.example.com"')


def _key_server_tls(entry: Section) -> KeyServerTLS:
    for name in ("client_cert", "client_key", "ca"):
        if not entry.has(name):
            raise entry.error(name, "missing", f"give the PEM file for {name.replace('_', ' ')}")
    return KeyServerTLS(
        client_cert=entry.file("client_cert"),
        client_key=entry.file("client_key"),
        ca=entry.file("ca"),
        timeout=entry.duration("timeout", 10.0, 0.05, 300.0),
        server_name=entry.text("server_name"),
        send_client_ip=entry.boolean("send_client_ip", False),
        **_resilience(entry),
    )


def _resilience(entry: Section) -> dict[str, Any]:
    low = entry.duration("hedge_delay_min", 0.025, 0.001, 60.0)
    high = entry.duration("hedge_delay_max", 1.0, 0.001, 60.0)
    if high < low:
        raise entry.error("hedge_delay_max", f"is below hedge_delay_min ({low:g}s)",
                          "give hedge_delay_max >= hedge_delay_min")
    return {
        "hedge_delay_min": low,
        "hedge_delay_max": high,
        "hedge_budget_percent": entry.integer("hedge_budget_percent", 10, 0, 100),
        "eject_after": entry.integer("eject_after", 3, 1, 1000),
        "ejection_time": entry.duration("ejection_time", 10.0, 0.0, 3600.0),
    }


def _origin(top: Section) -> OriginConfig:
    if not top.has("origin"):
        raise top.error("origin", "missing", "add origin: {mode: http, address: 127.0.0.1:8080}")
    entry = top.section("origin", _ORIGIN_KEYS)
    mode = entry.enum("mode", "http", {"http": "http", "tcp": "tcp"}, "use http (reverse proxy) or tcp (byte pipe)")
    if not entry.has("address"):
        raise entry.error("address", "missing", "give the origin as host:port")
    host, port = entry.host_port("address")
    proxy_protocol = entry.boolean("proxy_protocol", False)
    if proxy_protocol and mode != "tcp":
        raise entry.error("proxy_protocol", "only for mode tcp", "http mode sends X-Forwarded-For instead")
    return OriginConfig(
        mode=mode,
        host=host,
        port=port,
        proxy_protocol=proxy_protocol,
        connect_timeout=entry.duration("connect_timeout", 5.0, 0.01, 600.0),
        response_timeout=entry.duration("response_timeout", 30.0, 0.01, 3600.0),
        pool_size=entry.integer("pool_size", 8, 0, 1024),
    )


def _tickets(entry: Section) -> TicketConfig:
    files = tuple(entry.existing(f"key_files[{i}]", entry.resolve("key_files", name))
                  for i, name in enumerate(entry.strings("key_files", "files", "/etc/keyless/ticket.key")))
    redis_url = entry.redis_url("redis")
    if redis_url and files:
        raise entry.error("redis", "given together with tickets.key_files", "keep one source of ticket keys")
    return TicketConfig(
        enabled=entry.boolean("enabled", True),
        key_files=files,
        redis_url=redis_url,
        rotation=entry.duration("rotation", DEFAULT_TICKET_ROTATION, 1.0, 604800.0),
        lifetime=entry.integer("lifetime", DEFAULT_TICKET_LIFETIME, 1, 604800),
        session_cache_size=entry.integer("session_cache_size", 10000, 0, 10_000_000),
    )


def _limits(entry: Section) -> Limits:
    return Limits(
        handshake_timeout=entry.duration("handshake_timeout", 10.0, 0.01, 600.0),
        idle_timeout=entry.duration("idle_timeout", 60.0, 0.01, 86400.0),
        max_connections=entry.integer("max_connections", 10000, 1, 1_000_000),
        max_header_size=entry.size("max_header_size", 16384, 1024, 1 << 20),
        drain_timeout=entry.duration("drain_timeout", 30.0, 0.0, 3600.0),
        send_timeout=entry.duration("send_timeout", 60.0, 0.01, 3600.0),
    )


# --- the files the configuration names ----------------------------------------------------------------


def check_material(config: EdgeConfig) -> tuple[list[ConfigError], list[str]]:
    """Read every certificate, key and ticket-key file as start-up does: (problems, warnings), one line each.

    Warnings are for certificates out of their validity period: they are served (an operator may be
    replacing them right now) but never silently."""
    from keyless.tls.tickets import load_key_file

    file = config.source
    problems: list[ConfigError] = []
    warnings: list[str] = []
    for index, site in enumerate(config.sites):
        key = f"certificates[{index}]"
        try:
            chain = read_chain(site.chain)
            if not chain:
                raise MaterialProblem(f"{str(site.chain)!r} holds no certificate", "give PEM, leaf first")
            problem = validity_problem(chain[0])
            if problem:
                where = f"{file}: " if file is not None else ""
                warnings.append(f"{where}{key}.chain: the certificate for {site.label} {problem}")
            if site.key_file is not None:
                try:
                    check_key_matches(read_private_key(site.key_file), chain[0], f"{key}.chain")
                except MaterialProblem as exc:
                    problems.append(ConfigError(f"{key}.key_file", exc.problem, exc.fix, file=file))
        except MaterialProblem as exc:
            problems.append(ConfigError(f"{key}.chain", exc.problem, exc.fix, file=file))
        if site.key_server_tls is not None and site.key_server_tls is not config.key_server_tls:
            problems.extend(_check_key_server_tls(site.key_server_tls, f"{key}.key_server_tls", file))
    if config.key_server_tls is not None:
        problems.extend(_check_key_server_tls(config.key_server_tls, "key_server_tls", file))
    for index, path in enumerate(config.tickets.key_files):
        try:
            load_key_file(path)
        except (OSError, ValueError):
            problems.append(ConfigError(
                f"tickets.key_files[{index}]", f"{str(path)!r} is not a ticket key file of 48 or n*80 bytes",
                "write 80 random bytes: openssl rand 80 > ticket.key", file=file))
    return problems, warnings


def _check_key_server_tls(tls: KeyServerTLS, key: str, file: Path | None) -> list[ConfigError]:
    return check_tls_files(tls.client_cert, tls.client_key, tls.ca,
                           (f"{key}.client_cert", f"{key}.client_key", f"{key}.ca"), file)


__all__ = [
    "ConfigError",
    "EdgeConfig",
    "KeyServerTLS",
    "Limits",
    "Listener",
    "OriginConfig",
    "SiteConfig",
    "TicketConfig",
    "check_material",
    "environment_warnings",
    "load_config",
    "parse_config",
]
