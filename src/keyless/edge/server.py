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

from keyless.edge.config import EdgeConfig
from keyless.edge.http_proxy import HTTPProxy, ProxySettings
from keyless.edge.listener import TLSListener, instrument
from keyless.edge.metrics import EdgeMetrics
from keyless.edge.sites import GroupFactory, SiteTable, build_sites
from keyless.edge.tcp_proxy import TCPProxy
from keyless.edge.tickets import build_ticket_ring
from keyless.tls.asyncio_adapter import TLSStream
from keyless.tls.config import CertifiedKey, ClientHelloInfo, ServerConfig
from keyless.tls.session_cache import MemorySessionCache

log = logging.getLogger("keyless.edge")

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
        self.proxy = self._make_proxy(config)
        self.listener = TLSListener(
            lambda: self.tls_config,
            metrics,
            handshake_timeout=config.limits.handshake_timeout,
            max_connections=config.limits.max_connections,
        )
        self.ports: list[int] = []
        self.readiness: dict[str, bool] = {}
        self._readiness_task: asyncio.Task[None] | None = None
        self._ticket_refresh_task: asyncio.Task[None] | None = None

    # --- construction ---------------------------------------------------------------------------

    def _load_sites(self, config: EdgeConfig) -> SiteTable:
        return build_sites(config, self._group_factory, wrap_key=lambda key: instrument(key, self.metrics))

    def _tls_config(self, config: EdgeConfig) -> ServerConfig:
        return ServerConfig(
            certificate_callback=self._select,
            alpn_protocols=("http/1.1",) if config.origin.mode == "http" else (),
            ticket_keys=self.ticket_ring,
            ticket_lifetime=config.tickets.lifetime,
            session_cache=self.session_cache,
            enable_tls12=config.enable_tls12,
            enable_rsa_key_exchange=config.enable_rsa_key_exchange,
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
        )
        return HTTPProxy(settings, self.metrics)

    # --- running --------------------------------------------------------------------------------

    async def start(self, ports: list[int] | None = None, *, reuse_port: bool = False) -> list[int]:
        """Listen on every configured listener (``ports`` overrides their ports, in order)."""
        for index, listener in enumerate(self.config.listeners):
            port = ports[index] if ports is not None else listener.port
            local = [(listener.address, port)]  # the bound port is known only after listen()
            bound = await self.listener.listen(
                lambda stream, local=local: self.handle(stream, local[0]),  # type: ignore[misc]
                listener.address,
                port,
                reuse_port=reuse_port,
            )
            local[0] = (listener.address, bound)
            self.ports.append(bound)
        self._readiness_task = asyncio.create_task(self._readiness_loop())
        if self.ticket_ring is not None and not self.ticket_ring.auto_refresh:
            from keyless.tls.asyncio_adapter import refresh_ticket_keys

            self._ticket_refresh_task = asyncio.create_task(refresh_ticket_keys(self.ticket_ring))
        return self.ports

    async def handle(self, stream: TLSStream, local: tuple[str, int]) -> None:
        proxy = self.proxy
        peer = _address(stream.peername)
        if isinstance(proxy, HTTPProxy):
            await proxy.serve(stream, peer, stream.info.sni)
        else:
            # The address the client actually reached (not 0.0.0.0) is the PROXY header's destination.
            await proxy.serve(stream, peer, _address(getattr(stream, "sockname", None)) or local)

    def is_ready(self) -> bool:
        if not self.sites.groups:
            return True  # only local keys: nothing to wait for
        return bool(self.readiness) and all(self.readiness.values())

    async def check_readiness(self) -> dict[str, bool]:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT):
                results = await self.sites.ping_all()
        except TimeoutError:
            results = {label: False for label in self.readiness} or {"keyservers": False}
        self.readiness = results
        return results

    async def _readiness_loop(self) -> None:
        while True:
            await self.check_readiness()
            await asyncio.sleep(READINESS_INTERVAL)

    async def reload(self, config: EdgeConfig) -> None:
        """SIGHUP: new certificates, keys, origin and limits; listeners and workers stay as they are."""
        if [(li.address, li.port) for li in config.listeners] != [
            (li.address, li.port) for li in self.config.listeners
        ]:
            log.warning("listener changes need a restart; keeping the current listeners")
        ring = self.ticket_ring
        if config.tickets != self.config.tickets:
            ring = build_ticket_ring(config.tickets, self._ticket_secret)  # may raise: nothing changed yet
        new_sites = self._load_sites(config)  # raises ConfigError before anything changes
        old_sites, old_proxy = self.sites, self.proxy
        self.ticket_ring = ring
        self.sites = new_sites
        self.config = config
        self.tls_config = self._tls_config(config)
        self.proxy = self._make_proxy(config)
        self.listener.handshake_timeout = config.limits.handshake_timeout
        self.listener.max_connections = config.limits.max_connections
        log.info("configuration reloaded: %d certificates", len(new_sites.sites))
        await self.check_readiness()
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
        for task in (self._readiness_task, self._ticket_refresh_task):
            if task is not None:
                task.cancel()
        self.listener.stop_accepting()
        await self.sites.close()
        if isinstance(self.proxy, HTTPProxy):
            await self.proxy.close()


async def _close_old(sites: SiteTable, proxy: Any) -> None:
    await sites.close()
    if isinstance(proxy, HTTPProxy):
        await proxy.close()


def _address(peername: Any) -> tuple[str, int] | None:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return str(peername[0]), int(peername[1])
    return None


def with_ports(config: EdgeConfig, ports: list[int]) -> EdgeConfig:
    listeners = tuple(replace(li, port=p) for li, p in zip(config.listeners, ports, strict=True))
    return replace(config, listeners=listeners)


__all__ = ["Edge", "with_ports"]
