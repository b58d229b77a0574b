"""The key server's Prometheus metrics.

Two sets of names: the ones from this project's mission (``keyless_sign_requests_total``,
``keyless_sign_request_duration_seconds`` with quantiles, a summary view computed from the histogram
``keyless_sign_duration_seconds`` — see ``serving_registry``) and the ones operators of Cloudflare's
key server already chart (``keyless_requests``, ``keyless_request_exec_duration_per_opcode``,
``keyless_request_total_duration_per_opcode``, ``keyless_key_load_duration``,
``keyless_failed_connection``, ``certificate_expiration_timestamp_seconds``). The latter are
exported under exactly those names (without prometheus-client's ``_total`` suffix), so their
counters are kept here and exported by a small collector as untyped samples.

With ``--workers N`` each worker publishes the plain-Python collectors (``PUBLISHED``) into the
multiprocess directory about once a second, and prometheus-client's own gauges and histograms write
there directly; the supervisor serves the merge (``keyless.runtime.metrics``).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from keyless.protocol import ErrorCode, Opcode
from keyless.runtime.metrics import (
    LatencyHistogram,
    MultiprocessPublisher,
    Retyped,
    SummaryView,
    exponential_buckets,
)

DURATION_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


# 10 µs to ~16 s in steps of 25%: a quantile read from the merged histogram is within 25% of the truth.
SIGN_LATENCY_BUCKETS = exponential_buckets(0.00001, 1.25, 64)
SIGN_HISTOGRAM = "keyless_sign_duration_seconds"
SIGN_SUMMARY = "keyless_sign_request_duration_seconds"


_OPCODE_NAMES: dict[int | None, str] = {int(op): op.name for op in Opcode}
_OPCODE_NAMES[None] = "NONE"


def opcode_name(opcode: int | None) -> str:
    name = _OPCODE_NAMES.get(opcode)
    return name if name is not None else f"0x{opcode:02x}"


def error_name(code: int | None) -> str:
    if code is None:
        return ""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:02x}"


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


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


class _RequestStats(Collector):
    """The per-request metrics, kept in plain counters on the hot path (the event loop thread is the
    only writer) and turned into Prometheus families when scraped:

    ``keyless_requests{opcode}``, ``keyless_sign_requests_total``, and the histograms
    ``keyless_request_exec_duration_per_opcode`` / ``keyless_request_total_duration_per_opcode``
    with labels ``type`` (opcode name) and ``error`` (error name, empty on success). Recording one
    request costs a dict look-up and two ``bisect`` calls instead of prometheus-client's locks.
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = buckets
        self.requests: dict[int | None, int] = {}
        self.sign_requests = 0
        # (opcode, error) -> [exec bucket counts..., total bucket counts..., exec sum, total sum, count]
        self.observations: dict[tuple[int | None, int | None], list[float]] = {}

    def observe(self, opcode: int | None, error: int | None, exec_seconds: float, total_seconds: float) -> None:
        key = (opcode, error)
        row = self.observations.get(key)
        if row is None:
            row = self.observations[key] = [0.0] * (2 * (len(self.bounds) + 1) + 3)
        width = len(self.bounds) + 1
        row[bisect_left(self.bounds, exec_seconds)] += 1
        row[width + bisect_left(self.bounds, total_seconds)] += 1
        row[-3] += exec_seconds
        row[-2] += total_seconds
        row[-1] += 1

    def collect(self) -> Iterable[Metric]:
        requests = Metric("keyless_requests", "Requests received, by opcode", "unknown")
        for opcode, count in sorted(dict(self.requests).items(), key=lambda item: opcode_name(item[0])):
            requests.add_sample("keyless_requests", {"opcode": opcode_name(opcode)}, float(count))
        yield requests
        yield CounterMetricFamily("keyless_sign_requests",
                                  "Private-key operations performed (signatures and decryptions)",
                                  value=self.sign_requests)
        width = len(self.bounds) + 1
        rows = {key: list(row) for key, row in list(self.observations.items())}
        for name, documentation, offset, sum_index in (
            ("keyless_request_exec_duration_per_opcode",
             "Time spent executing a request (the key operation itself), by opcode and error", 0, -3),
            ("keyless_request_total_duration_per_opcode",
             "Time from reading a request to queueing its response, by opcode and error", width, -2),
        ):
            family = HistogramMetricFamily(name, documentation, labels=["type", "error"])
            for (opcode, error), row in sorted(rows.items(), key=lambda item: (opcode_name(item[0][0]),
                                                                                error_name(item[0][1]))):
                cumulative = 0.0
                buckets = []
                for i, bound in enumerate((*self.bounds, float("inf"))):
                    cumulative += row[offset + i]
                    buckets.append((_le(bound), cumulative))
                family.add_metric([opcode_name(opcode), error_name(error)], buckets, row[sum_index])
            yield family


class KeyServerMetrics:
    """All metrics of one key-server process, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.stats = _RequestStats(DURATION_BUCKETS)
        r.register(self.stats)
        self.sign_duration = LatencyHistogram(
            SIGN_HISTOGRAM, "Time from reading a private-key request to having its answer", SIGN_LATENCY_BUCKETS,
        )
        r.register(self.sign_duration)
        self.failed_connection = _ExactCounters(
            "keyless_failed_connection",
            "Connections that failed (TLS handshake refused, malformed frame, timeout)",
            None,
        )
        r.register(self.failed_connection)
        self.key_load_duration = Histogram(
            "keyless_key_load_duration", "Time to load all private keys (start-up and each reload)",
            buckets=(0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0), registry=r,
        )
        # Every worker loads every key: the merge is the smallest count, never a sum over workers.
        self.keys_loaded = Gauge("keyless_keys_loaded", "Private keys currently loaded", registry=r,
                                 multiprocess_mode="livemin")
        self.certificate_expiration = Gauge(
            "certificate_expiration_timestamp_seconds",
            "notAfter of the key server's certificates, as a Unix timestamp",
            ["source", "subject"], registry=r, multiprocess_mode="livemax",
        )
        self.connections = Gauge("keyless_connections", "Open edge connections", registry=r,
                                 multiprocess_mode="livesum")
        self.publisher = MultiprocessPublisher([self.stats, self.failed_connection, self.sign_duration])

    def count_request(self, opcode: int | None) -> None:
        requests = self.stats.requests
        requests[opcode] = requests.get(opcode, 0) + 1

    def observe_request(self, opcode: int | None, error: int | None, exec_seconds: float, total_seconds: float) -> None:
        """Record one answered request (called on the event loop for every request: keep it cheap)."""
        self.stats.observe(opcode, error, exec_seconds, total_seconds)

    def observe_key_operation(self, seconds: float) -> None:
        self.stats.sign_requests += 1
        self.sign_duration.observe(seconds)


def serving_registry(source: Collector) -> Collector:
    """What a key server's endpoint serves from ``source`` (one process's registry, or the merge of all
    workers): everything, plus the seed's summary ``keyless_sign_request_duration_seconds`` whose
    quantiles are computed from the histogram ``keyless_sign_duration_seconds`` over all requests."""
    exact_names = {"keyless_requests": "unknown", "keyless_failed_connection": "unknown"}
    return SummaryView(Retyped(source, exact_names), SIGN_HISTOGRAM, SIGN_SUMMARY,
                       "Time from reading a private-key request to having its answer (quantiles over all "
                       "requests since start, estimated from keyless_sign_duration_seconds)",
                       quantiles=(0.5, 0.9, 0.99))
