"""``KeylessClient``: key operations spread over several key servers, with health checks and failover.

Choosing a server (per operation): among the healthy endpoints, two picked at random, the one with
the lower ``latency EWMA x (in flight + 1)`` wins ("power of two choices": the fastest server gets most
of the load without being hammered, and a server without a sample yet gets probed by real traffic).
When no endpoint is healthy, all are candidates: trying beats failing without trying.

Failures (all key operations are idempotent, so repeating one is safe; ``keyless.client.operation``):
- an operation not answered within its server's hedge delay is hedged to another healthy server
  (budgeted; ``keyless.client.resilience``); the first answer wins;
- a connection that breaks under an operation: the operation is retried once on another server
  (on the same server over a fresh connection when it is the only one);
- a connect failure: the endpoint is marked down, the operation moves on (this costs no retry, since
  nothing was sent);
- an "overloaded" answer (0xC0): the operation moves on and never returns to that server;
- a timeout: one failure towards the endpoint's ejection, and the operation is retried elsewhere if
  the call's deadline leaves room for it;
- an error answer (0xFF): raised at once as its typed ``KeyServerError``; the server is healthy.
Timeouts and lost hedge races in a row eject an endpoint (outlier ejection). A background task pings
every endpoint each ``health_interval``: a down endpoint that answers comes back (an ejected one only
after its ejection time), a healthy one that does not goes down, and its operations in flight move.
Every ``resolve_interval`` the names are resolved again:
new addresses join, vanished ones leave after a drain period.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from keyless.client.core import Answer, Request
from keyless.client.endpoint import Endpoint, EndpointStats
from keyless.client.errors import ConnectTimeout, KeylessClientError, NoServerAvailable, OperationTimeout
from keyless.client.operation import Operation
from keyless.client.remote_key import OperationContext, RemoteKey
from keyless.client.resilience import EjectionPolicy, HedgeBudget, HedgePolicy
from keyless.protocol import DEFAULT_PORT

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

log = logging.getLogger("keyless.client")


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """Our client certificate for mutual TLS, and the CA that signed the key servers' certificates."""

    client_cert: Path
    client_key: Path = field(repr=False)
    ca: Path
    server_name: str | None = None  # name to verify in the key server's certificate; default: the host given

    def ssl_context(self) -> ssl.SSLContext:
        return make_ssl_context(self.client_cert, self.client_key, self.ca)


def make_ssl_context(client_cert: Path | str, client_key: Path | str, ca: Path | str) -> ssl.SSLContext:
    """A TLS client context for key servers: verify their certificate against ``ca`` (and its name),
    present ``client_cert``. TLS 1.2 at least (the reference key server caps at 1.2)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(client_cert), str(client_key))
    # File names (not contents): to read a key server's certificate when it fails verification.
    context.keyless_client_files = (str(client_cert), str(client_key))  # type: ignore[attr-defined]
    return context


@dataclass(frozen=True, slots=True)
class ServerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ServerAddress:
        """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address; the port defaults to 2407."""
        text = text.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif text.count(":") == 1:
            host, _, port = text.partition(":")
        else:
            host, port = text, ""
        if not host:
            raise ValueError(f"key server address {text!r} has no host")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"key server address {text!r}: port must be 1-65535")
        return cls(host, int(port) if port else DEFAULT_PORT)


Resolver = Callable[[str, int], Awaitable[list[str]]]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, via the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class KeylessClient:
    """Key operations over pooled, pipelined connections to one or more key servers."""

    def __init__(
        self,
        servers: Sequence[str | tuple[str, int]],
        ssl_context: ssl.SSLContext,
        *,
        server_name: str | None = None,
        connections_per_server: int = 2,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        health_interval: float = 5.0,
        health_timeout: float = 2.0,
        retries: int = 1,
        send_client_ip: bool = False,
        send_request_id: bool = False,
        resolver: Resolver | None = None,
        resolve_interval: float = 60.0,
        hedge: HedgePolicy | None = None,
        ejection: EjectionPolicy | None = None,
    ) -> None:
        if not servers:
            raise ValueError("at least one key server is needed")
        self._addresses = [
            ServerAddress(*s) if isinstance(s, tuple) else ServerAddress.parse(s) for s in servers
        ]
        self._ssl_context = ssl_context
        self._server_name = server_name
        self.connections_per_server = connections_per_server
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.retries = retries
        self.hedge_policy = hedge or HedgePolicy()
        self.hedge_budget = HedgeBudget(self.hedge_policy.budget_ratio, self.hedge_policy.budget_burst)
        self.ejection_policy = ejection or EjectionPolicy()
        # Tags that older key servers reject and that reveal end users: sent only when enabled.
        self.send_client_ip = send_client_ip
        self.send_request_id = send_request_id
        self._resolver = resolver or resolve_host
        self.resolve_interval = resolve_interval
        self._origins: dict[tuple[str, int], ServerAddress] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._endpoints: list[Endpoint] = []
        self._started: asyncio.Future[None] | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._closed = False
        self._random = random.Random()  # load spreading, not security

    @classmethod
    def from_files(cls, servers: Sequence[str | tuple[str, int]], tls: ClientTLS, **options: object) -> KeylessClient:
        return cls(servers, tls.ssl_context(), server_name=tls.server_name, **options)  # type: ignore[arg-type]

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve the server names and start health checks (done implicitly by the first operation)."""
        if self._closed:
            raise NoServerAvailable("client is closed")
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                self._endpoints = await self._resolve()
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started.exception()  # retrieved: later awaiters re-raise it
                self._started = None
                raise
            self._started.set_result(None)
            if self.health_interval > 0:
                self._health_task = asyncio.get_running_loop().create_task(self._health_loop())
        else:
            await self._started

    async def close(self) -> None:
        self._closed = True
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
            self._health_task = None
        for task in list(self._retiring):
            task.cancel()  # _retire closes its endpoint on the way out
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for endpoint in self._endpoints:
            await endpoint.close()

    async def __aenter__(self) -> KeylessClient:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints)

    def stats(self) -> list[EndpointStats]:
        try:
            now: float | None = asyncio.get_running_loop().time()
        except RuntimeError:
            now = None
        return [endpoint.stats(now) for endpoint in self._endpoints]

    async def _resolve(self) -> list[Endpoint]:
        """One endpoint per address: a name resolving to several addresses gives several endpoints,
        each verified against the name (or ``server_name``). Endpoints of addresses still present are
        kept (with their connections and latency); a name that fails to resolve keeps its endpoints,
        so a DNS hiccup does not empty the pool."""
        existing = {(e.host, e.port): e for e in self._endpoints}
        endpoints: list[Endpoint] = []
        seen: set[tuple[str, int]] = set()
        for address in self._addresses:
            verify_name = self._server_name or address.host
            try:
                ipaddress.ip_address(address.host)
                hosts = [address.host]
            except ValueError:
                try:
                    hosts = await self._resolver(address.host, address.port)
                except OSError as exc:
                    log.warning("cannot resolve key server %s: %s", address.host, exc)
                    hosts = [host for (host, port), origin in self._origins.items() if origin == address]
            for host in hosts:
                key = (host, address.port)
                if key in seen:
                    continue
                seen.add(key)
                self._origins[key] = address
                endpoint = existing.get(key)
                if endpoint is None:
                    endpoint = Endpoint(host, address.port, verify_name, self._ssl_context,
                                        self.connections_per_server, self.connect_timeout)
                endpoints.append(endpoint)
        if not endpoints:
            raise NoServerAvailable("no key server address could be resolved")
        return endpoints

    async def _refresh_endpoints(self) -> None:
        """Resolve the names again: new addresses join, vanished ones leave once their operations
        had time to finish (one operation timeout)."""
        try:
            endpoints = await self._resolve()
        except NoServerAvailable:
            return  # keep what we have
        gone = [e for e in self._endpoints if e not in endpoints]
        added = [e for e in endpoints if e not in self._endpoints]
        self._endpoints = endpoints
        for endpoint in added:
            log.info("key server %s joined (DNS)", endpoint.label)
        for endpoint in gone:
            log.info("key server %s left (DNS)", endpoint.label)
            self._origins.pop((endpoint.host, endpoint.port), None)
            task = asyncio.get_running_loop().create_task(self._retire(endpoint))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, endpoint: Endpoint) -> None:
        try:
            await asyncio.sleep(self.timeout)
        finally:
            await endpoint.close()

    # -- operations -------------------------------------------------------------------------------

    async def call(self, request: Request, *, timeout: float | None = None, deadline: float | None = None) -> bytes:
        """Perform ``request``; returns the success payload or raises a ``KeylessClientError``.

        ``timeout`` bounds each attempt (default: the client's, 10 s); ``deadline`` (event-loop time,
        ``loop.time()``) bounds the whole call including the retry.
        """
        answer = await self.call_answer(request, timeout=timeout, deadline=deadline)
        return answer.payload

    async def call_answer(
        self, request: Request, *, timeout: float | None = None, deadline: float | None = None
    ) -> Answer:
        if self._started is None or not self._started.done():
            await self.start()
        attempt_timeout = self.timeout if timeout is None else timeout
        return await Operation(self, request, attempt_timeout, deadline).run()

    # -- what an Operation needs (keyless.client.operation.Chooser) -------------------------------

    @property
    def endpoint_count(self) -> int:
        return len(self._endpoints)

    def choose(self, exclude: list[Endpoint], *, healthy_only: bool = False) -> Endpoint | None:
        """An endpoint not in ``exclude``: among the healthy ones, the better of two at random (a server
        in slow start after an ejection is passed over in proportion); when none is healthy, any of the
        others (trying beats failing without trying) unless ``healthy_only``."""
        untried = [e for e in self._endpoints if e not in exclude]
        candidates = [e for e in untried if e.healthy]
        if not candidates:
            return None if healthy_only or not untried else self._random.choice(untried)
        if len(candidates) > 1:
            now = asyncio.get_running_loop().time()
            full = [e for e in candidates if self._random.random() < e.share(self.ejection_policy, now)]
            candidates = full or candidates
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._random.sample(candidates, 2)
        return first if first.score() <= second.score() else second

    def attempt_failed(self, endpoint: Endpoint, reason: str) -> None:
        """An attempt on ``endpoint`` timed out or lost a hedge race: after ``consecutive_failures`` in
        a row the endpoint is ejected, unless it is the last one in rotation."""
        endpoint.consecutive_failures += 1
        endpoint.last_error = reason
        if not endpoint.healthy or endpoint.consecutive_failures < self.ejection_policy.consecutive_failures:
            return
        if not any(e.healthy for e in self._endpoints if e is not endpoint):
            return  # never eject the last server in rotation (Envoy: max_ejection_percent)
        self._eject(endpoint, f"{endpoint.consecutive_failures} operations in a row: {reason}")

    def _eject(self, endpoint: Endpoint, reason: str) -> None:
        now = asyncio.get_running_loop().time()
        duration = endpoint.eject(reason, self.ejection_policy, now)
        log.warning("key server %s ejected for %gs (%s)", endpoint.label, duration, reason)

    async def ping(self, payload: bytes = b"", *, timeout: float | None = None) -> dict[str, float | Exception]:
        """Ping every endpoint once; maps endpoint label -> round trip in seconds, or the error."""
        if self._started is None or not self._started.done():
            await self.start()
        wait = self.health_timeout if timeout is None else timeout

        async def one(endpoint: Endpoint) -> float | Exception:
            try:
                return await endpoint.probe(wait)
            except KeylessClientError as exc:
                return exc

        results = await asyncio.gather(*(one(e) for e in self._endpoints))
        return {e.label: r for e, r in zip(self._endpoints, results, strict=True)}

    async def _health_loop(self) -> None:
        loop = asyncio.get_running_loop()
        has_names = any(not _is_ip(a.host) for a in self._addresses)
        next_resolve = loop.time() + self.resolve_interval
        while True:
            await asyncio.sleep(self.health_interval)
            if has_names and self.resolve_interval > 0 and loop.time() >= next_resolve:
                next_resolve = loop.time() + self.resolve_interval
                await self._refresh_endpoints()
            await asyncio.gather(*(self._check(e) for e in self._endpoints))

    async def _check(self, endpoint: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        try:
            latency = await endpoint.probe(self.health_timeout)
        except Exception as exc:  # the health loop must outlive any one failure, expected or not
            if not isinstance(exc, KeylessClientError):
                log.exception("health check of key server %s failed unexpectedly", endpoint.label)
            if not endpoint.healthy:
                return
            log.warning("key server %s failed its health check: %s", endpoint.label, exc)
            hung = isinstance(exc, OperationTimeout | ConnectTimeout)
            if hung and any(e.healthy for e in self._endpoints if e is not endpoint):
                self._eject(endpoint, f"missed a ping: {exc}")  # connected but silent: hung, not gone
            else:
                endpoint.mark_down(str(exc))  # its operations in flight are sent elsewhere at once
            return
        if endpoint.readmit(loop.time()):
            log.info("key server %s is back", endpoint.label)
        endpoint.record_latency(latency)

    # -- keys -------------------------------------------------------------------------------------

    def remote_key(
        self,
        key: x509.Certificate | CertificatePublicKeyTypes,
        *,
        context: OperationContext | None = None,
        timeout: float | None = None,
    ) -> RemoteKey:
        """A ``RemoteKey`` for the key of ``key`` (a certificate or a public key) held by these servers."""
        return RemoteKey(self, key, context=context, timeout=timeout)


__all__ = ["ClientTLS", "KeylessClient", "ServerAddress", "make_ssl_context"]
