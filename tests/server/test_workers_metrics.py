"""``keyless keyserver --workers 2``: one merged view of all workers' metrics.

- latency quantiles are quantiles over every request of every worker (to within one histogram bucket),
  with a known, different latency distribution in each worker (a test-only hook, tests/server/latency_hook);
- ``keyless_keys_loaded`` is the number of keys, not that number times the workers;
- no ``_created`` series; ``keyless_build_info`` and process metrics are there;
- a worker killed with SIGKILL is restarted and the merged counters keep what it counted.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import subprocess
import threading
import time
from bisect import bisect_left
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from keyless.keys.ski import ski_of
from keyless.pki import DemoPKI
from keyless.protocol import Message, Opcode
from keyless.server.metrics import SIGN_LATENCY_BUCKETS
from tests.support.keyserver import KeyServerProcess, start_keyserver
from tests.support.wire import Peer, connect

HOOK = Path(__file__).with_name("latency_hook")
DIGEST = hashlib.sha256(b"workers-metrics").digest()
CONNECTIONS = 16
REQUESTS_PER_CONNECTION = 60
DEADLINE = 30.0


def _eventually(check, what: str, ks: KeyServerProcess) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; log:\n{ks.log()[-3000:]}"
        time.sleep(0.05)


def _sign_load(pki: DemoPKI, port: int) -> int:
    """CONNECTIONS connections at once (SO_REUSEPORT spreads them over the workers), each pipelining requests."""
    key = load_pem_private_key(pki.site_key("ecdsa-p256").read_bytes(), None)
    ski = ski_of(key.public_key())  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def one_connection() -> None:
        try:
            peer = Peer(connect(pki, port))
            try:
                for batch in range(0, REQUESTS_PER_CONNECTION, 10):
                    peer.send(*(Message(batch + i, Opcode.ECDSA_SIGN_SHA256, DIGEST, ski=ski) for i in range(10)))
                    replies = peer.receive(10, timeout=30)
                    assert all(reply.opcode == Opcode.RESPONSE for reply in replies)
            finally:
                peer.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one_connection) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return CONNECTIONS * REQUESTS_PER_CONNECTION


def _samples(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            sample, _, value = line.rpartition(" ")
            values[sample] = float(value)
    return values


def _bucket(value: float) -> int:
    return bisect_left(SIGN_LATENCY_BUCKETS, value)


def test_p50_and_p99_are_over_all_requests_of_all_workers(server_pki: DemoPKI, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    latencies = tmp_path / "latencies"
    latencies.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HOOK), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TEST_SIGN_LATENCY_DIR", str(latencies))
    with start_keyserver(server_pki, tmp_path, workers=2) as ks:
        total = _sign_load(server_pki, ks.port)
        _eventually(lambda: _samples(ks.metrics()).get("keyless_sign_duration_seconds_count") == total,
                    "both workers' histograms in the merge", ks)
        reported = _samples(ks.metrics())
    per_worker = {path.name: [float(v) for v in path.read_text().split()] for path in latencies.iterdir()}
    assert len(per_worker) == 2 and all(per_worker.values()), {k: len(v) for k, v in per_worker.items()}
    everything = sorted(v for values in per_worker.values() for v in values)
    assert len(everything) == total
    assert reported["keyless_sign_request_duration_seconds_count"] == total
    assert math.isclose(reported["keyless_sign_request_duration_seconds_sum"], sum(everything), rel_tol=1e-6)
    for q in (0.5, 0.99):
        truth = everything[math.ceil(q * total) - 1]
        estimate = reported[f'keyless_sign_request_duration_seconds{{quantile="{q}"}}']
        assert abs(_bucket(estimate) - _bucket(truth)) <= 1, (q, estimate, truth)


def test_keys_loaded_build_info_and_no_created_series_with_workers(server_pki: DemoPKI, tmp_path: Path) -> None:
    key_files = len(list(server_pki.keys_dir.glob("*.key")))
    with start_keyserver(server_pki, tmp_path, workers=2) as ks:
        assert ks.keys == key_files
        text = ks.metrics()
        values = _samples(text)
        assert values["keyless_keys_loaded"] == key_files  # not 2 x the keys
        assert not [line for line in text.splitlines() if "_created" in line]
        assert any(name.startswith("keyless_build_info{") and 'daemon="keyserver"' in name for name in values)
        assert "process_cpu_seconds_total" in values  # the supervisor's, and each worker's:
        for worker in ("0", "1"):
            assert values[f'keyless_worker_process_cpu_seconds_total{{worker="{worker}"}}'] > 0
            assert values[f'keyless_worker_process_resident_memory_bytes{{worker="{worker}"}}'] > 0
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{ks.metrics_port}/readyz", timeout=10) as response:
            assert response.status == 200
        # the workers name the metrics port operators configured, not an internal one
        assert ks.log().count(f"(metrics on 127.0.0.1:{ks.metrics_port})") == 2


def test_a_killed_worker_is_restarted_and_its_counts_stay(server_pki: DemoPKI, tmp_path: Path) -> None:
    with start_keyserver(server_pki, tmp_path, workers=2) as ks:
        first = _sign_load(server_pki, ks.port)
        _eventually(lambda: ks.sign_count() == first, "the first load in the merge", ks)
        workers = {int(p) for p in subprocess.run(["pgrep", "-P", str(ks.proc.pid)], capture_output=True,
                                                  text=True).stdout.split()}
        assert len(workers) == 2
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        _eventually(lambda: f"(pid {victim}) exited with code -9; restarting it" in ks.log(), "the restart", ks)
        _eventually(lambda: ks.log().count("listening on") == 3, "the new worker listening", ks)
        second = _sign_load(server_pki, ks.port)
        _eventually(lambda: ks.sign_count() == first + second, "counts of the dead and the new worker", ks)
        assert ks.metric_value("keyless_keys_loaded") == ks.keys
        assert ks.stop() == 0


def test_workers_export_the_same_families_and_types_as_one_process(server_pki: DemoPKI, tmp_path: Path) -> None:
    def families(workers: int) -> set[str]:
        with start_keyserver(server_pki, tmp_path, workers=workers) as ks:
            peer = Peer(connect(server_pki, ks.port))
            peer.request(Message(1, Opcode.ECDSA_SIGN_SHA256, DIGEST, ski=bytes(20)))  # one failed request
            peer.close()
            _eventually(lambda: 'keyless_requests{opcode="ECDSA_SIGN_SHA256"} 1.0' in ks.metrics(), "the request", ks)
            return {line for line in ks.metrics().splitlines() if line.startswith("# TYPE ")}

    single, merged = families(1), families(2)
    per_worker = {line for line in merged if line.startswith("# TYPE keyless_worker_process_")}
    assert "# TYPE keyless_worker_process_cpu_seconds_total counter" in per_worker
    assert single == merged - per_worker
    assert "# TYPE keyless_requests untyped" in merged and "# TYPE keyless_failed_connection untyped" in merged
    assert "# TYPE keyless_sign_request_duration_seconds summary" in merged


def test_workers_without_keys_are_not_ready_like_one_process(server_pki: DemoPKI, tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    empty = tmp_path / "no-keys"
    empty.mkdir()
    for workers in (1, 2):
        with start_keyserver(server_pki, tmp_path, workers=workers, private_key_dirs=[str(empty)]) as ks:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{ks.metrics_port}/readyz", timeout=10)
            assert refused.value.code == 503 and refused.value.read() == b"not ready: keys_loaded\n"
