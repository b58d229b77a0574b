"""A thin asyncio driver for ``TLSServerConnection``: sockets in, a ``TLSStream`` per connection out.

One ``asyncio.Protocol`` per connection (aioquic's ``asyncio/protocol.py`` shape): ``data_received`` feeds the
engine, drains its events and writes what it queued. The only place it waits is the private-key operation:

* a key with synchronous operations (``key.blocking``: ``keyless.keys.local.LocalKey``, a PKCS#11 key) is
  used inline — no task, no thread — unless its ``offload`` says a call may block (RSA above 3072 bits, an
  HSM), then on the default thread pool (``cryptography`` and python-pkcs11 release the GIL there). A thread
  hop costs about as much CPU as an RSA-2048 operation (bench/tls.py, TLS 1.2 RSA key exchange: 0.89 ms of
  server CPU per handshake through the pool, 0.68 ms inline), and an edge scales with worker processes, not
  threads; only the multi-millisecond operations of larger keys would stall the other connections of the
  loop for long;
* any other key (``keyless.client.RemoteKey``) is awaited in a task: ``await key.sign(scheme, data)`` or
  ``await key.decrypt(data)``.

Either way the result (or the exception, or a ``TimeoutError`` at the handshake deadline) goes back through
``conn.complete_key_operation``; the engine turns a failed signature into a ``handshake_failure`` alert and a
failed decryption into a random premaster. The handler runs once the handshake is complete.

Flow control: received application data waits in a bounded buffer; past ``read_buffer_limit`` the socket is
paused until the handler reads. Writes respect the transport's pause/resume via ``TLSStream.drain``.

Applications that must decide per connection (a connection limit, per-connection metrics, context for the
key server) pass ``admit``: it is called at accept, before any TLS work, and returns the ``Admission`` for
that connection or None to refuse it (the socket is aborted).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from keyless.keys.base import AsyncPrivateKey
from keyless.tls.alerts import AlertDescription, TLSUsageError
from keyless.tls.codec import take_joined
from keyless.tls.config import ServerConfig
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import (
    NEED_DATA,
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    HandshakeComplete,
    KeyOperationRequired,
)

log = logging.getLogger(__name__)

Handler = Callable[["TLSStream"], Awaitable[None]]
EventCallback = Callable[[object], None]


@dataclass(frozen=True, slots=True)
class Admission:
    """How to run one admitted connection; every field is optional.

    ``on_event`` sees this connection's engine events (after the server-wide ``on_event``); ``on_close`` is
    called once when its socket is gone; ``key_for_operation`` returns the key that answers a
    ``KeyOperationRequired`` (default: ``event.key``), e.g. a remote key carrying this connection's context;
    ``handshake_timeout`` overrides the server's. The callbacks must not block; an exception from
    ``on_event``/``on_close`` is logged, one from ``key_for_operation`` fails the key operation.
    """

    on_event: EventCallback | None = None
    on_close: Callable[[], None] | None = None
    key_for_operation: Callable[[KeyOperationRequired], AsyncPrivateKey] | None = None
    handshake_timeout: float | None = None


Admit = Callable[[Any], Admission | None]  # peername -> Admission, or None to refuse the connection

DEFAULT_READ_BUFFER_LIMIT = 256 * 1024
WRITE_SLICE = 4 * 16384  # application writes are protected and handed to the transport this much at a time
HANDSHAKE_GRACE = 1.0  # after a key operation timed out: time left to send the alert / finish


class TLSStream:
    """The application's side of one TLS connection (given to the handler after the handshake)."""

    def __init__(self, protocol: _TLSServerProtocol, info: HandshakeComplete, peername: Any) -> None:
        self._protocol = protocol
        self.info = info
        self.peername = peername

    @property
    def sockname(self) -> Any:
        """Our address on this connection (e.g. for a PROXY protocol header)."""
        return self._protocol.sockname

    def __repr__(self) -> str:
        return f"<TLSStream {self.peername} {self.info.cipher_suite}>"

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` of application data; ``b""`` at EOF, close_notify or after an error."""
        return await self._protocol.read(max_bytes)

    async def write(self, data: bytes) -> None:
        """Send ``data`` (protected in records) and wait while the transport's buffer is full."""
        self._protocol.send(data)
        await self._protocol.drain()

    async def drain(self) -> None:
        await self._protocol.drain()

    async def close(self) -> None:
        """Send close_notify and close the socket (waits until it is closed)."""
        await self._protocol.close()

    def abort(self) -> None:
        """Close the socket at once, dropping whatever is unsent (a peer that stopped reading)."""
        self._protocol.abort()

    @property
    def at_eof(self) -> bool:
        return self._protocol.at_eof


class _TLSServerProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler, config: ServerConfig, handshake_timeout: float,
                 on_event: EventCallback | None, read_buffer_limit: int, admit: Admit | None = None) -> None:
        self._admit = admit
        self._on_close: Callable[[], None] | None = None
        self._key_for_operation: Callable[[KeyOperationRequired], AsyncPrivateKey] | None = None
        self._handler = handler
        self._config = config
        self._handshake_timeout = handshake_timeout
        self._on_event = on_event
        self._read_limit = read_buffer_limit
        self._loop = asyncio.get_running_loop()
        self._conn = TLSServerConnection(config)
        self._transport: asyncio.Transport | None = None
        self._peername: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._key_task: asyncio.Task[None] | None = None
        self._handler_task: asyncio.Task[None] | None = None
        self._stream: TLSStream | None = None
        # Application data for the handler
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._read_waiter: asyncio.Future[None] | None = None
        # The socket is paused while the handler's buffer is full or a key operation is awaited (the engine
        # would only buffer what the client sends meanwhile); it resumes when neither holds.
        self._paused_for_buffer = False
        self._paused_for_key = False
        self._reading_paused = False
        # Write-side flow control
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._out: list[bytes] = []  # protected bytes waiting for the end of this loop pass (see _flush)
        self._out_size = 0
        self._write_handle: asyncio.Handle | None = None
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._peer_closed_cleanly = False

    # ---- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, so no isinstance check).
        self._peername = transport.get_extra_info("peername")
        if self._admit is not None and not self._admitted(self._admit):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._transport = cast(asyncio.Transport, transport)
        self._timer = self._loop.call_later(self._handshake_timeout, self._handshake_timed_out)

    def _admitted(self, admit: Admit) -> bool:
        try:
            admission = admit(self._peername)
        except Exception:
            log.exception("admit callback failed; refusing the connection")
            return False
        if admission is None:
            return False
        self._on_close = admission.on_close
        self._key_for_operation = admission.key_for_operation
        if admission.handshake_timeout is not None:
            self._handshake_timeout = admission.handshake_timeout
        if admission.on_event is not None:
            self._on_event = _both(self._on_event, admission.on_event)
        return True

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return  # refused at accept: aborted, nothing to parse
        self._conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        if self._transport is None:
            return False
        self._conn.receive_data(b"")
        self._process()
        return False  # TLS has no half-close without close_notify: let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._out.clear()
        if self._write_handle is not None:
            self._write_handle.cancel()
            self._write_handle = None
        self._cancel_timer()
        if self._key_task is not None:
            self._key_task.cancel()
        self._set_eof()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        if not self._closed.done():
            self._closed.set_result(None)
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            try:
                on_close()
            except Exception:
                log.exception("on_close callback failed")

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # ---- driving the engine --------------------------------------------------------------------------------

    def _process(self) -> None:
        conn = self._conn
        on_event = self._on_event
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if on_event is not None:
                try:
                    on_event(event)
                except Exception:
                    log.exception("on_event callback failed")
            if isinstance(event, ApplicationData):
                self._deliver(event.data)
            elif isinstance(event, KeyOperationRequired):
                if not self._start_key_operation(event):
                    break  # answered later by a task, which calls _process again
            elif isinstance(event, HandshakeComplete):
                self._handshake_complete(event)
            elif isinstance(event, AlertReceived):
                self._peer_closed_cleanly = event.description == AlertDescription.close_notify
            elif isinstance(event, ConnectionClosed):
                self._flush(now=True)
                self._set_eof()
                # After the peer's close_notify the handler may still answer (RFC 8446 §6.1: closing is per
                # direction); it closes when done. Any other end closes the socket now.
                half_closed = self._peer_closed_cleanly and self._handler_task is not None
                if self._transport is not None and not half_closed:
                    self._transport.close()
                return
        # A handshake flight has nothing to wait for: it leaves now (no extra loop pass).
        self._flush(now=not conn.handshake_complete)

    def _flush(self, *, now: bool = False) -> None:
        """Hand the engine's output to the transport. Small output waits until the end of this loop pass
        (``call_soon``), so e.g. a short response and the close_notify after it leave in one send()."""
        data = self._conn.data_to_send()
        if data:
            self._out.append(data)
            self._out_size += len(data)
        if not self._out:
            return
        if now or self._out_size >= WRITE_SLICE:
            self._write_out()
        elif self._write_handle is None:
            self._write_handle = self._loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        if self._write_handle is not None:
            self._write_handle.cancel()
            self._write_handle = None
        out = self._out
        if not out:
            return
        data = take_joined(out)
        self._out_size = 0
        if self._transport is not None:
            self._transport.write(data)

    def _start_key_operation(self, request: KeyOperationRequired) -> bool:
        """True if answered inline; False if a task (thread pool or awaited key) will answer."""
        key = request.key
        if self._key_for_operation is not None:
            try:
                key = self._key_for_operation(request)
            except Exception as exc:
                log.exception("key_for_operation callback failed")
                self._conn.complete_key_operation(request.op_id, exc)
                return True
        scheme = request.scheme if request.kind == "sign" else None  # from here on: None means decrypt
        if request.kind == "sign" and scheme is None:  # the engine always names the scheme of a signature
            self._conn.complete_key_operation(request.op_id, ValueError("a signature request without a scheme"))
            return True
        blocking = key.blocking
        if blocking is not None:
            call: Callable[[], bytes] = (
                functools.partial(blocking.sign_sync, scheme, request.data) if scheme is not None
                else functools.partial(blocking.decrypt_sync, request.data)
            )
            if not blocking.offload:
                try:
                    result: bytes | BaseException = call()
                except Exception as exc:
                    result = exc
                self._conn.complete_key_operation(request.op_id, result)
                return True
            awaitable: Awaitable[bytes] = self._loop.run_in_executor(None, call)
        elif scheme is not None:
            awaitable = key.sign(scheme, request.data)
        else:
            awaitable = key.decrypt(request.data)
        self._key_task = self._loop.create_task(self._await_key(request.op_id, awaitable))
        self._paused_for_key = True
        self._update_reading()
        return False

    async def _await_key(self, op_id: int, awaitable: Awaitable[bytes]) -> None:
        result: bytes | BaseException
        try:
            result = await awaitable  # the handshake deadline cancels this task
        except asyncio.CancelledError:
            if self._transport is None:
                raise
            result = TimeoutError("key operation timed out")
        except Exception as exc:
            result = exc
        self._key_task = None
        if self._transport is None:
            return  # the socket went away while we waited
        self._paused_for_key = False
        self._update_reading()
        self._conn.complete_key_operation(op_id, result)
        self._process()

    def _handshake_complete(self, info: HandshakeComplete) -> None:
        self._cancel_timer()
        self._stream = TLSStream(self, info, self._peername)
        self._handler_task = self._loop.create_task(self._run_handler(self._stream))

    async def _run_handler(self, stream: TLSStream) -> None:
        try:
            await self._handler(stream)
        except ConnectionError as exc:
            log.debug("TLS connection %s ended: %s", self._peername, exc)
        except Exception:
            log.exception("TLS connection handler failed")
        finally:
            self.start_close()  # no need to wait for the socket to go
            # The stream refers back to this protocol: without this cycle the connection is freed by
            # refcount instead of by the cyclic GC (~17 us of GC CPU per handshake, bench/tls.py).
            self._stream = None

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._conn.handshake_complete:
            return
        if self._key_task is not None:
            # _await_key answers the engine with TimeoutError: a fatal alert for a signature; for an RSA
            # decryption the engine goes on with a random premaster, so keep a short deadline for the rest.
            self._key_task.cancel()
            self._timer = self._loop.call_later(HANDSHAKE_GRACE, self._handshake_timed_out)
            return
        log.debug("TLS handshake timed out for %s", self._peername)
        if self._transport is not None:
            self._transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ---- application data ------------------------------------------------------------------------------------

    def _deliver(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        self._wake_reader()
        if self._buffered > self._read_limit and not self._paused_for_buffer:
            self._paused_for_buffer = True
            self._update_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None:
            return
        pause = self._paused_for_buffer or self._paused_for_key
        if pause and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        elif not pause and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _set_eof(self) -> None:
        self._eof = True
        self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    @property
    def sockname(self) -> Any:
        transport = self._transport
        return transport.get_extra_info("sockname") if transport is not None else None

    async def read(self, max_bytes: int) -> bytes:
        if max_bytes <= 0:
            return b""
        chunks = self._chunks
        while not chunks:
            if self._eof:
                return b""
            self._read_waiter = self._loop.create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        chunk = chunks.popleft()
        if len(chunk) > max_bytes:
            chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        elif chunks and len(chunk) + len(chunks[0]) <= max_bytes:
            # Records arrive 16 KB at a time: hand several over at once (one copy beats a loop per record).
            parts = [chunk]
            size = len(chunk)
            while chunks and size + len(chunks[0]) <= max_bytes:
                part = chunks.popleft()
                parts.append(part)
                size += len(part)
            chunk = b"".join(parts)
        self._buffered -= len(chunk)
        if self._paused_for_buffer and self._buffered <= self._read_limit // 2:
            self._paused_for_buffer = False
            self._update_reading()
        return chunk

    def send(self, data: bytes) -> None:
        if self._transport is None or self._conn.closed:
            raise ConnectionResetError("TLS connection is closed")
        try:
            if len(data) <= WRITE_SLICE:
                self._conn.send(data)
                self._flush()
                return
            # Large writes go out in slices: the socket starts sending sooner and no multi-megabyte buffer
            # is built (above glibc's mmap threshold each one would cost page faults).
            with memoryview(data) as view:
                for start in range(0, len(data), WRITE_SLICE):
                    self._conn.send(view[start : start + WRITE_SLICE].tobytes())
                    self._flush()
        except TLSUsageError as exc:
            raise ConnectionResetError(str(exc)) from None

    async def drain(self) -> None:
        if self._transport is None:
            raise ConnectionResetError("TLS connection is closed")
        if self._writing_paused:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def start_close(self) -> None:
        """Queue close_notify, flush and close the socket (it goes once the transport's buffer is sent)."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            self._conn.close()
            self._flush(now=True)
            transport.close()

    async def close(self) -> None:
        self.start_close()
        if not self._closed.done():
            await asyncio.shield(self._closed)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()  # connection_lost follows: waiters wake, on_close frees the slot


def _both(first: EventCallback | None, second: EventCallback) -> EventCallback:
    if first is None:
        return second

    def both(event: object) -> None:
        first(event)
        second(event)

    return both


async def start_tls_server(handler: Handler, host: str | None, port: int,
                           config: ServerConfig | Callable[[], ServerConfig], *,
                           handshake_timeout: float = 10.0, reuse_port: bool = False,
                           sock: socket.socket | None = None, on_event: EventCallback | None = None,
                           read_buffer_limit: int = DEFAULT_READ_BUFFER_LIMIT, backlog: int = 1024,
                           admit: Admit | None = None) -> asyncio.Server:
    """Listen on ``host:port`` (or on ``sock``, ignoring both) and run ``handler(stream)`` for each completed
    handshake. ``config`` may be a function returning the configuration, asked once per connection (reload).
    ``on_event`` sees every engine event (metrics); it must not raise or block. ``admit``, if given, decides
    at accept whether and how each connection runs (see ``Admission``)."""
    loop = asyncio.get_running_loop()

    def factory() -> _TLSServerProtocol:
        resolved = config() if callable(config) else config
        return _TLSServerProtocol(handler, resolved, handshake_timeout, on_event, read_buffer_limit, admit)

    if sock is not None:
        return await loop.create_server(factory, sock=sock, backlog=backlog)
    return await loop.create_server(factory, host, port, reuse_port=reuse_port or None, backlog=backlog)


async def refresh_ticket_keys(ring: Any, interval: float = 30.0) -> None:
    """Keep a ``TicketKeyRing`` fresh, forever: run it as a task beside the server (the edge does).

    ``ring`` is the ring, or a callable returning the current one (a daemon that swaps rings on reload).
    The source is re-read in a thread when the ring says it is due — files and Redis are never read inside
    a handshake, which only uses the keys in memory. ``interval`` caps the wait between two checks.
    """
    current: Callable[[], Any] = ring if callable(ring) else (lambda: ring)
    while True:
        delay = interval
        target = current()
        if target is not None and target.has_source:
            if target.refresh_due:
                try:
                    await asyncio.to_thread(target.refresh)
                except Exception:
                    log.exception("ticket key refresh failed")
            delay = min(interval, target.seconds_until_refresh())
        await asyncio.sleep(max(delay, min(interval, 1.0)))
