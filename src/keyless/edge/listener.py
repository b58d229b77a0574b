"""The TLS listener: the engine's asyncio adapter plus what an edge needs around it.

``keyless.tls.asyncio_adapter.start_tls_server`` drives one ``TLSServerConnection`` per socket. Through its
public ``admit`` hook the edge adds, per connection: the connection limit (refused at accept, before any
handshake work), the active-connection gauge, and a ``ConnectionObserver`` that turns the engine's events
into metrics (handshake duration and outcome, alerts both ways, key operations). Key-operation latency is
measured by ``InstrumentedKey`` around the key itself, so it covers exactly the key server's share of a
handshake.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from keyless.edge.metrics import EdgeMetrics, alert_name, version_name
from keyless.keys.base import AsyncPrivateKey, BlockingPrivateKey, KeyOperationError
from keyless.keys.schemes import SignatureScheme
from keyless.runtime.logging import RateLimitedLog, printable
from keyless.tls.alerts import AlertDescription
from keyless.tls.asyncio_adapter import Admission, TLSStream, start_tls_server
from keyless.tls.config import ServerConfig
from keyless.tls.events import AlertReceived, ConnectionClosed, HandshakeComplete, KeyOperationRequired

log = logging.getLogger("keyless.edge.listener")
# A handshake flood (scanners, a broken client fleet) must not fill the disk: 20 lines per 10 s, then a count.
_handshake_failures = RateLimitedLog(log, burst=20, period=10.0)

Handler = Callable[[TLSStream], Awaitable[None]]


class ConnectionObserver:
    """Metrics for one connection, fed with every engine event."""

    __slots__ = ("completed", "ended", "metrics", "peer", "sni", "started")

    def __init__(self, metrics: EdgeMetrics, peer: str = "-") -> None:
        self.metrics = metrics
        self.peer = peer
        self.sni: str | None = None  # known once the handshake reaches the key operation
        self.started = time.monotonic()
        self.completed = False
        self.ended = False  # the engine reported ConnectionClosed

    def socket_closed(self) -> None:
        """The socket went away; a handshake that neither completed nor failed was cut (timeout, peer)."""
        if not self.completed and not self.ended:
            self.metrics.child(self.metrics.handshake_failures, "disconnected").inc()
            self._log_failure(logging.INFO, "disconnected", "socket closed before the handshake completed")

    def _log_failure(self, level: int, reason: str, detail: str) -> None:
        sni = printable(self.sni) if self.sni else "-"
        _handshake_failures.log(level, "handshake failed peer=%s sni=%s reason=%s: %s", self.peer, sni, reason,
                                printable(detail[:200]), extra={"peer": self.peer, "sni": self.sni})

    def on_event(self, event: object) -> None:
        m = self.metrics
        if isinstance(event, HandshakeComplete):
            self.completed = True
            resumed = "true" if event.resumed else "false"
            group = event.group or "none"  # a name from the engine's fixed table, or none (psk_ke resumption)
            m.child(m.handshakes, version_name(event.version), event.cipher_suite, resumed, group).inc()
            if log.isEnabledFor(logging.DEBUG):  # one line per handshake: only when asked for
                log.debug("handshake peer=%s sni=%s version=%s cipher=%s group=%s resumed=%s", self.peer,
                          printable(event.sni) if event.sni else "-", version_name(event.version),
                          event.cipher_suite, group, resumed)
            m.child(m.handshake_seconds, resumed).observe(time.monotonic() - self.started)
            if event.client_certificates:
                m.client_auth_result("resumed" if event.resumed else "verified")
        elif isinstance(event, AlertReceived):
            m.child(m.alerts_received, alert_name(event.description)).inc()
        elif isinstance(event, ConnectionClosed):
            self.ended = True
            if event.alert_sent is not None:
                m.child(m.alerts_sent, alert_name(event.alert_sent)).inc()
            if not self.completed:
                reason = alert_name(event.alert_sent) if event.alert_sent is not None else "closed"
                m.child(m.handshake_failures, reason).inc()
                refused = client_auth_refusal(event)
                if refused is not None:
                    m.client_auth_result(refused)
                # An alert we sent is our refusal (or a key-server failure): worth a warning. A peer that
                # closes or alerts mid-handshake is the client's business.
                level = logging.WARNING if event.alert_sent is not None else logging.INFO
                self._log_failure(level, reason, event.reason)
        elif isinstance(event, KeyOperationRequired):
            self.sni = event.server_name  # counted, with latency and result, by InstrumentedKey


_CLIENT_CERTIFICATE_ALERTS = frozenset(
    {
        AlertDescription.bad_certificate,
        AlertDescription.unsupported_certificate,
        AlertDescription.certificate_expired,
        AlertDescription.unknown_ca,
        AlertDescription.certificate_required,
    }
)


def client_auth_refusal(event: ConnectionClosed) -> str | None:
    """The client-authentication reason a handshake failed for, or None: the certificate alerts by name;
    a missing certificate (TLS 1.2 sends handshake_failure) as "missing"; a bad client CertificateVerify
    (decrypt_error, also sent for a bad Finished or binder: told apart by the engine's reason) as "bad_signature"."""
    alert = event.alert_sent
    if alert in _CLIENT_CERTIFICATE_ALERTS:
        return "missing" if alert == AlertDescription.certificate_required else alert_name(alert)
    if "client sent no certificate" in event.reason:
        return "missing"
    if alert == AlertDescription.decrypt_error and "CertificateVerify" in event.reason:
        return "bad_signature"
    return None


class TLSListener:
    """All listening sockets of one edge process, sharing the limits and the current TLS configuration."""

    def __init__(
        self,
        config_provider: Callable[[], ServerConfig],
        metrics: EdgeMetrics,
        *,
        handshake_timeout: float,
        max_connections: int,
        read_buffer_limit: int = 256 * 1024,
    ) -> None:
        self.config_provider = config_provider
        self.metrics = metrics
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self.read_buffer_limit = read_buffer_limit
        self.active = 0
        self.refusing = False
        self.idle = asyncio.Event()
        self.idle.set()
        self.servers: list[asyncio.Server] = []

    async def listen(self, handler: Handler, host: str, port: int, *, reuse_port: bool,
                     config_provider: Callable[[], ServerConfig] | None = None) -> int:
        """Serve one socket; ``config_provider`` (default: the listener-wide one) gives its TLS settings."""
        sock = _listening_socket(host, port, reuse_port)
        server = await start_tls_server(
            handler, None, 0, config_provider or self.config_provider, sock=sock, admit=self.admit,
            handshake_timeout=self.handshake_timeout, read_buffer_limit=self.read_buffer_limit,
        )
        self.servers.append(server)
        bound: int = server.sockets[0].getsockname()[1]
        return bound

    def admit(self, peername: Any) -> Admission | None:
        """At accept, before any handshake work: refuse over ``max_connections`` (or while draining), else
        count the connection and watch its events."""
        metrics = self.metrics
        if self.active >= self.max_connections or self.refusing:
            metrics.connections_refused.inc()
            return None
        self.active += 1
        metrics.active_connections.inc()
        metrics.worker_connections.inc()
        client_ip = peername[0] if isinstance(peername, tuple) and peername else None
        observer = ConnectionObserver(metrics, f"{peername[0]}:{peername[1]}" if client_ip else "-")

        def key_for_operation(event: KeyOperationRequired) -> AsyncPrivateKey:
            """The key with this connection's context for the key server: the SNI and the client's IP
            (the keyless client sends the IP only where ``send_client_ip`` is configured)."""
            context = {"sni": event.server_name, "client_ip": client_ip}
            return event.key.with_context(**{name: value for name, value in context.items() if value})

        def closed() -> None:
            observer.socket_closed()
            self.active -= 1
            metrics.active_connections.dec()
            if self.active == 0:
                self.idle.set()

        return Admission(on_event=observer.on_event, on_close=closed, key_for_operation=key_for_operation,
                         handshake_timeout=self.handshake_timeout)

    def stop_accepting(self) -> None:
        self.refusing = True
        for server in self.servers:
            server.close()

    async def wait_idle(self, timeout: float) -> bool:
        if self.active:
            self.idle.clear()
        try:
            async with asyncio.timeout(timeout):
                while self.active:
                    await self.idle.wait()
                    if self.active:
                        self.idle.clear()
        except TimeoutError:
            return False
        return True


def _listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class InstrumentedKey:
    """Wraps a key to count its operations and time them; everything else passes through. A key with
    synchronous operations keeps them (timed too), so the adapter still answers it inline."""

    __slots__ = ("_blocking", "_inner", "_metrics", "public_key", "signature_schemes", "ski")

    def __init__(self, inner: AsyncPrivateKey, metrics: EdgeMetrics) -> None:
        self._inner = inner
        self._blocking = inner.blocking
        self._metrics = metrics
        self.public_key: PublicKeyTypes = inner.public_key
        self.ski: bytes = inner.ski
        self.signature_schemes: frozenset[SignatureScheme] = inner.signature_schemes

    def __repr__(self) -> str:
        return f"<InstrumentedKey {self._inner!r}>"

    @property
    def inner(self) -> AsyncPrivateKey:
        return self._inner

    @property
    def blocking(self) -> InstrumentedKey | None:
        return self if self._blocking is not None else None

    @property
    def offload(self) -> bool:
        return self._blocking is not None and self._blocking.offload

    def with_context(self, **context: str | None) -> InstrumentedKey:
        """The same key carrying per-handshake context (a remote key's ``with_context``); a key without
        use for context (a local one) is itself."""
        inner = self._inner.with_context(**context) if context else self._inner
        return self if inner is self._inner else InstrumentedKey(inner, self._metrics)

    async def sign(self, scheme: SignatureScheme, message: bytes) -> bytes:
        return await self._timed("sign", self._inner.sign(scheme, message))

    async def decrypt(self, ciphertext: bytes) -> bytes:
        return await self._timed("decrypt", self._inner.decrypt(ciphertext))

    def sign_sync(self, scheme: SignatureScheme, message: bytes) -> bytes:
        blocking = self._sync_operations()
        return self._sync("sign", lambda: blocking.sign_sync(scheme, message))

    def decrypt_sync(self, ciphertext: bytes) -> bytes:
        blocking = self._sync_operations()
        return self._sync("decrypt", lambda: blocking.decrypt_sync(ciphertext))

    def _sync_operations(self) -> BlockingPrivateKey:
        if self._blocking is None:
            raise KeyOperationError("this key has no synchronous operations (blocking is None)")
        return self._blocking

    async def _timed(self, kind: str, operation: Awaitable[bytes]) -> bytes:
        started = time.monotonic()
        try:
            result = await operation
        except BaseException as exc:
            outcome = "timeout" if isinstance(exc, TimeoutError | asyncio.CancelledError) else "error"
            self._metrics.child(self._metrics.key_operations, kind, outcome).inc()
            raise
        self._count_ok(kind, started)
        return result

    def _sync(self, kind: str, operation: Callable[[], bytes]) -> bytes:
        started = time.monotonic()
        try:
            result = operation()
        except BaseException:
            self._metrics.child(self._metrics.key_operations, kind, "error").inc()
            raise
        self._count_ok(kind, started)
        return result

    def _count_ok(self, kind: str, started: float) -> None:
        m = self._metrics
        m.child(m.key_operations, kind, "ok").inc()
        m.child(m.key_operation_seconds, kind).observe(time.monotonic() - started)


def instrument(key: AsyncPrivateKey, metrics: EdgeMetrics) -> InstrumentedKey:
    return InstrumentedKey(key, metrics)


__all__ = ["ConnectionObserver", "InstrumentedKey", "TLSListener", "instrument"]
