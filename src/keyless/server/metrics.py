"""The key server's Prometheus metrics.

Two sets of names: the ones from this project's mission (``keyless_sign_requests_total``,
``keyless_sign_request_duration_seconds`` with quantiles) and the ones operators of Cloudflare's
key server already chart (``keyless_requests``, ``keyless_request_exec_duration_per_opcode``,
``keyless_request_total_duration_per_opcode``, ``keyless_key_load_duration``,
``keyless_failed_connection``, ``certificate_expiration_timestamp_seconds``). The latter are
exported under exactly those names (without prometheus-client's ``_total`` suffix), so their
counters are kept here and exported by a small collector as untyped samples.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from keyless.metrics import SlidingWindowSummary
from keyless.protocol import ErrorCode, Opcode

DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


def opcode_name(opcode: int | None) -> str:
    if opcode is None:
        return "NONE"
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"0x{opcode:02x}"


def error_name(code: int | None) -> str:
    if code is None:
        return ""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:02x}"


class _ExactCounters(Collector):
    """Counters exported under their exact names (no ``_total``), as untyped samples."""

    def __init__(self, name: str, documentation: str, label: str | None) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.values: dict[str, float] = {}
        self._lock = threading.Lock()

    def inc(self, label_value: str = "", amount: float = 1.0) -> None:
        with self._lock:
            self.values[label_value] = self.values.get(label_value, 0.0) + amount

    def get(self, label_value: str = "") -> float:
        return self.values.get(label_value, 0.0)

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self.name, self.documentation, "unknown")
        with self._lock:
            items = sorted(self.values.items())
        if self.label is None:
            metric.add_sample(self.name, {}, items[0][1] if items else 0.0)
        else:
            for value, count in items:
                metric.add_sample(self.name, {self.label: value}, count)
        yield metric


class KeyServerMetrics:
    """All metrics of one key-server process, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.sign_requests = Counter(
            "keyless_sign_requests", "Private-key operations performed (signatures and decryptions)", registry=r
        )
        self.sign_duration = SlidingWindowSummary(
            "keyless_sign_request_duration_seconds",
            "Time from reading a private-key request to having its answer (sliding window for quantiles)",
            registry=r,
        )
        self.requests = _ExactCounters("keyless_requests", "Requests received, by opcode", "opcode")
        r.register(self.requests)
        self.failed_connection = _ExactCounters(
            "keyless_failed_connection",
            "Connections that failed (TLS handshake refused, malformed frame, timeout)",
            None,
        )
        r.register(self.failed_connection)
        self.exec_duration = Histogram(
            "keyless_request_exec_duration_per_opcode",
            "Time spent executing a request (the key operation itself), by opcode and error",
            ["type", "error"], buckets=DURATION_BUCKETS, registry=r,
        )
        self.total_duration = Histogram(
            "keyless_request_total_duration_per_opcode",
            "Time from reading a request to queueing its response, by opcode and error",
            ["type", "error"], buckets=DURATION_BUCKETS, registry=r,
        )
        self.key_load_duration = Histogram(
            "keyless_key_load_duration", "Time to load all private keys (start-up and each reload)",
            buckets=(0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0), registry=r,
        )
        self.keys_loaded = Gauge("keyless_keys_loaded", "Private keys currently loaded", registry=r)
        self.certificate_expiration = Gauge(
            "certificate_expiration_timestamp_seconds",
            "notAfter of the key server's certificates, as a Unix timestamp",
            ["source", "subject"], registry=r,
        )
        self.connections = Gauge("keyless_connections", "Open edge connections", registry=r)
        self._children: dict[tuple[int | None, int | None], tuple[Histogram, Histogram]] = {}

    def observe_request(self, opcode: int | None, error: int | None, exec_seconds: float, total_seconds: float) -> None:
        """Record one answered request (called on the event loop for every request: keep it cheap)."""
        key = (opcode, error)
        children = self._children.get(key)
        if children is None:
            labels = (opcode_name(opcode), error_name(error))
            children = (self.exec_duration.labels(*labels), self.total_duration.labels(*labels))
            self._children[key] = children
        children[0].observe(exec_seconds)
        children[1].observe(total_seconds)

    def observe_key_operation(self, seconds: float) -> None:
        self.sign_requests.inc()
        self.sign_duration.observe(seconds)
