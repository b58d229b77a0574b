"""One key-server address: its small pool of connections, its health and its recent latency.

The pool opens its connections lazily (all of them at the first demand, so they come up together)
and hands out the open connection with the fewest requests in flight. A connection that closes leaves
the pool and is replaced at the next demand. Health is a flag the client flips: down after a failed
connect or a missed ping, up again after a successful probe (``probe``: a ping). Ejection
(``keyless.client.resilience``) is a longer "down": after consecutive timeouts or lost hedge races, the
endpoint stays out of rotation until ``ejected_until`` even if pings succeed, then comes back slowly.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from keyless.client.connection import KeylessConnection
from keyless.client.core import Request
from keyless.client.errors import ConnectFailed, KeylessClientError, OperationTimeout
from keyless.client.resilience import EjectionPolicy, HedgePolicy, LatencyWindow
from keyless.protocol import Opcode

# Weight of the newest latency sample in the moving average: about the last 10 operations count.
EWMA_WEIGHT = 0.2


@dataclass(frozen=True, slots=True)
class EndpointStats:
    label: str
    healthy: bool
    latency_ewma: float | None
    in_flight: int
    connections: int
    completed: int
    failures: int
    last_error: str
    hedged: int = 0  # operations of this server that were also sent elsewhere (it was slow)
    hedge_won: int = 0  # hedges this server answered first
    ejected: int = 0  # times it was ejected
    ejected_for: float = 0.0  # seconds of ejection left (0: not ejected)
    shed: int = 0  # operations it answered "overloaded" (0xC0) and that went elsewhere


class Endpoint:
    """A key server at one address (one of possibly several a DNS name resolved to)."""

    def __init__(
        self,
        host: str,
        port: int,
        server_hostname: str,
        ssl_context: ssl.SSLContext,
        pool_size: int,
        connect_timeout: float,
    ) -> None:
        self.host = host
        self.port = port
        self.server_hostname = server_hostname
        self.label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._ssl_context = ssl_context
        self._pool_size = max(1, pool_size)
        self._connect_timeout = connect_timeout
        self._open: list[KeylessConnection] = []
        self._connecting: set[asyncio.Task[KeylessConnection]] = set()
        self.healthy = True
        self.latency_ewma: float | None = None
        self.in_flight = 0
        self.completed = 0
        self.failures = 0
        self.last_error = ""
        self.latencies = LatencyWindow()
        self.hedged = 0
        self.hedge_won = 0
        self.ejected = 0
        self.shed = 0
        self.consecutive_failures = 0
        self.ejected_until = 0.0  # loop time before which a successful ping does not readmit it
        self.readmitted_at = -math.inf  # loop time of the last readmission (slow start)
        self._ejection_streak = 0
        self._down_watchers: set[Callable[[], None]] = set()
        self._closed = False
        self._last_close_reason = ""

    def __repr__(self) -> str:
        return f"<Endpoint {self.label} healthy={self.healthy}>"

    # -- load balancing inputs --------------------------------------------------------------------

    def score(self) -> float:
        """Lower is better: expected latency times the queue an operation would join (peak-EWMA style).
        An endpoint without a sample yet scores 0, so it gets traffic and thereby a sample."""
        return (self.latency_ewma or 0.0) * (self.in_flight + 1)

    def record_latency(self, seconds: float) -> None:
        previous = self.latency_ewma
        self.latency_ewma = seconds if previous is None else previous + EWMA_WEIGHT * (seconds - previous)
        self.completed += 1

    def record_answer(self, seconds: float) -> None:
        """An operation answered after ``seconds``: latency sample, and the failure streak ends."""
        self.record_latency(seconds)
        self.latencies.add(seconds)
        self.consecutive_failures = 0

    def hedge_delay(self, policy: HedgePolicy) -> float:
        return policy.delay(self.latencies.p99)

    def share(self, policy: EjectionPolicy, now: float) -> float:
        """The share of new operations it may take (below 1 during slow start after a readmission)."""
        return policy.share(now - self.readmitted_at)

    def mark_down(self, reason: str) -> None:
        self.healthy = False
        self.failures += 1
        self.last_error = reason
        for watcher in list(self._down_watchers):
            watcher()

    def mark_up(self) -> None:
        self.healthy = True

    def watch_down(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever the endpoint goes down (ejected, missed a ping): operations
        waiting on it are sent elsewhere at once, without waiting for their hedge delay or timeout."""
        self._down_watchers.add(callback)

    def unwatch_down(self, callback: Callable[[], None]) -> None:
        self._down_watchers.discard(callback)

    def eject(self, reason: str, policy: EjectionPolicy, now: float) -> float:
        """Out of rotation for the policy's ejection time (longer for each ejection in a row); returns it."""
        if now - self.ejected_until > policy.max_ejection_time:
            self._ejection_streak = 0  # well-behaved long enough since the last ejection: start over
        self._ejection_streak += 1
        duration = policy.ejection_time(self._ejection_streak)
        self.ejected_until = now + duration
        self.ejected += 1
        self.consecutive_failures = 0
        self.mark_down(f"ejected: {reason}")
        return duration

    def readmit(self, now: float) -> bool:
        """A ping succeeded: back in rotation unless its ejection time still runs; True when it came back."""
        if self.healthy or now < self.ejected_until:
            return False
        self.healthy = True
        if self.ejected_until > 0:
            self.readmitted_at = now  # slow start after an ejection; a plain down (refused connect) is not one
        return True

    def stats(self, now: float | None = None) -> EndpointStats:
        ejected_for = 0.0 if now is None or self.healthy else max(0.0, self.ejected_until - now)
        return EndpointStats(
            self.label, self.healthy, self.latency_ewma, self.in_flight, len(self._open), self.completed,
            self.failures, self.last_error, self.hedged, self.hedge_won, self.ejected, ejected_for,
            self.shed,
        )

    def connection_now(self) -> KeylessConnection | None:
        """The least-loaded open connection, if one is open and the pool is full (no waiting)."""
        if self._closed or len(self._open) < self._pool_size:
            return None
        best = self._open[0]
        for connection in self._open:
            if connection.in_flight < best.in_flight:
                best = connection
        return best if best.is_open else None

    # -- connections ------------------------------------------------------------------------------

    async def acquire(self, deadline: float) -> KeylessConnection:
        """The open connection with the fewest requests in flight, connecting first if none is open.
        Raises ``ConnectFailed``."""
        if self._closed:
            raise ConnectFailed(f"key server {self.label}: client closed")
        best: KeylessConnection | None = None
        for connection in self._open:
            if best is None or connection.in_flight < best.in_flight:
                best = connection
        missing = self._pool_size - len(self._open) - len(self._connecting)
        for _ in range(missing):
            self._start_connect()
        if best is not None:
            return best
        return await self._first_connected(deadline)

    def _start_connect(self) -> None:
        task = asyncio.get_running_loop().create_task(self._connect())
        self._connecting.add(task)
        task.add_done_callback(self._connect_done)

    async def _connect(self) -> KeylessConnection:
        return await KeylessConnection.open(
            self.host, self.port, self._ssl_context, self.server_hostname, self._connect_timeout, self.label
        )

    def _connect_done(self, task: asyncio.Task[KeylessConnection]) -> None:
        self._connecting.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            return  # the waiter (if any) sees it; a pool refill without a waiter just tries again later
        connection = task.result()
        if self._closed:
            connection.close()
            return
        self._open.append(connection)
        connection.on_close(self._forget)

    def _forget(self, connection: KeylessConnection) -> None:
        self._last_close_reason = connection.close_reason
        if connection in self._open:
            self._open.remove(connection)

    async def _first_connected(self, deadline: float) -> KeylessConnection:
        """Wait for the connects in progress (all of them: a cold pool comes up whole, so a burst is
        spread over every connection), then hand out the least loaded one."""
        loop = asyncio.get_running_loop()
        pending = set(self._connecting)
        error: BaseException | None = None
        if pending:
            done, pending = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    error = task.exception()
        usable = [c for c in self._open if c.is_open]
        if usable:
            return min(usable, key=lambda c: c.in_flight)
        if pending:
            raise OperationTimeout(f"no connection to key server {self.label} within the deadline")
        if isinstance(error, KeylessClientError):
            raise ConnectFailed(str(error))
        why = f" (closed right after opening: {self._last_close_reason})" if self._last_close_reason else ""
        raise ConnectFailed(f"key server {self.label}: no connection could be opened{why}")

    async def probe(self, timeout: float) -> float:
        """Ping the key server over a pooled connection; returns the round trip in seconds.
        Raises a ``KeylessClientError`` subclass when it does not answer a pong in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        connection = await self.acquire(deadline)
        start = loop.time()
        answer = await connection.submit(Request(Opcode.PING), deadline)
        if answer.opcode != Opcode.PONG:
            raise ConnectFailed(f"key server {self.label} answered a ping with error {answer.error_code}")
        return loop.time() - start

    async def close(self) -> None:
        self._closed = True
        for task in list(self._connecting):
            task.cancel()
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)
        for connection in list(self._open):
            connection.close()
        self._open.clear()


__all__ = ["EWMA_WEIGHT", "Endpoint", "EndpointStats"]
