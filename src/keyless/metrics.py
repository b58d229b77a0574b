"""A tiny HTTP endpoint for Prometheus metrics and health checks, shared by the key server and the edge.

``/metrics`` serves the registry in the Prometheus text format, ``/healthz`` answers 200 while the
process runs, ``/readyz`` answers 200 only when every readiness check returns True (503 and the
names of the failing checks otherwise). It runs in a daemon thread so a busy event loop cannot
stall a scrape.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric, SummaryMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

ReadinessChecks = Mapping[str, Callable[[], bool]]


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, checks: ReadinessChecks) -> None:
        super().__init__(address, _Handler)
        self.registry = registry
        self.checks = checks


class _Handler(BaseHTTPRequestHandler):
    server: _MetricsServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._reply(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._reply(200, b"ok\n")
        elif path == "/readyz":
            failing = [name for name, check in self.server.checks.items() if not _safe(check)]
            if failing:
                self._reply(503, ("not ready: " + ", ".join(failing) + "\n").encode())
            else:
                self._reply(200, b"ready\n")
        else:
            self._reply(404, b"not found\n")

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # scrapes are not worth a log line
        return


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:
        return False


def start_metrics_server(
    host: str, port: int, registry: CollectorRegistry, readiness: ReadinessChecks | None = None
) -> tuple[ThreadingHTTPServer, int]:
    """Serve /metrics, /healthz, /readyz on ``host:port`` (0 = ephemeral) in a daemon thread.

    Returns the server (call ``shutdown()`` to stop it) and the port it bound.
    """
    server = _MetricsServer((host, port), registry, dict(readiness or {}))
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server, server.server_address[1]


class SlidingWindowSummary(Collector):
    """A Prometheus summary with 0.5/0.9/0.99 quantiles over a bounded sliding window.

    prometheus-client's ``Summary`` exports only count and sum. This keeps the last ``window``
    observations no older than ``max_age`` seconds (a ring buffer: ``observe`` is an append) and
    sorts them only when scraped. Count and sum cover the whole process lifetime, as usual.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        quantiles: Iterable[float] = (0.5, 0.9, 0.99),
        window: int = 10_000,
        max_age: float = 60.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.quantiles = tuple(quantiles)
        self.max_age = max_age
        self._values: deque[tuple[float, float]] = deque(maxlen=window)
        self._count = 0
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, value: float, now: float | None = None) -> None:
        stamp = time.monotonic() if now is None else now
        with self._lock:
            self._values.append((stamp, value))
            self._count += 1
            self._sum += value

    def quantile_values(self, now: float | None = None) -> dict[float, float]:
        cutoff = (time.monotonic() if now is None else now) - self.max_age
        with self._lock:
            recent = sorted(v for stamp, v in self._values if stamp >= cutoff)
        if not recent:
            return {q: float("nan") for q in self.quantiles}
        last = len(recent) - 1
        return {q: recent[min(last, int(q * len(recent)))] for q in self.quantiles}

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            count, total = self._count, self._sum
        family = SummaryMetricFamily(self.name, self.documentation, count_value=count, sum_value=total)
        for q, value in self.quantile_values().items():
            family.add_sample(self.name, {"quantile": repr(q)}, value)
        yield family

    def describe(self) -> Iterable[Metric]:
        yield SummaryMetricFamily(self.name, self.documentation, count_value=0, sum_value=0.0)
