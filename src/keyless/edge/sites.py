"""Certificates by SNI, and where their keys are.

``build_sites`` turns the configuration into a ``SiteTable``: every chain loaded, every key bound —
a ``LocalKey`` for a key file (testing), or a remote key from ``keyless.client`` for key servers
(one shared client per distinct key-server list, so sites on the same key servers share connections).
``SiteTable.select`` is the TLS engine's certificate callback. The SNI picks the names: an exact name, then a
one-label wildcard, then the default names (those of the ``default: true`` certificate, also for a client
without SNI). Among all certificates of those names it picks by what the client offers, as nginx/OpenSSL do
with several certificates per server: in TLS 1.3 an ML-DSA certificate whose scheme the client offers (post-quantum
first, like the hybrid groups), else the first (the default certificate first, then file order) whose signature
scheme the client accepts, so clients without ML-DSA get the classical certificate of the same names; in TLS 1.2
(which has no ML-DSA) the one that serves our most preferred cipher suite the
client offers, with a signature scheme and group it accepts (so an ECDSA + RSA pair serves ECDHE-ECDSA and
ECDHE-RSA-only clients alike). When nothing fits, the first certificate: the engine then sends the alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyless.edge.client_auth import NO_CLIENT_AUTH, ClientAuthConfig, check_shared_names, strip_prefixes
from keyless.edge.config import ConfigError, EdgeConfig, KeyServerTLS, SiteConfig
from keyless.keys.base import AsyncPrivateKey
from keyless.keys.local import LocalKey
from keyless.keys.permissions import UnsafeKeyFile, check_key_file
from keyless.runtime.errors import MaterialProblem
from keyless.runtime.tls_material import read_chain
from keyless.tls.config import CertifiedKey, ClientHelloInfo
from keyless.tls.suites import DEFAULT_GROUPS, choose_signature_scheme
from keyless.tls.tls12_suites import enabled_suites, negotiate

log = logging.getLogger("keyless.edge.sites")

TLS13 = 0x0304
# The TLS 1.2 settings the edge runs the engine with (ServerConfig's defaults; only RSA key exchange is
# configurable): selection must predict the engine's negotiation exactly.
_TLS12_SUITES: tuple[int, ...] = ()
_GROUPS = tuple(int(g) for g in DEFAULT_GROUPS)
_ALLOW_SHA1 = False


class KeyServerGroup(Protocol):
    """A client to one list of key servers, shared by the sites whose keys live there."""

    def remote_key(self, certificate: x509.Certificate) -> AsyncPrivateKey: ...

    async def ping_each(self) -> dict[str, float | None]:
        """Round trip per key server ("host:port"), None for one that did not answer."""
        ...

    async def close(self) -> None: ...


GroupFactory = Callable[[tuple[tuple[str, int], ...], KeyServerTLS], KeyServerGroup]
GroupKey = tuple[tuple[tuple[str, int], ...], KeyServerTLS]  # one group per (key servers, mTLS settings)


@dataclass(frozen=True)
class Site:
    config: SiteConfig
    certified: CertifiedKey
    group: KeyServerGroup | None = field(default=None, repr=False)

    @property
    def client_auth(self) -> ClientAuthConfig:
        return self.config.client_auth or NO_CLIENT_AUTH


class SiteTable:
    """Immutable lookup tables; an edge swaps the whole table on reload."""

    def __init__(
        self, sites: Sequence[Site], groups: dict[GroupKey, KeyServerGroup], *, enable_rsa_key_exchange: bool = False
    ) -> None:
        if not sites:
            raise ValueError("a site table needs at least one site")
        self.sites = tuple(sites)
        self.groups = groups
        self.enable_rsa_key_exchange = enable_rsa_key_exchange
        self.exact: dict[str, list[Site]] = {}
        self.wildcard: dict[str, list[Site]] = {}
        for site in sites:
            for name in site.config.names:
                if name.startswith("*."):
                    self.wildcard.setdefault(name[2:], []).append(site)
                else:
                    self.exact.setdefault(name, []).append(site)
        defaults = [s for s in sites if s.config.default]
        self.default = defaults[0] if defaults else sites[0]
        # The default names: the default certificate first, then every certificate sharing one of its names.
        default_names = set(self.default.config.names)
        self.default_sites = [self.default] + [
            s for s in sites if s is not self.default and default_names.intersection(s.config.names)
        ]
        # Client authentication is per name (certificates sharing a name agree: build_sites checks).
        self.client_auth_policies = tuple(dict.fromkeys(site.client_auth for site in sites))
        self.client_auth_in_use = any(policy.enabled for policy in self.client_auth_policies)
        self.identity_header_prefixes = strip_prefixes(self.client_auth_policies)
        # ML-DSA certificates whose key servers answered "bad opcode" (a reference key server: no ML-DSA),
        # by id(): key_check.py withdraws them so clients get the classical certificate of the same names.
        self.withdrawn: set[int] = set()
        self._tls12_suite_order = {
            suite.code: rank for rank, suite in enumerate(enabled_suites(_TLS12_SUITES, enable_rsa_key_exchange))
        }

    def lookup(self, server_name: str | None) -> list[Site]:
        if server_name:
            name = server_name.lower().rstrip(".")
            found = self.exact.get(name)
            if found:
                return found
            _, dot, parent = name.partition(".")
            if dot:
                found = self.wildcard.get(parent)
                if found:
                    return found
        return self.default_sites

    def client_auth_for(self, server_name: str | None) -> ClientAuthConfig:
        """The client authentication of the names ``server_name`` selects (the default names without one)."""
        return self.lookup(server_name)[0].client_auth

    def select(self, hello: ClientHelloInfo) -> CertifiedKey | None:
        """The certificate callback: never raises; None only if nothing at all fits."""
        candidates = self.lookup(hello.server_name)
        if len(candidates) == 1:
            return candidates[0].certified  # nothing to choose: the engine checks the fit
        if hello.version == TLS13:
            first_fit: CertifiedKey | None = None
            for site in candidates:
                if choose_signature_scheme(site.certified.tls13_schemes, hello.signature_schemes) is not None:
                    if site.certified.key_type.startswith("mldsa"):
                        if id(site.certified) not in self.withdrawn:
                            return site.certified
                        continue
                    first_fit = first_fit or site.certified
            return first_fit or candidates[0].certified
        best, best_rank = candidates[0], len(self._tls12_suite_order)
        for site in candidates:
            rank = self._tls12_rank(site.certified, hello)
            if rank < best_rank:
                best, best_rank = site, rank
        return best.certified

    def withdraw(self, site: Site) -> None:
        """Stop choosing ``site`` while another certificate of its names fits (its key servers cannot sign
        for it); with no alternative it is still chosen, and its handshakes fail with an alert."""
        self.withdrawn.add(id(site.certified))

    def _tls12_rank(self, certified: CertifiedKey, hello: ClientHelloInfo) -> int:
        """Our preference rank of the suite the engine would negotiate with this certificate (lower is better;
        ``len(order)`` when it could negotiate none): the same pure, cached function the engine calls."""
        choice = negotiate(
            certified.key_type,
            certified.tls12_schemes,
            certified.rsa_key_exchange,
            _TLS12_SUITES,
            self.enable_rsa_key_exchange,
            _GROUPS,
            _ALLOW_SHA1,
            hello.cipher_suites,
            hello.signature_schemes,
            hello.groups,
        )
        if choice is None:
            return len(self._tls12_suite_order)
        return self._tls12_suite_order[choice[0].code]

    async def close(self) -> None:
        for group in self.groups.values():
            try:
                await group.close()
            except Exception:
                log.exception("closing a key-server client failed")

    def group_labels(self) -> list[str]:
        return [_group_label(key) for key in self.groups]

    async def check_key_servers(self) -> KeyServerHealth:
        """Readiness and health: every key server pinged once, all groups at once; a group is up while one
        of its servers answers."""

        async def ping(key: GroupKey, group: KeyServerGroup) -> dict[str, float | None]:
            try:
                return await group.ping_each()
            except Exception:
                return {_server_label(host, port): None for host, port in key[0]}

        results = await asyncio.gather(*(ping(key, group) for key, group in self.groups.items()))
        groups: dict[str, bool] = {}
        servers: dict[str, float | None] = {}
        for key, each in zip(self.groups, results, strict=True):
            servers.update(each)
            groups[_group_label(key)] = any(value is not None for value in each.values())
        return KeyServerHealth(groups, servers)


@dataclass(frozen=True)
class KeyServerHealth:
    groups: dict[str, bool]  # "host:port,host:port" of a site's key servers -> one of them answered
    servers: dict[str, float | None]  # "host:port" -> ping round trip in seconds, None if it failed

    def failing(self) -> list[str]:
        """The key servers of every group that has none answering, for /readyz."""
        return [label for label, up in self.groups.items() if not up]


def _server_label(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _group_label(key: GroupKey) -> str:
    servers = key[0]
    return ",".join(f"{host}:{port}" for host, port in servers)


def load_chain(path: Path, key: str) -> tuple[x509.Certificate, ...]:
    """The site's chain, leaf first, each certificate issued by the next (as ``--check-config`` checks it)."""
    try:
        return tuple(read_chain(path))
    except MaterialProblem as exc:
        raise exc.at(key) from None


def check_private_key(path: Path, key: str, strict: bool) -> None:
    """Refuse a private key file others could read, write or replace (``keyless.keys.permissions``)."""
    try:
        check_key_file(path, strict=strict)
    except UnsafeKeyFile as exc:
        raise ConfigError(key, f"{exc.path}: {exc.reason}", "run the chmod/chown named above") from None


def load_local_key(path: Path, leaf: x509.Certificate, key: str, *, strict_permissions: bool = True) -> LocalKey:
    check_private_key(path, key, strict_permissions)
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            key, "cannot read an unencrypted PEM private key", "give a PKCS#8 or traditional PEM key"
        ) from exc
    try:
        local = LocalKey(private)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigError(
            key, f"unsupported key type {type(private).__name__}", "use RSA, ECDSA, Ed25519 or ML-DSA"
        ) from exc
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if local.public_key.public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise ConfigError(
            key, "the key does not belong to the chain's leaf certificate", "pair each chain with its key"
        )
    return local


def build_sites(
    config: EdgeConfig,
    group_factory: GroupFactory | None = None,
    wrap_key: Callable[[AsyncPrivateKey], AsyncPrivateKey] | None = None,
    *,
    warn: bool = True,
) -> SiteTable:
    """Load every site; key-server groups are created through ``group_factory`` (default: keyless.client);
    ``wrap_key`` may wrap each key (the edge instruments them for metrics). ``warn``: log a configured
    name a certificate does not cover (False in all but one of the processes sharing a configuration)."""
    factory = group_factory if group_factory is not None else default_group_factory
    check_shared_names([(site.names, site.client_auth or NO_CLIENT_AUTH) for site in config.sites])
    groups: dict[GroupKey, KeyServerGroup] = {}
    sites = []
    for index, site_config in enumerate(config.sites):
        key_name = f"certificates[{index}]"
        chain = load_chain(site_config.chain, f"{key_name}.chain")
        group = None
        if site_config.key_file is not None:
            key: AsyncPrivateKey = load_local_key(site_config.key_file, chain[0], f"{key_name}.key_file",
                                                  strict_permissions=config.strict_permissions)
        else:
            tls = site_config.key_server_tls
            if tls is None:  # the config parser guarantees it; keep mypy and a future caller honest
                raise ConfigError(key_name, "key servers without mTLS settings", "add key_server_tls")
            group_key = (site_config.key_servers, tls)
            group = groups.get(group_key)
            if group is None:
                check_private_key(tls.client_key, f"{key_name}.key_server_tls.client_key", config.strict_permissions)
                group = groups[group_key] = factory(site_config.key_servers, tls)
            key = group.remote_key(chain[0])
        if wrap_key is not None:
            key = wrap_key(key)
        try:
            certified = CertifiedKey(chain=chain, key=key)
        except ValueError as exc:
            raise ConfigError(
                f"{key_name}.chain", str(exc), "use an RSA, ECDSA, Ed25519 or ML-DSA certificate"
            ) from exc
        if warn:
            _warn_uncovered_names(site_config, chain[0])
        sites.append(Site(site_config, certified, group))
    return SiteTable(sites, groups, enable_rsa_key_exchange=config.enable_rsa_key_exchange)


def _warn_uncovered_names(site: SiteConfig, leaf: x509.Certificate) -> None:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = {name.lower() for name in san.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        dns = set()
    for name in site.names:
        if name not in dns and not (name.partition(".")[2] and f"*.{name.partition('.')[2]}" in dns):
            log.warning("certificate %s does not cover configured name %s", site.chain, name)


def default_group_factory(servers: tuple[tuple[str, int], ...], tls: KeyServerTLS) -> KeyServerGroup:
    from keyless.edge.keyservers import ClientGroup

    return ClientGroup(servers, tls)


__all__ = ["KeyServerGroup", "Site", "SiteTable", "build_sites", "load_chain", "load_local_key"]
