"""``keyless.runtime.loop`` (loop choice, port reservation, ready lines) and the histogram arithmetic of
``keyless.runtime.metrics`` (quantile estimates and the summary view built from a histogram)."""

from __future__ import annotations

import math
import random
import socket

import pytest

from keyless.runtime.loop import new_event_loop, parse_ready_fields, ready_line, reserve_port, worker_ready_line
from keyless.runtime.metrics import LatencyHistogram, SummaryView, exponential_buckets, histogram_quantile
from tests.conftest import require


def test_uvloop_when_installed_unless_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import uvloop
    except ImportError:
        require(False, "uvloop is not installed (the fast or dev extra)")
    monkeypatch.delenv("KEYLESS_NO_UVLOOP", raising=False)
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    monkeypatch.setenv("KEYLESS_NO_UVLOOP", "1")
    loop = new_event_loop()
    try:
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_a_reserved_port_is_joined_by_reuseport_listeners_and_refused_to_others() -> None:
    reserved = reserve_port("127.0.0.1", 0)
    port = reserved.getsockname()[1]
    try:
        worker = socket.socket()
        worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        worker.bind(("127.0.0.1", port))
        worker.listen()
        worker.close()
        with socket.socket() as intruder, pytest.raises(OSError):
            intruder.bind(("127.0.0.1", port))
    finally:
        reserved.close()


def test_ready_lines() -> None:
    line = ready_line("edge", port="1,2", metrics_port=0, workers=2)
    assert line == "keyless edge ready port=1,2 metrics_port=0 workers=2"
    fields = parse_ready_fields(worker_ready_line("keyserver", port=5, keys=3))
    assert fields["port"] == "5" and fields["keys"] == "3" and int(fields["pid"]) > 0


def test_histogram_quantile_follows_promql() -> None:
    buckets = [(1.0, 10.0), (2.0, 20.0), (4.0, 40.0), (math.inf, 40.0)]
    assert histogram_quantile(0.5, buckets) == 2.0
    assert histogram_quantile(0.75, buckets) == 3.0  # linear inside (2, 4]
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.4)
    assert histogram_quantile(0.99, [(1.0, 1.0), (math.inf, 100.0)]) == 1.0  # above the last bound: that bound
    assert math.isnan(histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]))


def test_summary_view_quantiles_are_within_one_bucket_of_the_truth() -> None:
    bounds = exponential_buckets(0.00001, 1.25, 64)
    histogram = LatencyHistogram("demo_seconds", "demo", bounds)
    rng = random.Random(7)
    values = sorted(rng.lognormvariate(0, 1) * 0.002 for _ in range(5000))
    for value in values:
        histogram.observe(value)
    summary = next(f for f in SummaryView(histogram, "demo_seconds", "demo_summary", "d").collect()
                   if f.name == "demo_summary")
    estimates = {s.labels["quantile"]: s.value for s in summary.samples if "quantile" in s.labels}
    for q in (0.5, 0.9, 0.99):
        truth = values[math.ceil(q * len(values)) - 1]
        estimate = estimates[repr(q)]
        assert truth / 1.25 <= estimate <= truth * 1.25, (q, truth, estimate)
    counts = {s.name: s.value for s in summary.samples if not s.labels}
    assert counts["demo_summary_count"] == 5000 and counts["demo_summary_sum"] == pytest.approx(sum(values))
