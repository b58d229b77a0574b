"""One edge process: TLS listeners, the current sites and TLS settings, the proxy, readiness, reload and drain.

``Edge`` is what a worker runs (or the only process, with one worker). It owns nothing global: the
ticket ring comes from its caller (the parent's shared secret, key files or Redis) and the metrics
object is passed in, so tests can run several edges in one process.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from keyless.edge.client_auth import anchored, identity_headers
from keyless.edge.config import EdgeConfig, Listener, check_material
from keyless.edge.http_proxy import HTTPProxy, ProxySettings
from keyless.edge.listener import TLSListener, instrument
from keyless.edge.metrics import EdgeMetrics
from keyless.edge.sites import GroupFactory, KeyServerHealth, SiteTable, build_sites
from keyless.edge.tcp_proxy import TCPProxy
from keyless.edge.tickets import build_ticket_ring
from keyless.runtime.config import ConfigError, changed_keys, listen_error
from keyless.runtime.logging import speaks_for_all
from keyless.tls.asyncio_adapter import TLSStream
from keyless.tls.config import CertifiedKey, ClientHelloInfo, ServerConfig
from keyless.tls.session_cache import MemorySessionCache

log = logging.getLogger("keyless.edge")

# Settings a running edge cannot change (attribute -> configuration key): its sockets, processes and metrics port.
RESTART_KEYS = {"listeners": "listen", "workers": "workers", "metrics_addr": "metrics_addr",
                "log_format": "log_format"}

READINESS_INTERVAL = 2.0
READINESS_TIMEOUT = 2.0


class Edge:
    def __init__(
        self,
        config: EdgeConfig,
        metrics: EdgeMetrics,
        *,
        ticket_master_secret: bytes | None = None,
        group_factory: GroupFactory | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self._group_factory = group_factory
        self._ticket_secret = ticket_master_secret
        self.ticket_ring = build_ticket_ring(config.tickets, ticket_master_secret)
        self.sites = self._load_sites(config)
        self.session_cache = (
            MemorySessionCache(config.tickets.session_cache_size, max_lifetime=config.tickets.lifetime)
            if config.tickets.session_cache_size
            else None
        )
        self.tls_config = self._tls_config(config)
        self.listener_tls_configs = self._listener_tls_configs(config)
        self.proxy = self._make_proxy(config)
        self.listener = TLSListener(
            lambda: self.tls_config,
            metrics,
            handshake_timeout=config.limits.handshake_timeout,
            max_connections=config.limits.max_connections,
        )
        self.ports: list[int] = []
        self.health: KeyServerHealth | None = None  # the last readiness round
        self._readiness_task: asyncio.Task[None] | None = None
        self._ticket_refresh_task: asyncio.Task[None] | None = None
        self._key_check_task: asyncio.Task[None] | None = None
        self._key_check_first_pass = asyncio.Event()

    # --- construction ---------------------------------------------------------------------------

    def _load_sites(self, config: EdgeConfig) -> SiteTable:
        """Check every file as --check-config does (start-up and SIGHUP alike), then load the sites."""
        problems, warnings = check_material(config)
        if problems:
            raise problems[0]
        speaks = speaks_for_all()
        for warning in warnings if speaks else ():
            log.warning("%s", warning)
        try:
            return build_sites(config, self._group_factory, wrap_key=lambda key: instrument(key, self.metrics),
                               warn=speaks)
        except ConfigError as exc:
            raise exc.located(config.source) from None

    def _tls_config(self, config: EdgeConfig, listener: Listener | None = None) -> ServerConfig:
        """The engine's settings; a listener's own groups go into the base, so client-auth variants keep them."""
        base = ServerConfig(
            certificate_callback=self._select,
            alpn_protocols=("http/1.1",) if config.origin.mode == "http" else (),
            ticket_keys=self.ticket_ring,
            ticket_lifetime=config.tickets.lifetime,
            session_cache=self.session_cache,
            enable_tls12=config.enable_tls12,
            enable_rsa_key_exchange=config.enable_rsa_key_exchange,
            hybrid_hello_retry=listener is not None and listener.hybrid_hello_retry,
        )
        if listener is not None and listener.groups is not None:
            base = replace(base, groups=listener.groups)
        return with_client_auth(base, self.sites)

    def _listener_tls_configs(self, config: EdgeConfig) -> tuple[ServerConfig, ...]:
        """One ServerConfig per listener: the shared one unless the listener sets groups or hybrid_hello_retry."""
        return tuple(
            self.tls_config if listener.groups is None and not listener.hybrid_hello_retry
            else self._tls_config(config, listener)
            for listener in config.listeners
        )

    def _select(self, hello: ClientHelloInfo) -> CertifiedKey | None:
        return self.sites.select(hello)  # read at call time: a reload swaps self.sites

    def _make_proxy(self, config: EdgeConfig) -> HTTPProxy | TCPProxy:
        origin, limits = config.origin, config.limits
        if origin.mode == "tcp":
            return TCPProxy(
                origin.host,
                origin.port,
                proxy_protocol=origin.proxy_protocol,
                connect_timeout=origin.connect_timeout,
                idle_timeout=limits.idle_timeout,
                send_timeout=limits.send_timeout,
                observer=self.metrics,
            )
        settings = ProxySettings(
            origin_host=origin.host,
            origin_port=origin.port,
            connect_timeout=origin.connect_timeout,
            response_timeout=origin.response_timeout,
            idle_timeout=limits.idle_timeout,
            send_timeout=limits.send_timeout,
            max_header_size=limits.max_header_size,
            pool_size=origin.pool_size,
            identity_header_prefixes=self.sites.identity_header_prefixes,
        )
        return HTTPProxy(settings, self.metrics)

    # --- running --------------------------------------------------------------------------------

    async def start(self, ports: list[int] | None = None, *, reuse_port: bool = False) -> list[int]:
        """Listen on every configured listener (``ports`` overrides their ports, in order)."""
        for index, listener in enumerate(self.config.listeners):
            port = ports[index] if ports is not None else listener.port
            local = [(listener.address, port)]  # the bound port is known only after listen()
            try:
                bound = await self.listener.listen(
                    lambda stream, local=local: self.handle(stream, local[0]),  # type: ignore[misc]
                    listener.address,
                    port,
                    reuse_port=reuse_port,
                    config_provider=lambda index=index: self.listener_tls_configs[index],  # type: ignore[misc]
                )
            except OSError as exc:
                raise listen_error(exc, listener.address, port, f"listen[{index}]", self.config.source) from None
            local[0] = (listener.address, bound)
            self.ports.append(bound)
        self._readiness_task = asyncio.create_task(self._readiness_loop())
        self._start_key_check()
        if self.ticket_ring is not None:
            # Ticket keys (files, Redis, rotation) are re-read here, never inside a handshake; the task follows
            # the ring a reload installs.
            from keyless.tls.asyncio_adapter import refresh_ticket_keys

            self._ticket_refresh_task = asyncio.create_task(refresh_ticket_keys(lambda: self.ticket_ring))
        return self.ports

    async def handle(self, stream: TLSStream, local: tuple[str, int]) -> None:
        proxy = self.proxy
        peer = _address(stream.peername)
        sites = self.sites
        policy = sites.client_auth_for(stream.info.sni)
        certificates = stream.info.client_certificates
        if policy.required and not certificates:
            # The engine refuses such handshakes; a session resumed from before a reload that turned
            # client authentication on must not slip through either.
            self.metrics.client_auth_result("missing")
            await stream.close()
            return
        if stream.info.resumed and certificates and policy.enabled and not anchored(policy, certificates):
            self.metrics.client_auth_result("stale_session")  # its CA is no longer this site's
            await stream.close()
            return
        if isinstance(proxy, HTTPProxy):
            identity = identity_headers(policy, stream.info.client_certificates)
            host_allowed = None
            if sites.client_auth_in_use:
                def host_allowed(host: bytes) -> bool:
                    return not host or sites.client_auth_for(host.decode("latin-1")) == policy

            await proxy.serve(stream, peer, stream.info.sni, identity, host_allowed)
        else:
            # The address the client actually reached (not 0.0.0.0) is the PROXY header's destination.
            await proxy.serve(stream, peer, _address(getattr(stream, "sockname", None)) or local)

    def _start_key_check(self) -> None:
        """In the background: warn about certificates whose key no configured key server holds."""
        from keyless.edge.key_check import warn_unheld_keys

        if self._key_check_task is not None:
            self._key_check_task.cancel()
        if not speaks_for_all():
            return
        if self.sites.groups:
            self._key_check_first_pass = asyncio.Event()
            self._key_check_task = asyncio.create_task(
                warn_unheld_keys(self.sites, self.config.source, READINESS_INTERVAL, self._key_check_first_pass)
            )

    def is_ready(self) -> bool:
        return self.failing_key_servers() == []

    def failing_key_servers(self) -> list[str]:
        """For /readyz: the key servers of every site none of whose key servers answered (empty: ready)."""
        return failing_key_servers(self.sites, self.health)

    def key_server_round_trips(self) -> dict[str, float | None]:
        return dict(self.health.servers) if self.health is not None else {}

    async def check_readiness(self) -> KeyServerHealth:
        self.health = await check_key_servers(self.sites)
        await self._settle_key_check()
        return self.health

    async def _settle_key_check(self) -> None:
        """Let the first pass of the key check after start or reload end before a readiness answer, so its
        one signature per site lands before the edge says it is ready (each probe is bounded by the
        key-server client's timeout; sites whose key servers are unreachable are retried later, in the
        background). Every caller waits, not only the first (the readiness loop and start-up both ask)."""
        task = self._key_check_task
        if task is None or task.done() or self._key_check_first_pass.is_set():
            return
        first_pass = asyncio.ensure_future(self._key_check_first_pass.wait())
        try:
            await asyncio.wait({task, first_pass}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            first_pass.cancel()

    async def _readiness_loop(self) -> None:
        while True:
            await self.check_readiness()
            await asyncio.sleep(READINESS_INTERVAL)

    async def reload(self, config: EdgeConfig) -> None:
        """SIGHUP: new certificates, keys, origin, limits, tickets and log level; the keys in RESTART_KEYS keep
        their running values (each change logged once per SIGHUP, by key) until the next restart."""
        for key in changed_keys(self.config, config, RESTART_KEYS) if speaks_for_all() else ():
            log.warning("reload: %s changed in %s but needs a restart; keeping the running value", key, config.source)
        # Compare the next file with what runs, not with the last file read: a restored listen: is no change.
        config = replace(config, **{attribute: getattr(self.config, attribute) for attribute in RESTART_KEYS})
        ring = self.ticket_ring
        if config.tickets != self.config.tickets:
            ring = build_ticket_ring(config.tickets, self._ticket_secret)  # may raise: nothing changed yet
        new_sites = self._load_sites(config)  # raises ConfigError before anything changes
        old_sites, old_proxy = self.sites, self.proxy
        self.ticket_ring = ring
        self.sites = new_sites
        self.config = config
        self.tls_config = self._tls_config(config)
        self.listener_tls_configs = self._listener_tls_configs(config)
        self.proxy = self._make_proxy(config)
        self.listener.handshake_timeout = config.limits.handshake_timeout
        self.listener.max_connections = config.limits.max_connections
        logging.getLogger().setLevel(config.loglevel.upper())
        log.info("configuration reloaded: %d certificates", len(new_sites.sites))
        await self.check_readiness()
        self._start_key_check()
        # Connections in flight keep the old proxy and keys until they end; close old clients after a grace.
        asyncio.get_running_loop().call_later(
            config.limits.drain_timeout, lambda: asyncio.ensure_future(_close_old(old_sites, old_proxy))
        )

    async def drain(self, timeout: float | None = None) -> bool:
        """SIGTERM: stop accepting, let requests in flight finish (up to ``timeout``), then close."""
        limit = self.config.limits.drain_timeout if timeout is None else timeout
        self.listener.stop_accepting()
        if isinstance(self.proxy, HTTPProxy):
            self.proxy.begin_drain()
        clean = await self.listener.wait_idle(limit)
        await self.close()
        return clean

    async def close(self) -> None:
        for task in (self._readiness_task, self._ticket_refresh_task, self._key_check_task):
            if task is not None:
                task.cancel()
        self.listener.stop_accepting()
        await self.sites.close()
        if isinstance(self.proxy, HTTPProxy):
            await self.proxy.close()


async def check_key_servers(sites: SiteTable) -> KeyServerHealth:
    """Ping every key server of ``sites`` once, within READINESS_TIMEOUT."""
    try:
        async with asyncio.timeout(READINESS_TIMEOUT):
            return await sites.check_key_servers()
    except TimeoutError:
        return KeyServerHealth({label: False for label in sites.group_labels()}, {})


def failing_key_servers(sites: SiteTable, health: KeyServerHealth | None) -> list[str]:
    if not sites.groups:
        return []  # only local keys: nothing to wait for
    if health is None:
        return sites.group_labels()  # not checked yet
    return health.failing()


async def _close_old(sites: SiteTable, proxy: Any) -> None:
    await sites.close()
    if isinstance(proxy, HTTPProxy):
        await proxy.close()


def _address(peername: Any) -> tuple[str, int] | None:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return str(peername[0]), int(peername[1])
    return None


def with_client_auth(base: ServerConfig, sites: SiteTable) -> ServerConfig:
    """``base`` asking each client for the certificate its SNI's site wants (Go's GetConfigForClient): one
    ServerConfig per distinct client_auth section, made here once."""
    if not sites.client_auth_in_use:
        return base
    variants = {
        policy: replace(
            base,
            client_ca=policy.ca_certificates,
            require_client_certificate=policy.required,
            client_verify_depth=policy.depth,
        )
        for policy in sites.client_auth_policies
        if policy.enabled
    }

    def for_client(hello: ClientHelloInfo) -> ServerConfig | None:
        return variants.get(sites.client_auth_for(hello.server_name))

    return replace(base, config_for_client=for_client)


def with_ports(config: EdgeConfig, ports: list[int]) -> EdgeConfig:
    listeners = tuple(replace(li, port=p) for li, p in zip(config.listeners, ports, strict=True))
    return replace(config, listeners=listeners)


__all__ = ["Edge", "with_ports"]
