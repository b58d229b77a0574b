"""HTTP/1.1 reverse proxy: h11 on both sides, bodies streamed, keep-alive to the origin.

One ``proxy_http`` call serves one client connection (any ``ByteStream``: the TLS stream in
production, a TCP stream in tests) request after request. For each request it takes an origin
connection from the pool, forwards the head with hop-by-hop headers removed and the client's address
added (``X-Forwarded-For``, ``X-Forwarded-Proto``, ``Forwarded``), streams the body to the origin and
the response back. The edge answers by itself only when it must: ``400``/``431`` for a bad request,
``502`` when the origin cannot be reached or breaks before its response head, ``504`` when the head
does not arrive within ``response_timeout``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import h11

from keyless.edge.metrics import ProxyObserver
from keyless.edge.streams import ByteStream, SendDeadline, SocketStream
from keyless.runtime.logging import printable

log = logging.getLogger("keyless.edge.http")

READ_SIZE = 65536

# RFC 9110 §7.6.1: connection-specific fields a proxy must not forward (plus the nonstandard ones seen in practice).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# The edge is the first hop: what a client claims about earlier hops is not to be trusted, so these are replaced.
FORWARDING_HEADERS = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"})


@dataclass(frozen=True)
class ProxySettings:
    origin_host: str
    origin_port: int
    scheme: str = "https"  # what X-Forwarded-Proto says
    connect_timeout: float = 5.0
    response_timeout: float = 30.0
    idle_timeout: float = 60.0
    send_timeout: float = 60.0  # each write to the client (and to the origin) must drain within this
    max_header_size: int = 16384
    pool_size: int = 8
    # Client-certificate identity headers (keyless.edge.client_auth): any the client sends under these
    # lower-cased prefixes are removed before the edge adds the verified ones.
    identity_header_prefixes: tuple[bytes, ...] = ()


# Failures on a reused keep-alive connection that mean "the origin had closed it": safe to resend.
_STALE_KINDS = frozenset({"closed", "send", "reset"})


class OriginUnavailable(Exception):
    """No response head from the origin: becomes a 502 (or a 504 when ``timed_out``)."""

    def __init__(self, kind: str, timed_out: bool = False) -> None:
        super().__init__(kind)
        self.kind = kind
        self.timed_out = timed_out


class _ClientGone(Exception):
    """The client went away or broke the protocol mid-request; close without answering."""


class OriginConnection:
    """One keep-alive connection to the origin with its own h11 client state."""

    __slots__ = ("answered", "conn", "reused", "stream")

    def __init__(self, stream: SocketStream, max_header_size: int) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_size)
        self.reused = False
        self.answered = False  # has any byte of the current response arrived?

    async def next_event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            data = await self.stream.read(READ_SIZE)
            if not data and not self.answered:
                raise OriginUnavailable("closed")  # hung up before answering (a stale keep-alive, say)
            self.answered = True
            self.conn.receive_data(data)

    async def send(self, event: h11.Event) -> None:
        if isinstance(event, h11.Request):
            self.answered = False
        data = self.conn.send(event)
        if data:
            await self.stream.write(data)

    def reusable(self) -> bool:
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE and self.stream.usable


class OriginPool:
    """A few idle keep-alive connections to one origin, newest reused first (least likely to be stale)."""

    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self._idle: deque[OriginConnection] = deque()

    async def acquire(self) -> OriginConnection:
        while self._idle:
            candidate = self._idle.pop()
            if candidate.stream.usable:
                candidate.reused = True
                return candidate
            await candidate.stream.close()
        return await self.connect()

    async def connect(self) -> OriginConnection:
        s = self.settings
        try:
            stream = await SocketStream.connect(s.origin_host, s.origin_port, s.connect_timeout, s.send_timeout)
        except TimeoutError as exc:
            raise OriginUnavailable("connect_timeout", timed_out=True) from exc
        except OSError as exc:
            raise OriginUnavailable("connect") from exc
        return OriginConnection(stream, s.max_header_size)

    async def release(self, origin: OriginConnection) -> None:
        if origin.reusable() and len(self._idle) < self.settings.pool_size:
            origin.conn.start_next_cycle()
            self._idle.append(origin)
        else:
            await origin.stream.close()

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().stream.close()


class HTTPProxy:
    """Serves client connections against one origin; share one per process (it owns the pool)."""

    def __init__(self, settings: ProxySettings, observer: ProxyObserver | None = None) -> None:
        self.settings = settings
        self.pool = OriginPool(settings)
        self.observer = observer if observer is not None else ProxyObserver()
        self.draining = False
        self._idle_tasks: set[asyncio.Task[object]] = set()

    def begin_drain(self) -> None:
        """Finish requests in progress, then close; connections idle between requests close now."""
        self.draining = True
        for task in list(self._idle_tasks):
            task.cancel()

    async def serve(
        self,
        client: ByteStream,
        peer: tuple[str, int] | None,
        server_name: str | None = None,
        identity: Sequence[tuple[bytes, bytes]] = (),
        host_allowed: Callable[[bytes], bool] | None = None,
    ) -> None:
        """Proxy requests from ``client`` until it closes, idles out or breaks the protocol. ``identity``: the
        verified client-certificate headers for every request; ``host_allowed``: False for a Host this
        connection may not reach (another client authentication than its SNI's): 421, as nginx."""
        # send_timeout: a client that stops reading is aborted, freeing its slot and origin connection.
        bounded = SendDeadline(client, self.settings.send_timeout)
        session = _ClientSession(self, bounded, peer, server_name)
        session.identity, session.host_allowed = list(identity), host_allowed
        try:
            await session.run()
        finally:
            self.observer.transferred(session.bytes_in, session.bytes_out)
            await bounded.close()  # bounded too: a close waits for a flush the client may never allow

    async def close(self) -> None:
        await self.pool.close()


class _ClientSession:
    def __init__(
        self, proxy: HTTPProxy, client: ByteStream, peer: tuple[str, int] | None, server_name: str | None
    ) -> None:
        self.proxy = proxy
        self.settings = proxy.settings
        self.client = client
        self.peer = peer
        self.server_name = server_name
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.settings.max_header_size)
        self.bytes_in = 0
        self.bytes_out = 0
        self.identity: list[tuple[bytes, bytes]] = []
        self.host_allowed: Callable[[bytes], bool] | None = None

    async def run(self) -> None:
        idle_tasks = self.proxy._idle_tasks
        task = asyncio.current_task()
        while not self.proxy.draining:
            try:
                if task is not None:
                    idle_tasks.add(task)
                try:
                    request = await self._next_request()
                finally:
                    idle_tasks.discard(task)  # type: ignore[arg-type]
            except asyncio.CancelledError:
                if self.proxy.draining:
                    return
                raise
            except h11.RemoteProtocolError as exc:
                await self._send_error(exc.error_status_hint, "bad request")
                return
            except (_ClientGone, TimeoutError, OSError):
                return
            if request is None:
                return
            if self.host_allowed is not None and not self.host_allowed(_host_of(request)):
                await self._send_error(421, "misdirected request")  # RFC 9110 §15.5.20
                return
            try:
                keep_going = await self._forward(request)
            except (_ClientGone, OSError):
                return
            if not keep_going or self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                return
            self.conn.start_next_cycle()

    # --- client side ----------------------------------------------------------------------------

    async def _next_client_event(self, timeout: float | None) -> h11.Event:
        """The next event from the client; ``timeout`` bounds each read (None: the caller bounds the whole)."""
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            if self.conn.they_are_waiting_for_100_continue:
                await self._write_client(h11.InformationalResponse(status_code=100, headers=[]))
            if timeout is None:
                data = await self.client.read(READ_SIZE)
            else:
                async with asyncio.timeout(timeout):
                    data = await self.client.read(READ_SIZE)
            self.bytes_in += len(data)
            self.conn.receive_data(data)

    async def _next_request(self) -> h11.Request | None:
        # One deadline for the whole head, not per read: a client dribbling a byte at a time (slowloris)
        # cannot hold the connection longer than idle_timeout.
        async with asyncio.timeout(self.settings.idle_timeout):
            event = await self._next_client_event(None)
        if isinstance(event, h11.Request):
            # h11 bounds only a head still incomplete; one that arrived whole in a read is measured here.
            size = len(event.method) + len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
            if size > self.settings.max_header_size:
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
            names = {name for name, _ in event.headers}
            if b"transfer-encoding" in names and b"content-length" in names:
                # RFC 9112 §6.1: a message with both is a request-smuggling attempt or a broken client;
                # refusing it is the safe choice for a proxy (and the connection is closed after).
                raise h11.RemoteProtocolError("both Transfer-Encoding and Content-Length", error_status_hint=400)
            return event
        return None  # ConnectionClosed between requests

    async def _write_client(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.bytes_out += len(data)
            await self.client.write(data)

    async def _send_error(self, status: int, reason: str) -> None:
        """Answer with a short error if the response has not started; the connection is closed after."""
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{status} {reason}\n".encode()
        headers = [("content-type", "text/plain"), ("content-length", str(len(body))), ("connection", "close")]
        try:
            await self._write_client(h11.Response(status_code=status, headers=headers))
            await self._write_client(h11.Data(data=body))
            await self._write_client(h11.EndOfMessage())
        except (h11.LocalProtocolError, OSError):
            return
        self.proxy.observer.response_sent(status)

    # --- one exchange ---------------------------------------------------------------------------

    async def _forward(self, request: h11.Request) -> bool:
        """Forward one request and its response; False means close the client connection."""
        pool = self.proxy.pool
        try:
            origin = await pool.acquire()
        except OriginUnavailable as exc:
            return await self._origin_failed(exc, request)
        try:
            try:
                response = await self._exchange(origin, request)
            except OriginUnavailable as exc:
                if not (origin.reused and exc.kind in _STALE_KINDS and not _has_body(request)):
                    raise
                # A reused keep-alive connection the origin closed as we sent: a race every keep-alive
                # proxy meets. A request without a body is resent once on a fresh connection.
                await origin.stream.close()
                origin = await pool.connect()
                response = await self._exchange(origin, request, body_sent=True)
        except OriginUnavailable as exc:
            await origin.stream.close()
            return await self._origin_failed(exc, request)
        except BaseException:
            await origin.stream.close()
            raise
        try:
            await self._relay_response(origin, response)
        except BaseException:
            await origin.stream.close()
            raise
        await pool.release(origin)
        return response.status_code != 101

    async def _origin_failed(self, exc: OriginUnavailable, request: h11.Request) -> bool:
        self.proxy.observer.origin_error(exc.kind)
        cause = exc.__cause__
        errno_text = "-"
        if isinstance(cause, OSError) and cause.errno:
            errno_text = f"{errno.errorcode.get(cause.errno, cause.errno)} ({cause.strerror})"
        peer = f"{self.peer[0]}:{self.peer[1]}" if self.peer else "-"
        sni = printable(self.server_name) if self.server_name else "-"
        # The path without its query string: queries carry tokens often enough to keep them out of logs.
        target = printable(request.target.split(b"?", 1)[0][:200])
        log.warning("origin %s:%d failed: %s errno=%s request=%s %s peer=%s sni=%s", self.settings.origin_host,
                    self.settings.origin_port, exc.kind, errno_text, printable(request.method), target, peer, sni,
                    extra={"peer": peer, "sni": self.server_name})
        if exc.timed_out:
            await self._send_error(504, "origin timed out")
        else:
            await self._send_error(502, "origin unavailable")
        return False

    async def _exchange(self, origin: OriginConnection, request: h11.Request, body_sent: bool = False) -> h11.Response:
        """Send the request head and body to the origin; return the response head. ``body_sent``: a resend
        of a body-less request whose end the client side has already delivered."""
        try:
            await origin.send(self._origin_request(request))
            if body_sent:
                await origin.send(h11.EndOfMessage())
            else:
                await self._stream_request_body(origin)
        except (OSError, h11.LocalProtocolError) as exc:
            raise OriginUnavailable("send") from exc
        try:
            async with asyncio.timeout(self.settings.response_timeout):
                while True:
                    event = await origin.next_event()
                    if isinstance(event, h11.InformationalResponse):
                        continue  # 1xx from the origin; we answered the client's 100-continue ourselves
                    if isinstance(event, h11.Response):
                        return event
                    raise OriginUnavailable("closed")
        except TimeoutError as exc:
            raise OriginUnavailable("response_timeout", timed_out=True) from exc
        except h11.RemoteProtocolError as exc:
            raise OriginUnavailable("protocol") from exc
        except OSError as exc:
            raise OriginUnavailable("reset") from exc

    async def _stream_request_body(self, origin: OriginConnection) -> None:
        while True:
            try:
                event = await self._next_client_event(self.settings.idle_timeout)
            except (h11.RemoteProtocolError, TimeoutError) as exc:
                raise _ClientGone() from exc
            if isinstance(event, h11.Data):
                await origin.send(h11.Data(data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                await origin.send(h11.EndOfMessage())
                return
            else:
                raise _ClientGone()

    async def _relay_response(self, origin: OriginConnection, response: h11.Response) -> None:
        """Stream the response to the client, coalescing what the origin has already sent into one write
        (a small response's head and body then cost one TLS record and one send)."""
        head = h11.Response(
            status_code=response.status_code, headers=_end_to_end(response.headers), reason=response.reason
        )
        pending = [self.conn.send(head) or b""]
        pending_size = len(pending[0])
        self.proxy.observer.response_sent(response.status_code)
        while True:
            try:
                event = origin.conn.next_event()  # what is already buffered, without I/O
            except h11.RemoteProtocolError as exc:
                self.proxy.observer.origin_error("body")
                raise _ClientGone() from exc
            if event is h11.NEED_DATA:
                if pending_size:
                    await self._write_pending(pending)
                    pending_size = 0
                try:
                    async with asyncio.timeout(self.settings.idle_timeout):
                        event = await origin.next_event()
                except (TimeoutError, h11.RemoteProtocolError, OSError) as exc:
                    self.proxy.observer.origin_error("body")
                    raise _ClientGone() from exc  # the head went out: all we can do is cut the connection
            if isinstance(event, h11.Data):
                data = self.conn.send(h11.Data(data=event.data)) or b""
                pending.append(data)
                pending_size += len(data)
                if pending_size >= READ_SIZE:
                    await self._write_pending(pending)
                    pending_size = 0
            elif isinstance(event, h11.EndOfMessage):
                pending.append(self.conn.send(h11.EndOfMessage()) or b"")
                await self._write_pending(pending)
                return
            else:
                self.proxy.observer.origin_error("body")
                raise _ClientGone()

    async def _write_pending(self, pending: list[bytes]) -> None:
        data = b"".join(pending)
        pending.clear()
        if data:
            self.bytes_out += len(data)
            await self.client.write(data)

    def _origin_request(self, request: h11.Request) -> h11.Request:
        headers = _end_to_end(request.headers)
        headers = [(name, value) for name, value in headers if name not in FORWARDING_HEADERS and name != b"expect"]
        prefixes = self.settings.identity_header_prefixes
        if prefixes:  # the client's own "identity" headers never reach the origin, whatever their case
            headers = [(name, value) for name, value in headers if not name.startswith(prefixes)]
        headers.extend(self.identity)
        if _has_body(request) and not any(name == b"content-length" for name, _ in headers):
            headers.append((b"transfer-encoding", b"chunked"))
        host = next((value for name, value in request.headers if name == b"host"), None)
        if host is None:
            host = f"{self.settings.origin_host}:{self.settings.origin_port}".encode()
            headers.append((b"host", host))
        headers.extend(self._forwarding_headers(host))
        return h11.Request(method=request.method, target=request.target, headers=headers)

    def _forwarding_headers(self, host: bytes) -> list[tuple[bytes, bytes]]:
        scheme = self.settings.scheme.encode()
        headers = [(b"x-forwarded-proto", scheme)]
        forwarded = b"proto=" + scheme
        if self.peer is not None:
            address = self.peer[0]
            headers.append((b"x-forwarded-for", address.encode()))
            forwarded = b"for=" + _forwarded_node(address) + b";" + forwarded
        if _is_token(host):
            forwarded += b";host=" + host
        else:
            forwarded += b';host="' + host.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        headers.append((b"forwarded", forwarded))
        return headers


def _host_of(request: h11.Request) -> bytes:
    """The Host header without port, lower-cased (b"" when absent)."""
    host = next((value for name, value in request.headers if name == b"host"), b"").strip().lower()
    if host.startswith(b"["):
        return host[1 : host.find(b"]")] if b"]" in host else host
    return host.rpartition(b":")[0] if b":" in host else host


def _has_body(request: h11.Request) -> bool:
    for name, value in request.headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value.strip() != b"0":
            return True
    return False


def _end_to_end(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Drop hop-by-hop headers, including those the Connection header names (RFC 9110 §7.6.1)."""
    named = set(HOP_BY_HOP)
    for name, value in headers:
        if name == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    return [(name, value) for name, value in headers if name not in named]


def _forwarded_node(address: str) -> bytes:
    """RFC 7239 §6: an IPv6 node is bracketed and quoted."""
    try:
        if isinstance(ipaddress.ip_address(address), ipaddress.IPv6Address):
            return f'"[{address}]"'.encode()
    except ValueError:
        return b"unknown"
    return address.encode()


_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_token(value: bytes) -> bool:
    return bool(value) and all(c in _TOKEN_CHARS for c in value)


__all__ = ["HOP_BY_HOP", "HTTPProxy", "OriginPool", "OriginUnavailable", "ProxySettings"]
