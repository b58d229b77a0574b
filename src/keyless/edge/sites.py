"""Certificates by SNI, and where their keys are.

``build_sites`` turns the configuration into a ``SiteTable``: every chain loaded, every key bound —
a ``LocalKey`` for a key file (testing), or a remote key from ``keyless.client`` for key servers
(one shared client per distinct key-server list, so sites on the same key servers share connections).
``SiteTable.select`` is the TLS engine's certificate callback: exact name, then a one-label wildcard,
then the default site; among several certificates for one name, the first whose signature schemes the
client offers (so an ECDSA site can keep an RSA certificate for old clients).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyless.edge.config import ConfigError, EdgeConfig, KeyServerTLS, SiteConfig
from keyless.keys.local import LocalKey
from keyless.keys.permissions import UnsafeKeyFile, check_key_file
from keyless.tls.config import CertifiedKey, ClientHelloInfo

log = logging.getLogger("keyless.edge.sites")

TLS13 = 0x0304


class KeyServerGroup(Protocol):
    """A client to one list of key servers, shared by the sites whose keys live there."""

    def remote_key(self, certificate: x509.Certificate) -> object: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


GroupFactory = Callable[[tuple[tuple[str, int], ...], KeyServerTLS], KeyServerGroup]


@dataclass(frozen=True)
class Site:
    config: SiteConfig
    certified: CertifiedKey
    group: KeyServerGroup | None = field(default=None, repr=False)


class SiteTable:
    """Immutable lookup tables; an edge swaps the whole table on reload."""

    def __init__(self, sites: Sequence[Site], groups: dict[Any, KeyServerGroup]) -> None:
        if not sites:
            raise ValueError("a site table needs at least one site")
        self.sites = tuple(sites)
        self.groups = groups
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
        return [self.default]

    def select(self, hello: ClientHelloInfo) -> CertifiedKey | None:
        """The certificate callback: never raises; None only if nothing at all fits."""
        candidates = self.lookup(hello.server_name)
        offered = set(hello.signature_schemes)
        for site in candidates:
            schemes = site.certified.tls13_schemes if hello.version == TLS13 else site.certified.tls12_schemes
            if not offered or offered.intersection(schemes):
                return site.certified
        return candidates[0].certified

    async def close(self) -> None:
        for group in self.groups.values():
            try:
                await group.close()
            except Exception:
                log.exception("closing a key-server client failed")

    async def ping_all(self) -> dict[str, bool]:
        """Readiness: does a key server answer for every certificate that uses key servers?"""
        results: dict[str, bool] = {}
        for key, group in self.groups.items():
            try:
                results[_group_label(key)] = await group.ping()
            except Exception:
                results[_group_label(key)] = False
        return results


def _group_label(key: Any) -> str:
    servers = key[0]
    return ",".join(f"{host}:{port}" for host, port in servers)


def load_chain(path: Path, key: str) -> tuple[x509.Certificate, ...]:
    try:
        chain = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            key, f"cannot read a PEM certificate chain from {str(path)!r}", "give PEM, leaf first"
        ) from exc
    if not chain:
        raise ConfigError(key, f"no certificate in {str(path)!r}", "give PEM, leaf first")
    return tuple(chain)


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
        raise ConfigError(key, f"unsupported key type {type(private).__name__}", "use RSA, ECDSA or Ed25519") from exc
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if local.public_key.public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise ConfigError(
            key, "the key does not belong to the chain's leaf certificate", "pair each chain with its key"
        )
    return local


def build_sites(
    config: EdgeConfig,
    group_factory: GroupFactory | None = None,
    wrap_key: Callable[[object], object] | None = None,
) -> SiteTable:
    """Load every site; key-server groups are created through ``group_factory`` (default: keyless.client);
    ``wrap_key`` may wrap each key (the edge instruments them for metrics)."""
    factory = group_factory if group_factory is not None else default_group_factory
    groups: dict[Any, KeyServerGroup] = {}
    sites = []
    for index, site_config in enumerate(config.sites):
        key_name = f"certificates[{index}]"
        chain = load_chain(site_config.chain, f"{key_name}.chain")
        group = None
        if site_config.key_file is not None:
            key: object = load_local_key(site_config.key_file, chain[0], f"{key_name}.key_file",
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
            raise ConfigError(f"{key_name}.chain", str(exc), "use an RSA, ECDSA or Ed25519 certificate") from exc
        _warn_uncovered_names(site_config, chain[0])
        sites.append(Site(site_config, certified, group))
    return SiteTable(sites, groups)


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


PingFunction = Callable[[], Awaitable[bool]]

__all__ = ["KeyServerGroup", "Site", "SiteTable", "build_sites", "load_chain", "load_local_key"]
