"""One mutually-authenticated TLS connection to a key server, pipelined: the asyncio layer over
``keyless.client.core.ClientConnection``.

Requests submitted during one event-loop tick leave in one ``transport.write`` (the flush runs via
``call_soon``), so a burst of N requests costs one TLS write instead of N. Each request carries its
own timer (``loop.call_at``), cancelled when the answer comes: a timeout costs the request only, and
its ID stays reserved so its late answer is dropped quietly.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import Callable

from keyless.client.cert_diagnosis import presented_certificate
from keyless.client.core import Answer, ClientConnection, Request
from keyless.client.errors import ConnectFailed, ConnectionLost, ConnectTimeout, OperationTimeout, ResponseError
from keyless.sentinel import NeedData


class KeylessConnection(asyncio.Protocol):
    """A pipelined connection; create it with ``await KeylessConnection.open(...)``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, label: str) -> None:
        self.label = label
        self._loop = loop
        self._core = ClientConnection()
        self._waiters: dict[int, tuple[asyncio.Future[Answer], asyncio.TimerHandle]] = {}
        self._transport: asyncio.Transport | None = None
        self._flush_scheduled = False
        self._closed = False
        self._close_reason = "closed"
        self._on_close: list[Callable[[KeylessConnection], None]] = []
        self.requests_sent = 0
        self.writes = 0  # transport.write calls: with coalescing, far fewer than requests_sent

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        server_hostname: str,
        timeout: float,
        label: str | None = None,
    ) -> KeylessConnection:
        """Connect and finish the TLS handshake within ``timeout`` seconds, or raise ``ConnectFailed``."""
        loop = asyncio.get_running_loop()
        name = label or f"{host}:{port}"
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: cls(loop, name),
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=timeout,
                ),
                timeout,
            )
        except TimeoutError:
            raise ConnectTimeout(f"connecting to key server {name} timed out after {timeout:g}s") from None
        except ssl.SSLCertVerificationError as exc:
            # Expired, not yet valid, replaced (another CA), wrong name: say which certificate it was.
            presented = await presented_certificate(host, port, server_hostname, timeout,
                                                    getattr(ssl_context, "keyless_client_files", None))
            detail = f"; the key server presented {presented}" if presented else ""
            why = f" ({exc.verify_message})" if exc.verify_message else ""
            raise ConnectFailed(f"cannot connect to key server {name}: {_reason(exc)}{why}{detail}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to key server {name}: {_reason(exc)}") from None
        return protocol

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        _enable_keepalive(transport)

    def data_received(self, data: bytes) -> None:
        core = self._core
        core.receive_data(data)
        waiters = self._waiters
        try:
            while True:
                answer = core.next_event()
                if isinstance(answer, NeedData):
                    return
                entry = waiters.pop(answer.request_id, None)
                if entry is None:
                    continue  # cannot happen: the core only returns answers to IDs we wait for
                future, timer = entry
                timer.cancel()
                if not future.done():
                    future.set_result(answer)
        except ResponseError as exc:
            self._shut(f"protocol violation by the key server: {exc}", error=ResponseError)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "connection closed by the key server" if exc is None else f"connection lost: {_reason(exc)}"
        self._shut(reason, already_closed=True)

    # -- requests ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return not self._closed

    @property
    def close_reason(self) -> str:
        return self._close_reason

    @property
    def in_flight(self) -> int:
        return len(self._waiters)

    def on_close(self, callback: Callable[[KeylessConnection], None]) -> None:
        """Call ``callback(self)`` once, when the connection closes for any reason."""
        if self._closed:
            callback(self)
        else:
            self._on_close.append(callback)

    def submit(self, request: Request, deadline: float) -> asyncio.Future[Answer]:
        """Queue ``request``; the future resolves to its ``Answer`` or fails with ``OperationTimeout``
        (at loop time ``deadline``), ``ConnectionLost`` or ``ResponseError``."""
        if self._closed:
            raise ConnectionLost(f"{self.label}: {self._close_reason}")
        message_id = self._core.send(request)
        future: asyncio.Future[Answer] = self._loop.create_future()
        timer = self._loop.call_at(deadline, self._expire, message_id)
        self._waiters[message_id] = (future, timer)
        future.add_done_callback(functools.partial(self._cancelled, message_id))
        self.requests_sent += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    async def call(self, request: Request, timeout: float) -> Answer:
        return await self.submit(request, self._loop.time() + timeout)

    def close(self) -> None:
        self._shut("closed by the client")

    # -- internals --------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self._core.data_to_send()
        if data and self._transport is not None and not self._closed:
            self.writes += 1
            self._transport.write(data)

    def _cancelled(self, message_id: int, future: asyncio.Future[Answer]) -> None:
        """A caller cancelled its wait (the hedge that lost a race): forget the request like a timeout,
        so its late answer is dropped quietly."""
        if not future.cancelled():
            return
        entry = self._waiters.pop(message_id, None)
        if entry is None:
            return
        entry[1].cancel()
        try:
            self._core.abandon(message_id)
        except ResponseError as exc:
            self._shut(str(exc), error=ResponseError)

    def _expire(self, message_id: int) -> None:
        entry = self._waiters.pop(message_id, None)
        if entry is None:
            return
        future, _ = entry
        try:
            self._core.abandon(message_id)
        except ResponseError as exc:
            self._shut(str(exc), error=ResponseError)
        if not future.done():
            future.set_exception(OperationTimeout(f"no answer from key server {self.label} in time"))

    def _shut(self, reason: str, already_closed: bool = False,
              error: type[ConnectionLost | ResponseError] = ConnectionLost) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        if not already_closed and self._transport is not None:
            self._transport.abort()  # in-flight answers are lost either way; do not wait for a TLS close
        waiters, self._waiters = self._waiters, {}
        for future, timer in waiters.values():
            timer.cancel()
            if not future.done():
                future.set_exception(error(f"{self.label}: {reason}"))
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback(self)


# A key server that vanished without a FIN/RST (power loss, a NAT or firewall dropping the flow) is
# found by TCP keepalive even on a connection the pool is not using: ~60 s instead of never.
_KEEPALIVE = (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))


def _enable_keepalive(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in _KEEPALIVE:
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except (OSError, AttributeError):
        pass  # best effort: the health check still catches a dead server


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


__all__ = ["KeylessConnection"]
