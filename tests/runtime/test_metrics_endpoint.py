"""The metrics endpoint serves from one event loop: idle connections cost no thread and are closed after the
idle timeout; scrapes keep working while hundreds are open; readiness names what fails."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from keyless.pki import DemoPKI, create_demo_pki
from keyless.runtime.metrics import MetricsEndpoint, readiness_failures
from tests.support.keyserver import start_keyserver

IDLE = 200


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _idle_connections(port: int, count: int) -> list[socket.socket]:
    conns = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # a request head never finished
        conns.append(sock)
    return conns


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def endpoint() -> Iterator[MetricsEndpoint]:
    registry = CollectorRegistry()
    Counter("demo_events", "events", registry=registry).inc(3)
    ready = {"value": True}
    served = MetricsEndpoint(registry, {"store": lambda: ready["value"], "backends": lambda: ["b:1", "c:2"]},
                             idle_timeout=1.0, max_connections=512)
    served.start("127.0.0.1", 0)
    yield served
    served.close()


def test_idle_connections_use_no_threads_and_time_out(endpoint: MetricsEndpoint) -> None:
    threads_before = threading.active_count()
    conns = _idle_connections(endpoint.port, IDLE)
    try:
        assert threading.active_count() == threads_before
        status, body = _get(endpoint.port, "/metrics")  # still served while 200 connections sit idle
        assert status == 200 and "demo_events_total 3.0" in body
        assert threading.active_count() == threads_before
        for sock in conns:  # every idle connection is closed by the server after idle_timeout
            sock.settimeout(30)
            assert _closed_by_server(sock)
        deadline = time.monotonic() + 30
        while endpoint.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert endpoint.connections == 0
    finally:
        for sock in conns:
            sock.close()


def test_readiness_names_every_failing_check_and_what_fails(endpoint: MetricsEndpoint) -> None:
    assert _get(endpoint.port, "/readyz") == (503, "not ready: backends (b:1, c:2)\n")
    assert readiness_failures({"a": lambda: True, "b": lambda: [], "c": lambda: False}) == ["c"]
    assert readiness_failures({"broken": lambda: 1 / 0 > 0}) == ["broken"]
    assert _get(endpoint.port, "/healthz") == (200, "ok\n")
    assert _get(endpoint.port, "/nope")[0] == 404


def test_a_full_endpoint_drops_its_oldest_idle_connection_for_a_scrape() -> None:
    registry = CollectorRegistry()
    served = MetricsEndpoint(registry, idle_timeout=60.0, max_connections=8)
    served.start("127.0.0.1", 0)
    conns = _idle_connections(served.port, 8)
    try:
        deadline = time.monotonic() + 30
        while served.connections < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _get(served.port, "/healthz") == (200, "ok\n")  # not locked out by the 8 idle sockets
        assert _closed_by_server(conns[0])  # the oldest made room
    finally:
        for sock in conns:
            sock.close()
        served.close()


def test_bad_requests_get_an_error_not_a_crash(endpoint: MetricsEndpoint) -> None:
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=30) as sock:
        sock.sendall(b"BREW /pot HTCPCP/1.0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=30) as sock:
        sock.sendall(b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n")  # a head over the limit: just closed
        assert _closed_by_server(sock)
    assert _get(endpoint.port, "/healthz")[0] == 200


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    return create_demo_pki(tmp_path_factory.mktemp("pki"), site_keys=("ecdsa-p256",))


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def test_key_server_metrics_endpoint_does_not_start_a_thread_per_connection(pki: DemoPKI, tmp_path: Path) -> None:
    with start_keyserver(pki, tmp_path) as ks:
        _get(ks.metrics_port, "/metrics")
        before = _threads(ks.proc.pid)
        conns = _idle_connections(ks.metrics_port, IDLE)
        try:
            assert _get(ks.metrics_port, "/readyz")[0] == 200  # every connection has been accepted by now
            assert _threads(ks.proc.pid) == before
        finally:
            for sock in conns:
                sock.close()
