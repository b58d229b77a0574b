"""Metrics for both daemons: one aggregation over worker processes, one HTTP endpoint.

**Aggregation.** A daemon with ``--workers N`` runs every worker with ``PROMETHEUS_MULTIPROC_DIR`` set
(prometheus-client's multiprocess mode): metrics made with prometheus-client's classes write their
values into per-process files there, and the supervisor serves the merge (``multiprocess_registry``):
counters and histogram buckets are summed over workers, gauges merged as each declares
(``multiprocess_mode``). Collectors that keep their values in plain Python on a hot path (the key
server's per-request histograms) are copied into the same files about once a second by a
``MultiprocessPublisher``, so they merge the same way. Because histograms merge bucket by bucket, a
quantile computed from the merged histogram is a quantile over every request of every worker (to
within one bucket) — never a maximum or an average of per-worker quantiles.

**Summary views.** ``SummaryView`` adds, next to a histogram, a summary-style family with
``quantile`` samples estimated from it (as PromQL's ``histogram_quantile`` does: linear within the
bucket), so ``curl .../metrics | grep quantile`` keeps working.

**Conventions.** ``_created`` series are switched off (they were noise, and summed across workers
they meant nothing); every daemon exports ``keyless_build_info`` and process metrics.

**Endpoint.** ``MetricsEndpoint`` serves ``/metrics``, ``/healthz`` and ``/readyz`` from one asyncio
event loop in one thread of its own (a busy daemon loop cannot stall a scrape, and a thousand idle
connections cost no thread each): each connection is closed after ``idle_timeout`` seconds without a
complete request, and when ``max_connections`` wait for one, the oldest is dropped for the newcomer
(idle sockets held open on purpose cannot lock a scraper out); one request per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import platform
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, ProcessCollector, values
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from keyless import __version__

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# A check answers True (ready), False (not ready), or the names of what fails (empty: ready).
ReadinessCheck = Callable[[], "bool | Sequence[str]"]
ReadinessChecks = Mapping[str, ReadinessCheck]

MAX_REQUEST_HEAD = 8192


# --- histograms and quantiles ------------------------------------------------------------------------


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    return tuple(start * factor**i for i in range(count))


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """The ``q`` quantile of a histogram given as ``(upper bound, cumulative count)`` pairs in order,
    the last bound +Inf; linear interpolation inside the bucket holding the rank (PromQL's rule)."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank and cumulative > below:
            if math.isinf(bound):
                return lower  # above the largest finite bound: the best we know is that bound
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return lower


class LatencyHistogram(Collector):
    """A label-less histogram whose ``observe`` is one bisect and one list increment (for hot paths that
    cannot afford prometheus-client's lock per observation); exported as a normal histogram."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[float, float]]:
        result, running = [], 0.0
        for bound, count in zip((*self.bounds, math.inf), list(self.counts), strict=True):
            running += count
            result.append((bound, running))
        return result

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], [(_le(bound), count) for bound, count in self.cumulative()], self.sum)
        yield family


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


class SummaryView(Collector):
    """Everything ``source`` collects, plus a summary family ``summary`` whose quantiles, count and sum
    are computed from the label-less histogram ``histogram`` found among them."""

    def __init__(self, source: Collector, histogram: str, summary: str, documentation: str,
                 quantiles: Sequence[float] = (0.5, 0.9, 0.99)) -> None:
        self.source = source
        self.histogram = histogram
        self.summary = summary
        self.documentation = documentation
        self.quantiles = tuple(quantiles)

    def collect(self) -> Iterable[Metric]:
        found = False
        for family in self.source.collect():
            yield family
            if family.name == self.histogram and family.type == "histogram":
                found = True
                yield self._summary(family)
        if not found:
            yield self._summary(None)

    def _summary(self, family: Metric | None) -> Metric:
        buckets: list[tuple[float, float]] = []
        total = 0.0
        for sample in family.samples if family is not None else ():
            if sample.name.endswith("_bucket") and set(sample.labels) == {"le"}:
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_sum") and not sample.labels:
                total = sample.value
        buckets.sort()
        count = buckets[-1][1] if buckets else 0.0
        summary = SummaryMetricFamily(self.summary, self.documentation, count_value=int(count), sum_value=total)
        for q in self.quantiles:
            summary.add_sample(self.summary, {"quantile": repr(q)}, histogram_quantile(q, buckets))
        return summary


class Retyped(Collector):
    """Everything ``source`` collects, with the families named in ``types`` given that type. The merge
    of worker files knows only counters, gauges, histograms and summaries: a family exported untyped
    under an exact name (``keyless_requests``) is stored as a counter and comes back typed here."""

    def __init__(self, source: Collector, types: Mapping[str, str]) -> None:
        self.source = source
        self.types = dict(types)

    def collect(self) -> Iterable[Metric]:
        for family in self.source.collect():
            wanted = self.types.get(family.name)
            if wanted is None or wanted == family.type:
                yield family
                continue
            retyped = Metric(family.name, family.documentation, wanted)
            retyped.samples = list(family.samples)
            yield retyped


# --- what every daemon exports ------------------------------------------------------------------------


class BuildInfo(Collector):
    def __init__(self, daemon: str) -> None:
        self.daemon = daemon

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("keyless_build_info", "Version of the running keyless (always 1)",
                                   labels=["version", "python", "daemon"])
        family.add_metric([__version__, platform.python_version(), self.daemon], 1.0)
        yield family


class Merged(Collector):
    """Several collectors as one (for wrapping a whole registry in a view)."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class WorkerProcesses(Collector):
    """The process metrics of every worker (CPU, memory, files), as ``keyless_worker_process_*{worker}``:
    with ``--workers`` the supervisor's own ``process_*`` show almost nothing of the daemon's cost."""

    def __init__(self, workers: Callable[[], Mapping[int, int]]) -> None:
        self.workers = workers  # () -> {worker index: pid}

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for index, pid in sorted(self.workers().items()):
            reader = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc, no-untyped-call]
            for family in reader.collect():
                out = merged.get(family.name)
                if out is None:
                    out = merged[family.name] = Metric(f"keyless_worker_{family.name}",
                                                       f"{family.documentation}, per worker", family.type)
                for sample in family.samples:
                    out.add_sample(f"keyless_worker_{sample.name}", {**sample.labels, "worker": str(index)},
                                   sample.value)
        yield from merged.values()


def daemon_registry(daemon: str, *collectors: Collector,
                    workers: Callable[[], Mapping[int, int]] | None = None) -> CollectorRegistry:
    """The registry a daemon's endpoint serves: its collectors, build info, this process's metrics and,
    for a supervisor, each worker's (``workers``: index -> pid of the live workers)."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    registry.register(BuildInfo(daemon))
    registry.register(ProcessCollector(registry=None))  # type: ignore[no-untyped-call]
    if workers is not None:
        registry.register(WorkerProcesses(workers))
    return registry


# --- multiprocess mode ---------------------------------------------------------------------------------


def multiprocess_collector(directory: str) -> Collector:
    """The merge of every worker's values in ``directory`` (prometheus-client's MultiProcessCollector)."""
    from prometheus_client import multiprocess

    return multiprocess.MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call, no-any-return]


def forget_process(directory: str, pid: int) -> None:
    """A dead worker's live gauges (open connections) stop counting; its counters and histograms stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def in_multiprocess_mode() -> bool:
    return getattr(values.ValueClass, "_multiprocess", False) is True


class MultiprocessPublisher:
    """Copies the current values of plain-Python collectors into this process's multiprocess files.

    The files hold absolute values per process, so publishing is a ``set`` of each sample (histogram
    buckets de-accumulated, as prometheus-client stores them); a worker calls ``publish`` on a timer
    and once more when it drains. Summary quantiles are not published: they cannot be merged.
    """

    _TYPES = {"counter": "counter", "unknown": "counter", "histogram": "histogram", "gauge": "gauge",
              "summary": "summary"}

    def __init__(self, collectors: Sequence[Collector], gauge_modes: Mapping[str, str] | None = None) -> None:
        self.collectors = tuple(collectors)
        self.gauge_modes = dict(gauge_modes or {})
        self._values: dict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = {}

    def publish(self) -> None:
        if not in_multiprocess_mode():
            return
        for collector in self.collectors:
            for family in collector.collect():
                typ = self._TYPES.get(family.type)
                if typ is None:
                    continue
                for name, labels, value in self._samples(family, typ):
                    self._value(typ, family, name, labels).set(value)

    @staticmethod
    def _samples(family: Metric, typ: str) -> Iterable[tuple[str, dict[str, str], float]]:
        if typ == "histogram":
            previous: dict[tuple[tuple[str, str], ...], float] = {}
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    rest = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
                    yield sample.name, dict(sample.labels), sample.value - previous.get(rest, 0.0)
                    previous[rest] = sample.value
                elif sample.name.endswith("_sum"):
                    yield sample.name, dict(sample.labels), sample.value
            return
        for sample in family.samples:
            if typ == "summary" and "quantile" in sample.labels:
                continue
            if sample.name.endswith(("_created", "_gsum", "_gcount")):
                continue
            yield sample.name, dict(sample.labels), sample.value

    def _value(self, typ: str, family: Metric, name: str, labels: dict[str, str]) -> Any:
        key = (family.name, name, tuple(sorted(labels.items())))
        value = self._values.get(key)
        if value is None:
            names = tuple(labels)
            value = self._values[key] = values.ValueClass(  # type: ignore[no-untyped-call]
                typ, family.name, name, names, tuple(labels[n] for n in names), family.documentation,
                multiprocess_mode=self.gauge_modes.get(family.name, "livesum"),
            )
        return value


# --- the HTTP endpoint ---------------------------------------------------------------------------------


def readiness_failures(checks: ReadinessChecks) -> list[str]:
    """``name`` or ``name (what, fails)`` for every failing check; a check that raises fails."""
    failing = []
    for name, check in checks.items():
        try:
            result = check()
        except Exception:
            failing.append(name)
            continue
        if result is True:
            continue
        if result is False or not isinstance(result, Sequence):
            failing.append(name)
        elif result:
            failing.append(f"{name} ({', '.join(str(item) for item in result)})")
    return failing


class MetricsEndpoint:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one asyncio loop in one thread."""

    def __init__(self, registry: CollectorRegistry, checks: ReadinessChecks | None = None, *,
                 idle_timeout: float = 10.0, max_connections: int = 256) -> None:
        self.registry = registry
        self.checks = dict(checks or {})
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.port = 0
        self.connections = 0
        self._waiting: dict[asyncio.StreamWriter, None] = {}  # no complete request yet, oldest first
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    def start(self, host: str, port: int) -> int:
        """Bind ``host:port`` (0: ephemeral) and serve from a new thread; returns the bound port.
        Raises ``OSError`` here, in the caller's thread, when the address cannot be bound."""
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, host, port, limit=MAX_REQUEST_HEAD, reuse_address=True))
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            self.port = self._server.sockets[0].getsockname()[1]
            started.set()
            try:
                loop.run_forever()
            finally:
                self._server.close()
                loop.run_until_complete(self._server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=serve, name="metrics-http", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self.port

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._waiting) >= self.max_connections:
            # Full of connections that sent no complete request: drop the oldest, so idle sockets held
            # open on purpose can delay a scrape by one round trip at most, never lock it out.
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            oldest.transport.abort()
        self.connections += 1
        self._waiting[writer] = None
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            async with asyncio.timeout(self.idle_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
                self._waiting.pop(writer, None)
                try:
                    status, body, content_type = self._answer(head)
                except Exception:  # a collector failed (e.g. the daemon is stopping): say so, keep serving
                    status, body, content_type = 500, b"internal error\n", "text/plain; charset=utf-8"
                writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                             % (status, _REASONS[status], content_type.encode(), len(body)))
                if not head.startswith(b"HEAD "):
                    writer.write(body)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._waiting.pop(writer, None)
            self._tasks.discard(task)  # type: ignore[arg-type]
            self.connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[int, bytes, str]:
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, b"bad request\n", "text/plain; charset=utf-8"
        if parts[0] not in (b"GET", b"HEAD"):
            return 405, b"method not allowed\n", "text/plain; charset=utf-8"
        path = parts[1].split(b"?", 1)[0]
        if path == b"/metrics":
            return 200, generate_latest(self.registry), CONTENT_TYPE_LATEST
        if path == b"/healthz":
            return 200, b"ok\n", "text/plain; charset=utf-8"
        if path == b"/readyz":
            failing = readiness_failures(self.checks)
            if failing:
                return 503, ("not ready: " + "; ".join(failing) + "\n").encode(), "text/plain; charset=utf-8"
            return 200, b"ready\n", "text/plain; charset=utf-8"
        return 404, b"not found\n", "text/plain; charset=utf-8"


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            500: b"Internal Server Error", 503: b"Service Unavailable"}


def start_metrics_endpoint(host: str, port: int, registry: CollectorRegistry,
                           checks: ReadinessChecks | None = None) -> MetricsEndpoint:
    endpoint = MetricsEndpoint(registry, checks)
    endpoint.start(host, port)
    return endpoint


__all__ = [
    "BuildInfo",
    "LatencyHistogram",
    "Merged",
    "MetricsEndpoint",
    "MultiprocessPublisher",
    "ReadinessCheck",
    "Retyped",
    "SummaryView",
    "WorkerProcesses",
    "daemon_registry",
    "exponential_buckets",
    "forget_process",
    "histogram_quantile",
    "in_multiprocess_mode",
    "multiprocess_collector",
    "readiness_failures",
    "start_metrics_endpoint",
]
