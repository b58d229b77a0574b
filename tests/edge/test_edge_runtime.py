"""The edge on the shared runtime, as an operator sees it: /readyz names the failing key servers, per-key-server
up/latency and per-site certificate expiry metrics, handshake failures logged with peer and SNI, one clean line
for a port in use. Real key server, origin and edge processes; Python's ssl as the client."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from keyless.pki import DemoPKI, create_demo_pki
from tests.edge.edgeproc import EdgeProcess
from tests.edge.support import OriginProcess
from tests.interop.test_edge_keyless import HOST, edge_config
from tests.support.keyserver import KeyServerProcess, start_keyserver

DEADLINE = 30.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    return create_demo_pki(tmp_path_factory.mktemp("pki"), HOST)


@pytest.fixture(scope="module")
def origin() -> Iterator[OriginProcess]:
    with OriginProcess() as process:
        yield process


@pytest.fixture(scope="module")
def keyserver(pki: DemoPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyServerProcess]:
    with start_keyserver(pki, tmp_path_factory.mktemp("ks")) as ks:
        yield ks


@pytest.fixture(scope="module")
def dead_port() -> int:
    """A port nothing listens on (bound once to pick it, then closed): connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _config(pki: DemoPKI, origin: OriginProcess, live: str, dead: str) -> dict[str, object]:
    config = edge_config(pki, origin.port, [live])
    config["certificates"][1]["key_servers"] = [dead]  # type: ignore[index]  # rsa.keyless.test: unreachable
    return config


def _readyz(edge: EdgeProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{edge.metrics_port}/readyz", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait(check, what: str, edge: EdgeProcess) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{edge.stderr_path.read_text()[-3000:]}"
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
def test_readyz_names_the_failing_key_servers_and_metrics_show_each(
    pki: DemoPKI, origin: OriginProcess, keyserver: KeyServerProcess, dead_port: int, tmp_path: Path, workers: int
) -> None:
    live, dead = f"127.0.0.1:{keyserver.port}", f"127.0.0.1:{dead_port}"
    with EdgeProcess(_config(pki, origin, live, dead), tmp_path, workers=workers, name=f"ready{workers}") as edge:
        _wait(lambda: _readyz(edge)[0] == 503 and dead in _readyz(edge)[1], "/readyz naming the dead server", edge)
        _, body = _readyz(edge)
        assert body == f"not ready: keyservers ({dead})\n", body
        assert live not in body
        _wait(lambda: edge.metric("keyless_edge_keyserver_up", keyserver=live) == 1, "the live server up", edge)
        assert edge.metric("keyless_edge_keyserver_up", keyserver=dead) == 0
        text = edge.metrics()
        assert f'keyless_edge_keyserver_ping_seconds{{keyserver="{live}"}}' in text
        assert f'keyless_edge_keyserver_ping_seconds{{keyserver="{dead}"}}' not in text
        for site in ("ecdsa", "rsa", "ed25519"):  # the demo PKI's site certificates are valid for a year or more
            assert edge.metric("keyless_edge_certificate_expiry_seconds", site=f"{site}.{HOST}") > 300 * 86400
        assert 'keyless_build_info{daemon="edge"' in text
        assert not [line for line in text.splitlines() if "_created" in line]
        per_worker = [line for line in text.splitlines() if line.startswith("keyless_worker_process_cpu_seconds_total")]
        assert len(per_worker) == (2 if workers == 2 else 0), per_worker


def test_a_handshake_failure_is_logged_with_peer_and_sni(
    pki: DemoPKI, origin: OriginProcess, keyserver: KeyServerProcess, dead_port: int, tmp_path: Path
) -> None:
    live, dead = f"127.0.0.1:{keyserver.port}", f"127.0.0.1:{dead_port}"
    with EdgeProcess(_config(pki, origin, live, dead), tmp_path, name="hsfail") as edge:
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.maximum_version = ssl.TLSVersion.TLSv1_3
        with socket.create_connection(("127.0.0.1", edge.port), timeout=30) as raw:
            local = raw.getsockname()
            with pytest.raises((ssl.SSLError, ConnectionError)):
                context.wrap_socket(raw, server_hostname=f"rsa.{HOST}").do_handshake()
        expected = f"handshake failed peer=127.0.0.1:{local[1]} sni=rsa.{HOST} reason="
        _wait(lambda: expected in edge.stderr_path.read_text(), "the handshake failure line", edge)
        line = next(line for line in edge.stderr_path.read_text().splitlines() if expected in line)
        assert " WARNING " in line, line


def test_a_port_in_use_is_one_clean_line(pki: DemoPKI, origin: OriginProcess, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = edge_config(pki, origin.port, ["127.0.0.1:1"])
        config["listen"] = [{"address": "127.0.0.1", "port": taken.getsockname()[1]}]
        path = tmp_path / "busy.yaml"
        path.write_text(yaml.safe_dump(config))
        for workers in ("1", "2"):
            command = [sys.executable, "-m", "keyless", "edge", "--config", str(path), "--workers", workers]
            result = subprocess.run(command, capture_output=True, text=True, timeout=60)
            assert result.returncode == 2, result.stderr
            assert result.stderr.strip().splitlines()[-1].startswith("keyless edge: cannot start: ")
            assert "cannot listen on 127.0.0.1:" in result.stderr
            assert "Traceback" not in result.stderr, result.stderr


def test_edge_workers_log_json_lines_with_the_shared_fields(
    pki: DemoPKI, origin: OriginProcess, keyserver: KeyServerProcess, dead_port: int, tmp_path: Path
) -> None:
    import json

    path = tmp_path / "json.yaml"
    path.write_text(yaml.safe_dump(_config(pki, origin, f"127.0.0.1:{keyserver.port}", f"127.0.0.1:{dead_port}")))
    stderr_path = tmp_path / "json.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "keyless", "edge", "--config", str(path), "--workers", "2",
                                 "--log-format", "json"], stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("keyless edge ready port="), stderr_path.read_text()
        port = int(ready.split("port=", 1)[1].split()[0])
        context = ssl.create_default_context(cafile=str(pki.ca))
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            local = raw.getsockname()
            with pytest.raises((ssl.SSLError, ConnectionError)):
                context.wrap_socket(raw, server_hostname=f"rsa.{HOST}").do_handshake()
        deadline = time.monotonic() + DEADLINE
        while "handshake failed" not in stderr_path.read_text():
            assert time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.05)
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
    entries = [json.loads(line) for line in stderr_path.read_text().splitlines()]  # every line parses
    assert {entry["daemon"] for entry in entries} == {"edge"}
    assert {entry.get("worker") for entry in entries} == {None, 0, 1}
    failure = next(entry for entry in entries if entry["message"].startswith("handshake failed"))
    assert failure["peer"] == f"127.0.0.1:{local[1]}" and failure["sni"] == f"rsa.{HOST}"
    assert failure["level"] == "warning" and failure["worker"] in (0, 1)


def test_an_origin_failure_is_logged_with_errno_and_request_but_not_the_query(
    pki: DemoPKI, keyserver: KeyServerProcess, dead_port: int, tmp_path: Path
) -> None:
    config = edge_config(pki, dead_port, [f"127.0.0.1:{keyserver.port}"])  # the origin refuses connections
    with EdgeProcess(config, tmp_path, name="origin-down") as edge:
        context = ssl.create_default_context(cafile=str(pki.ca))
        with (
            socket.create_connection(("127.0.0.1", edge.port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            local = tls.getsockname()
            tls.sendall(f"GET /orders/7?token=s3cret HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 502")
        _wait(lambda: "origin 127.0.0.1" in edge.stderr_path.read_text(), "the origin failure line", edge)
        line = next(line for line in edge.stderr_path.read_text().splitlines() if "origin 127.0.0.1" in line)
        assert f"origin 127.0.0.1:{dead_port} failed: connect errno=ECONNREFUSED" in line, line
        assert "request=GET /orders/7 " in line and f"peer=127.0.0.1:{local[1]} sni={HOST}" in line, line
        assert "s3cret" not in edge.stderr_path.read_text()
