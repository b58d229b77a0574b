"""The key server's asyncio layer: sockets, mutual TLS, the thread pool, timeouts, drain and reload.

TLS runs over ``ssl.MemoryBIO`` inside each protocol object rather than through asyncio's own SSL
transport: the server then sees a failed handshake (to count and log it), reads every decrypted
byte available per socket read in one go, and writes all replies that are ready as one TLS write.
The protocol logic is ``ServerConnection`` (sans-IO) and ``route`` (pure); this module only moves
bytes and decides where a job runs: ECDSA and Ed25519 inline (tens of microseconds), RSA and hooks
on ``CryptoPool``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Callable
from typing import Any, cast

from keyless.keys.hooks import Hooks
from keyless.keys.loader import LoadReport, load_keys
from keyless.keys.permissions import UnsafeKeyFile, check_key_file
from keyless.keys.store import KeyStore
from keyless.protocol import ErrorCode, Opcode
from keyless.runtime.logging import RateLimitedLog
from keyless.runtime.loop import wire_signals
from keyless.server.config import KeyServerConfig
from keyless.server.connection import FrameRejected, ServerConnection
from keyless.server.dispatch import Answer, HookJob, failure, route
from keyless.server.metrics import KeyServerMetrics, error_name, opcode_name
from keyless.server.pool import CryptoPool, Done, PoolItem
from keyless.server.reload import reload_settings
from keyless.server.request_context import request_id_of
from keyless.server.shedding import OVERLOADED, LoadShedder
from keyless.server.wire import Request

log = logging.getLogger("keyless.keyserver")
# A flood of bad handshakes or failing requests must not fill the disk: bursts of 50 lines per 10 s, then a count.
_connection_failures = RateLimitedLog(log, burst=50, period=10.0)
_request_failures = RateLimitedLog(log, burst=50, period=10.0)

_RESPONSE = int(Opcode.RESPONSE)
_ERROR = int(Opcode.ERROR)
_INTERNAL_ERROR_PAYLOAD = bytes((ErrorCode.INTERNAL,))

_READ_SIZE = 262144


def make_server_tls_context(config: KeyServerConfig) -> ssl.SSLContext:
    """Mutual TLS: our certificate, and client certificates that must chain to the configured CA.

    TLS 1.2 (ECDHE with AES-GCM or ChaCha20, as the reference server) and TLS 1.3."""
    try:
        check_key_file(config.auth_key, strict=config.strict_permissions)
    except UnsafeKeyFile as exc:
        raise UnsafeKeyFile(f"auth_key {exc.path}", exc.reason) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.load_cert_chain(str(config.auth_cert), str(config.auth_key))
    context.load_verify_locations(cafile=str(config.ca_cert))
    context.verify_mode = ssl.CERT_REQUIRED
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
    return context


def _subject(cert: dict[str, Any] | None) -> str:
    if not cert:
        return "-"
    parts = []
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            parts.append(f"{name}={value}")
    return _printable(",".join(parts).encode("utf-8")) or "-"


class EdgeConnection(asyncio.Protocol):
    """One edge's TCP connection: TLS over memory BIOs, then keyless frames via ``ServerConnection``."""

    def __init__(self, server: KeyServer) -> None:
        self.server = server
        self.conn = ServerConnection(server.config.max_in_flight)
        self.transport: asyncio.Transport | None = None
        self.peer = "-"
        self.subject = "-"
        self.handshaken = False
        self.closed = False
        self.last_activity = time.monotonic()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = server.tls_context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._peer_eof = False

    # -- asyncio callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream server always passes a Transport
        peername = transport.get_extra_info("peername")
        if peername:
            self.peer = f"{peername[0]}:{peername[1]}"
        self.server.connections.add(self)
        timeout = self.server.config.handshake_timeout
        self._handshake_timer = self.server.loop.call_later(timeout, self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        if self.closed:  # bytes that raced a close: nobody will answer them
            return
        self.last_activity = time.monotonic()
        self._incoming.write(data)
        if not self.handshaken and not self._do_handshake():
            return
        self._read_plaintext()

    def eof_received(self) -> bool:
        self._peer_eof = True
        self._maybe_finish()
        return True  # keep the write side open to answer what is in flight

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self.server.connections.discard(self)
        if self.handshaken:
            self.server.metrics.connections.dec()
        if not self.closed:
            self.closed = True
            if self.handshaken:
                self._log_closed(f" error={exc}" if exc else "")

    def _log_closed(self, detail: str = "") -> None:
        """The one "closed" line of a connection; a partial frame left behind is a failure."""
        truncated = self.conn.buffered if not self.conn.rejected else 0
        if truncated:
            self.server.metrics.failed_connection.inc()
            log.warning("connection closed peer=%s subject=%s with a truncated frame (%d bytes) requests=%d%s",
                        self.peer, self.subject, truncated, self.conn.requests_seen, detail, extra={"peer": self.peer})
        else:
            log.info("connection closed peer=%s subject=%s requests=%d%s", self.peer, self.subject,
                     self.conn.requests_seen, detail, extra={"peer": self.peer})

    # -- TLS --------------------------------------------------------------------------------------

    def _do_handshake(self) -> bool:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_tls()
            return False
        except (ssl.SSLError, OSError, ValueError) as exc:
            self._flush_tls()  # the alert
            self._fail(f"TLS handshake failed peer={self.peer}: {_ssl_reason(exc)}")
            return False
        self.handshaken = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self.subject = _subject(self._tls.getpeercert())
        self.server.metrics.connections.inc()
        log.info("connection opened peer=%s subject=%s tls=%s cipher=%s", self.peer, self.subject,
                 self._tls.version(), (self._tls.cipher() or ("-",))[0], extra={"peer": self.peer})
        self._flush_tls()
        return True

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if not self.handshaken and not self.closed:
            self._fail(f"TLS handshake timed out peer={self.peer}")

    def _fail(self, message: str) -> None:
        self.server.metrics.failed_connection.inc()
        _connection_failures.log(logging.WARNING, "%s", message, extra={"peer": self.peer})
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _read_plaintext(self) -> None:
        chunks: list[bytes] = []
        read = self._tls.read
        while True:
            try:
                chunk = read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._peer_eof = True
                break
            except (ssl.SSLError, OSError) as exc:
                self._flush_tls()
                self._fail(f"TLS error peer={self.peer} subject={self.subject}: {_ssl_reason(exc)}")
                return
            if not chunk:  # close_notify received (Python returns b"" for a clean TLS shutdown)
                self._peer_eof = True
                break
            chunks.append(chunk)
        if chunks:
            self.conn.receive_data(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        self.process()
        self._maybe_finish()

    def _flush_tls(self) -> None:
        data = self._outgoing.read()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- requests ---------------------------------------------------------------------------------

    def process(self) -> None:
        """Turn every buffered frame into work (up to the in-flight cap), then write what is ready."""
        if self.closed or self.server.draining_hard:
            return
        conn = self.conn
        server = self.server
        store = server.store
        hooks = server.hooks
        count_request = server.metrics.count_request
        next_event = conn.next_event
        perf = time.perf_counter
        received_at = perf()  # everything in this batch arrived together
        offloaded: list[PoolItem] = []
        send_reply = conn.send_reply
        stats = server.metrics.stats
        observe_latency = server.metrics.sign_duration.observe
        while True:
            event = next_event()
            if type(event) is Request:
                pending = conn.in_flight  # one less once this request is answered
                try:
                    opcode = event.opcode
                    count_request(opcode)
                    target = route(event, store, hooks)
                    if isinstance(target, Answer):
                        self.complete(event, received_at, target, 0.0, False)
                    elif isinstance(target, HookJob) or target.offload:
                        if server.shedder.should_shed(server.pool.queued + len(offloaded)):
                            self.complete(event, received_at, OVERLOADED, 0.0, False)  # answered now, not late
                            continue
                        offloaded.append(((self, event, received_at), target, opcode or 0, event.payload))
                    else:
                        # Inline key operation (ECDSA, Ed25519): the hot path, kept free of extra calls.
                        started = perf()
                        try:
                            result = target.execute(opcode or 0, event.payload or b"")
                        except Exception as exc:  # OperationError, or a backend bug: one request fails
                            self.complete(event, received_at, failure(exc), perf() - started, True)
                            continue
                        done = perf()
                        send_reply(event.id, _RESPONSE, result)
                        stats.observe(opcode, None, done - started, done - received_at)
                        stats.sign_requests += 1
                        observe_latency(done - received_at)
                except Exception as exc:  # our bug: it costs this one request, no more
                    if conn.in_flight == pending:
                        self.answer_internal_error(event, exc)
                continue
            if type(event) is FrameRejected:
                server.metrics.failed_connection.inc()
                log.warning("malformed frame peer=%s subject=%s id=%s: %s; answering 0x07 and closing",
                            self.peer, self.subject, event.message_id, event.reason, extra={"peer": self.peer})
            break
        if offloaded:
            server.pool.submit(offloaded)
        self.flush()
        self._update_reading()

    def complete(self, request: Request, received_at: float, answer: Answer, exec_seconds: float,
                 key_op: bool) -> None:
        """Queue the reply to ``request`` and account for it. The reply is queued first: whatever
        the accounting or the log line might raise, the request is answered exactly once."""
        self.conn.send_reply(request.id, answer.opcode, answer.payload)
        try:
            error = answer.error
            total = time.perf_counter() - received_at
            metrics = self.server.metrics
            metrics.observe_request(request.opcode, error, exec_seconds, total)
            if error is None:
                if key_op:
                    metrics.observe_key_operation(total)
            else:
                self._log_failure(request, error, answer.reason)
        except Exception:  # answered already; a log or metrics bug must not spread
            log.exception("accounting for a reply failed peer=%s subject=%s id=%d", self.peer, self.subject,
                          request.id)

    def _log_failure(self, message: Request, error: int, reason: str) -> None:
        request_id = request_id_of(message.request_context)
        tag = f" request_id={_printable(request_id.encode('utf-8', 'backslashreplace'))!r}" if request_id else ""
        sni = _printable(message.sni[:253]) if message.sni else "-"
        _request_failures.log(
            logging.WARNING, "request failed peer=%s subject=%s id=%d opcode=%s ski=%s sni=%s error=%s%s: %s",
            self.peer, self.subject, message.id, opcode_name(message.opcode),
            message.ski.hex() if message.ski else "-", sni, error_name(error), tag, reason,
            extra={"peer": self.peer, "sni": sni if message.sni else None, "request_id": request_id or None})

    def answer_internal_error(self, request: Request, exc: BaseException) -> None:
        """The error boundary of one request: ``exc`` escaped our own per-request code (a bug). The
        request is answered 0x03 so that its in-flight slot is freed; nothing else is affected."""
        log.error("internal error answering peer=%s subject=%s id=%d opcode=%s: %s", self.peer, self.subject,
                  request.id, opcode_name(request.opcode), type(exc).__name__, exc_info=exc)
        self.conn.send_reply(request.id, _ERROR, _INTERNAL_ERROR_PAYLOAD)

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self._tls.write(data)
            except (ssl.SSLError, OSError) as exc:
                self._fail(f"TLS write failed peer={self.peer}: {_ssl_reason(exc)}")
                return
            self._flush_tls()

    def _update_reading(self) -> None:
        """Read only while below the in-flight cap and while the peer reads our replies."""
        if self.transport is None or self.closed:
            return
        want = self.conn.can_accept and not self._writing_paused and not self.server.draining_hard
        if want and self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
            if self.conn.buffered:
                self.process()
        elif not want and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def after_completions(self) -> None:
        self.flush()
        if self.conn.buffered and self.conn.can_accept:
            self.process()  # frames held back by the cap
        else:
            self._update_reading()
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        """Close once a rejected or ended connection has answered everything in flight."""
        if self.closed:
            return
        if self.conn.finished or (self._peer_eof and self.conn.in_flight == 0):
            self.close()

    def abort(self) -> None:
        """Drop the connection at once (after an internal error left its state unknown)."""
        self.server.metrics.failed_connection.inc()
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.closed or self.transport is None:
            return
        self.flush()
        if self.handshaken:
            try:
                self._tls.unwrap()  # queue close_notify
            except (ssl.SSLError, OSError, ValueError):
                pass
            self._flush_tls()
        self.closed = True
        if self.handshaken:
            self._log_closed()
        self.transport.close()


def _printable(data: bytes) -> str:
    """Peer-supplied bytes for a log line: control characters and non-ASCII escaped (no log injection)."""
    return data.decode("ascii", "backslashreplace").encode("unicode_escape").decode("ascii")


def _ssl_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else (str(exc) or type(exc).__name__)


class KeyServer:
    """A listening key server; ``start()`` then ``serve_until_signalled()`` (or drive it from tests)."""

    def __init__(
        self, config: KeyServerConfig, store: KeyStore, metrics: KeyServerMetrics | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.hooks = hooks or Hooks()
        self.metrics = metrics or KeyServerMetrics()
        self.tls_context = make_server_tls_context(config)
        self.connections: set[EdgeConnection] = set()
        self.draining_hard = False
        self.listening = False
        self.loop = asyncio.get_running_loop()
        # Default: the CPUs this process may use, shared among --workers processes.
        threads = config.rsa_threads or max(1, (os.cpu_count() or 1) // config.workers)
        self.pool: CryptoPool = CryptoPool(self.loop, threads, self._pool_done)
        self.shedder = LoadShedder(config.shed_queue_time, threads)
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._reloading: asyncio.Task[LoadReport | None] | None = None

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the key server is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await self.loop.create_server(
            lambda: EdgeConnection(self), self.config.listen, self.config.port, backlog=1024,
            reuse_address=True, reuse_port=self.config.workers > 1,
        )
        self.listening = True
        self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        interval = min(1.0, self.config.idle_timeout / 4)
        self._sweeper = self.loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle (nothing in flight, nothing received) for longer than idle_timeout."""
        now = time.monotonic()
        limit = self.config.idle_timeout
        try:
            for edge in list(self.connections):
                if edge.handshaken and edge.conn.in_flight == 0 and now - edge.last_activity > limit:
                    log.info("closing idle connection peer=%s subject=%s", edge.peer, edge.subject)
                    edge.close()
        finally:  # a failure here must not end idle sweeping for the life of the process
            self._schedule_sweep()

    def _pool_done(self, results: list[Done]) -> None:
        """Queue the replies of finished pool jobs, then write once per connection."""
        touched: dict[int, EdgeConnection] = {}
        metrics = self.metrics
        stats = metrics.stats
        observe_latency = metrics.sign_duration.observe
        now = time.perf_counter()  # every reply of this delivery is queued now
        self.shedder.observe(results)
        for context, outcome, exec_seconds in results:
            edge: EdgeConnection
            request: Request
            edge, request, received_at = context
            # Each result in its own error boundary: the results of one delivery belong to many
            # connections, and one request's failure must not leave the others unanswered.
            pending = edge.conn.in_flight
            try:
                if type(outcome) is bytes:  # success: the common case, kept free of extra calls
                    edge.conn.send_reply(request.id, _RESPONSE, outcome)
                    total = now - received_at
                    stats.observe(request.opcode, None, exec_seconds, total)
                    stats.sign_requests += 1
                    observe_latency(total)
                else:
                    edge.complete(request, received_at, cast(Answer, outcome), exec_seconds, True)
            except Exception as exc:
                if edge.conn.in_flight == pending:
                    edge.answer_internal_error(request, exc)
            touched[id(edge)] = edge
        for edge in touched.values():
            try:
                edge.after_completions()
            except Exception:  # our bug on one connection: close that one, serve the rest
                log.exception("internal error on connection peer=%s subject=%s; closing it", edge.peer, edge.subject)
                edge.abort()

    # -- reload and shutdown -------------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: load the keys again off the event loop and swap the store in; connections stay."""
        if self._reloading is not None and not self._reloading.done():
            log.info("key reload already running")
            return
        self._reloading = self.loop.create_task(self.reload())

    async def reload(self) -> LoadReport | None:
        # The file first: it may name other key directories. A file that no longer loads changes nothing.
        if self.config.source is not None and not await reload_settings(self, make_server_tls_context):
            return None
        log.info("reloading keys")
        try:
            report = await self.loop.run_in_executor(None, lambda: load_keys(
                list(self.config.key_sources), strict=self.config.strict,
                strict_permissions=self.config.strict_permissions))
        except Exception as exc:
            log.error("key reload failed, keeping the %d keys loaded before: %s", len(self.store), exc)
            return None
        self.metrics.key_load_duration.observe(report.seconds)
        self.metrics.keys_loaded.set(len(report.store))
        self.store = report.store
        log.info("reloaded keys: %d loaded, %d files skipped", len(report.store), len(report.problems))
        return report

    async def drain(self, timeout: float = 30.0, quiet: float = 0.1) -> None:
        """SIGTERM: stop accepting, keep answering what edges already sent until every connection
        has been quiet (nothing in flight, nothing buffered) for ``quiet`` seconds, then close."""
        log.info("draining: %d connections", len(self.connections))
        if self._server is not None:
            self._server.close()
        self.listening = False
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            busy = any(e.conn.in_flight or e.conn.buffered for e in self.connections)
            now = time.monotonic()
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= quiet:
                break
            await asyncio.sleep(0.01)
        else:
            log.warning("drain timed out with requests in flight")
        self.draining_hard = True
        for edge in list(self.connections):
            edge.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.pool.close()
        log.info("drained")

    async def serve_until_signalled(self, on_ready: Callable[[], None] | None = None) -> None:
        stop = asyncio.Event()
        wire_signals(self.loop, stop=stop.set, reload=self.request_reload)
        if on_ready is not None:
            on_ready()
        await stop.wait()
        log.info("shutdown signal received")
        await self.drain()
