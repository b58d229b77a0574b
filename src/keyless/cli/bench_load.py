"""The load generator behind ``keyless bench``: closed- and open-loop load over a ``KeylessClient``, with
latencies kept for percentiles and a histogram."""

from __future__ import annotations

import asyncio
import math
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyless.cli.options import load_public_key, scheme_for
from keyless.client import KeylessClient, KeylessClientError, Request
from keyless.keys.base import KeyOperationError
from keyless.keys.operations import opcode_for
from keyless.protocol import Opcode

# A call factory: given the client, returns a coroutine doing one operation.
CallFactory = Callable[[KeylessClient], Callable[[], Awaitable[object]]]
Progress = Callable[[float, "LoadResult"], None]


@dataclass(frozen=True)
class LoadSpec:
    servers: list[str]
    ssl_context: ssl.SSLContext
    server_name: str | None = None
    timeout: float = 10.0
    connections: int = 2
    mode: str = "latency"  # or "throughput"
    workers: int = 32
    rate: float = 5000.0
    max_in_flight: int = 4096
    duration: float = 10.0


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: int = 0
    in_flight: int = 0
    elapsed: float = 0.0
    servers: list[dict[str, Any]] = field(default_factory=list)
    _sorted: list[float] | None = None

    @property
    def completed(self) -> int:
        return len(self.latencies)

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile in seconds (sorts lazily; cheap enough once per second)."""
        if not self.latencies:
            return None
        if self._sorted is None or len(self._sorted) != len(self.latencies):
            self._sorted = sorted(self.latencies)
        data = self._sorted
        rank = max(1, math.ceil(p / 100 * len(data)))
        return data[rank - 1]

    def histogram(self) -> list[tuple[float, int]]:
        """(upper bound in ms, count) over log-spaced buckets (x2 per bucket) covering the data."""
        if not self.latencies:
            return []
        bounds = [0.05 * 2**i for i in range(24)]  # 0.05 ms .. ~7 minutes
        counts = [0] * len(bounds)
        for seconds in self.latencies:
            ms = seconds * 1000
            index = 0 if ms <= bounds[0] else min(len(bounds) - 1, math.ceil(math.log2(ms / bounds[0])))
            counts[index] += 1
        first = next(i for i, c in enumerate(counts) if c)
        last = max(i for i, c in enumerate(counts) if c)
        return [(round(bounds[i], 3), counts[i]) for i in range(first, last + 1)]

    def report(self, operation: str, mode: str) -> dict[str, Any]:
        latency = {}
        if self.latencies:
            latency = {f"p{p}": (self.percentile(p) or 0.0) * 1000 for p in (50, 90, 99)}
            latency["max"] = max(self.latencies) * 1000
            latency["mean"] = sum(self.latencies) / len(self.latencies) * 1000
        return {
            "operation": operation,
            "mode": mode,
            "duration_s": self.elapsed,
            "completed": self.completed,
            "errors": len(self.errors),
            "first_error": self.errors[0] if self.errors else "",
            "skipped": self.skipped,
            "throughput_per_s": self.completed / self.elapsed if self.elapsed else 0.0,
            "latency_ms": latency,
            "histogram": [{"le_ms": bound, "count": count} for bound, count in self.histogram()],
            "servers": self.servers,
        }


def build_operation(op: str, key_file: Path | None, scheme_name: str | None) -> tuple[str, CallFactory]:
    """A label and a call factory for ``op`` ("sign", "decrypt" or "ping") with the key in ``key_file``."""
    if op == "ping":
        def ping_factory(client: KeylessClient) -> Callable[[], Awaitable[object]]:
            request = Request(Opcode.PING)
            return lambda: client.call_answer(request)

        return "ping", ping_factory

    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from keyless.keys.schemes import SignatureScheme

    if key_file is None:
        raise ValueError("a key is needed")
    public = load_public_key(key_file.read_bytes())

    if op == "decrypt":
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError("--op decrypt needs an RSA key")
        ciphertext = public.encrypt(b"\x03\x03" + os.urandom(46), padding.PKCS1v15())

        def decrypt_factory(client: KeylessClient) -> Callable[[], Awaitable[object]]:
            key = client.remote_key(public)
            return lambda: key.decrypt(ciphertext)

        return f"rsa_decrypt ({key_file.name})", decrypt_factory

    if scheme_name:
        try:
            scheme = SignatureScheme[scheme_name.upper()]
        except KeyError:
            raise ValueError(f"unknown signature scheme {scheme_name!r}") from None
    else:
        scheme = scheme_for(public)
    try:
        opcode_for(scheme, public)
    except KeyOperationError as exc:
        raise ValueError(str(exc)) from None  # e.g. an RSA scheme for an ECDSA key: say so before any load
    message = b"keyless bench " + os.urandom(32)

    def sign_factory(client: KeylessClient) -> Callable[[], Awaitable[object]]:
        key = client.remote_key(public)
        return lambda: key.sign(scheme, message)

    return f"{scheme.name.lower()} ({key_file.name})", sign_factory


async def run_load(spec: LoadSpec, factory: CallFactory, progress: Progress | None = None) -> LoadResult:
    client = KeylessClient(
        spec.servers, spec.ssl_context, server_name=spec.server_name, timeout=spec.timeout,
        connections_per_server=spec.connections, health_interval=5.0,
    )
    result = LoadResult()
    try:
        await client.start()
        call = factory(client)
        await _warm_up(client, call, spec.connections)
        if spec.mode == "latency":
            await _closed_loop(spec, call, result, progress)
        else:
            await _open_loop(spec, call, result, progress)
    finally:
        result.servers = [
            {"label": s.label, "completed": s.completed, "healthy": s.healthy,
             "latency_ewma_ms": s.latency_ewma * 1000 if s.latency_ewma is not None else None}
            for s in client.stats()
        ]
        await client.close()
    return result


async def _warm_up(client: KeylessClient, call: Callable[[], Awaitable[object]], connections: int) -> None:
    """Open the pools (TLS handshakes) and load the key on the server before timing anything."""
    await asyncio.gather(*(call() for _ in range(max(4, 2 * connections * len(client.endpoints)))),
                         return_exceptions=True)


async def _one(call: Callable[[], Awaitable[object]], due: float, result: LoadResult) -> None:
    result.in_flight += 1
    try:
        await call()
    except (KeylessClientError, KeyOperationError) as exc:
        result.errors.append(str(exc))
    else:
        result.latencies.append(time.perf_counter() - due)
    finally:
        result.in_flight -= 1


async def _ticker(start: float, spec: LoadSpec, result: LoadResult, progress: Progress | None) -> None:
    if progress is None:
        return
    while True:
        await asyncio.sleep(1.0)
        progress(time.perf_counter() - start, result)


async def _closed_loop(spec: LoadSpec, call: Callable[[], Awaitable[object]], result: LoadResult,
                       progress: Progress | None) -> None:
    start = time.perf_counter()
    end = start + spec.duration

    async def worker() -> None:
        now = time.perf_counter()
        while now < end:
            await _one(call, now, result)
            now = time.perf_counter()

    ticker = asyncio.create_task(_ticker(start, spec, result, progress))
    await asyncio.gather(*(worker() for _ in range(spec.workers)))
    result.elapsed = time.perf_counter() - start
    ticker.cancel()
    if progress is not None:
        progress(result.elapsed, result)


async def _open_loop(spec: LoadSpec, call: Callable[[], Awaitable[object]], result: LoadResult,
                     progress: Progress | None) -> None:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    interval = 1.0 / spec.rate
    started = 0
    tasks: set[asyncio.Task[None]] = set()
    ticker = asyncio.create_task(_ticker(start, spec, result, progress))
    while True:
        now = time.perf_counter()
        if now - start >= spec.duration:
            break
        due_count = int((now - start) * spec.rate) + 1
        while started < due_count:
            due = start + started * interval
            started += 1
            if result.in_flight >= spec.max_in_flight:
                result.skipped += 1
                continue
            task = loop.create_task(_one(call, due, result))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(min(interval, 0.001))
    if tasks:
        await asyncio.gather(*tasks)
    result.elapsed = time.perf_counter() - start
    ticker.cancel()
    if progress is not None:
        progress(result.elapsed, result)


__all__ = ["CallFactory", "LoadResult", "LoadSpec", "build_operation", "run_load"]
