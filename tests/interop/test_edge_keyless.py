"""The edge with its keys on real key-server processes: resumption costs no key operation, SNI over
three key types, key-server faults, and what the key server's round trip adds to a handshake.

Every party is a real process on 127.0.0.1 (key server, origin, edge) and every client is one we did
not write (openssl s_client, curl, Python's ssl).
"""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keyless.pki import DemoPKI, create_demo_pki
from tests.conftest import require_tool
from tests.edge.edgeproc import EdgeProcess
from tests.edge.relay import DelayRelay
from tests.edge.support import LoopThread, OriginProcess, s_client_get
from tests.support.keyserver import KeyServerProcess, start_keyserver
from tests.support.waiting import wait_until

HOST = "keyless.test"
SITES = {"ecdsa": "ecdsa-p256", "rsa": "rsa-2048", "ed25519": "ed25519"}


def edge_config(pki: DemoPKI, origin_port: int, key_servers: list[str], **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listen": [{"address": "127.0.0.1", "port": 0}],
        "metrics_addr": "127.0.0.1:0",
        "key_server_tls": {
            "client_cert": str(pki.edge_cert),
            "client_key": str(pki.edge_key),
            "ca": str(pki.ca),
            "timeout": 30,  # only decides failure: a loaded machine must not turn slow answers into errors
        },
        "certificates": [
            {
                "names": [f"{name}.{HOST}"] + ([HOST] if name == "ecdsa" else []),
                "chain": str(pki.site_cert(key)),
                "key_servers": key_servers,
                "default": name == "ecdsa",
            }
            for name, key in SITES.items()
        ],
        "rsa_key_exchange": True,
        "origin": {"mode": "http", "address": f"127.0.0.1:{origin_port}"},
        "limits": {"drain_timeout": 2, "handshake_timeout": 30},
    }
    config.update(changes)
    return config


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
def edge(
    pki: DemoPKI, origin: OriginProcess, keyserver: KeyServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EdgeProcess]:
    config = edge_config(pki, origin.port, [f"127.0.0.1:{keyserver.port}"])
    with EdgeProcess(config, tmp_path_factory.mktemp("edge")) as process:
        wait_ready(process)
        yield process


def wait_ready(edge: EdgeProcess, want: int = 200) -> None:
    wait_until(lambda: edge.status("/readyz") == want, f"/readyz to answer {want}")


def s_client(port: int, pki: DemoPKI, *args: str, host: str = HOST) -> str:
    return s_client_get(port, pki.ca, host, *args)


def settle(ks: KeyServerProcess) -> int:
    """The key server's operation count. No waiting needed: the key server counts an operation before it
    writes the reply, so an operation that a finished handshake needed is already counted."""
    return ks.sign_count()


def requests_by_opcode(ks: KeyServerProcess, fragment: str, exclude: str | None = None) -> float:
    """Requests the key server received whose opcode name contains ``fragment`` (and not ``exclude``),
    read from one scrape, so a request arriving meanwhile (the edge's health ping) cannot skew it."""
    total = 0.0
    for line in ks.metrics().splitlines():
        if line.startswith("keyless_requests") and "opcode=" in line:
            opcode = line.split('opcode="', 1)[1].split('"', 1)[0]
            if exclude is not None and exclude in opcode:
                continue
            if fragment in opcode and not line.split("{", 1)[0].endswith("_created"):
                total += float(line.rpartition(" ")[2])
    return total


def test_tls13_resumption_makes_no_key_operation(
    edge: EdgeProcess, keyserver: KeyServerProcess, pki: DemoPKI, tmp_path: Path
) -> None:
    session = tmp_path / "sess.pem"
    before = settle(keyserver)
    first = s_client(edge.port, pki, "-sess_out", str(session))
    assert "New, TLSv1.3" in first and "Hello through a keyless edge" in first, first
    after_full = settle(keyserver)
    assert after_full == before + 1
    second = s_client(edge.port, pki, "-sess_in", str(session))
    assert "Reused, TLSv1.3" in second and "Hello through a keyless edge" in second, second
    assert settle(keyserver) == after_full  # keyless_sign_requests_total did not move


@pytest.mark.parametrize(
    ("host", "cipher", "opcode"),
    [(f"ecdsa.{HOST}", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDSA"), (f"rsa.{HOST}", "AES128-GCM-SHA256", "DECRYPT")],
)
def test_tls12_full_and_resumed(
    edge: EdgeProcess, keyserver: KeyServerProcess, pki: DemoPKI, tmp_path: Path, host: str, cipher: str, opcode: str
) -> None:
    session = tmp_path / "sess.pem"
    before = settle(keyserver)
    ops_before = requests_by_opcode(keyserver, opcode)
    first = s_client(edge.port, pki, "-tls1_2", "-cipher", cipher, "-sess_out", str(session), host=host)
    assert f"New, TLSv1.2, Cipher is {cipher}" in first, first
    assert settle(keyserver) == before + 1
    ops_after = requests_by_opcode(keyserver, opcode)
    assert ops_after == ops_before + 1
    second = s_client(edge.port, pki, "-tls1_2", "-cipher", cipher, "-sess_in", str(session), host=host)
    assert "Reused, TLSv1.2" in second, second
    assert settle(keyserver) == before + 1


def test_sni_picks_each_key_type(edge: EdgeProcess, pki: DemoPKI) -> None:
    expected = {
        "ecdsa": "Signature type: ECDSA",
        "rsa": "Signature type: RSA-PSS",
        "ed25519": "Signature type: ed25519",
    }
    for name, line in expected.items():
        out = s_client(edge.port, pki, "-brief", host=f"{name}.{HOST}")
        assert "Verification: OK" in out, out
        assert line in out, out


def test_curl_through_edge_with_remote_key(edge: EdgeProcess, pki: DemoPKI, tmp_path: Path) -> None:
    curl = require_tool("curl")
    payload = b"x" * (3 * 1024 * 1024)
    (tmp_path / "body").write_bytes(payload)
    result = subprocess.run(
        [
            curl,
            "-sS",
            "--cacert",
            str(pki.ca),
            "--resolve",
            f"{HOST}:{edge.port}:127.0.0.1",
            "--data-binary",
            f"@{tmp_path / 'body'}",
            f"https://{HOST}:{edge.port}/echo",
        ],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload
    assert edge.metric("keyless_edge_key_operations_total", kind="sign", result="ok") >= 1


# --- faults ---------------------------------------------------------------------------------------


def python_handshake(
    port: int, pki: DemoPKI, session: ssl.SSLSession | None = None, context: ssl.SSLContext | None = None
) -> tuple[ssl.SSLSession | None, bool]:
    ctx = context or ssl.create_default_context(cafile=str(pki.ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname=HOST, session=session) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        body = b""
        while chunk := tls.recv(65536):
            body += chunk
        assert b"Hello through a keyless edge" in body
        return tls.session, tls.session_reused


def test_key_server_killed_full_fails_fast_resumed_works_then_recovers(
    pki: DemoPKI, origin: OriginProcess, tmp_path: Path
) -> None:
    ks = start_keyserver(pki, tmp_path)
    port = ks.port
    config = edge_config(pki, origin.port, [f"127.0.0.1:{port}"])
    config["key_server_tls"]["timeout"] = 60
    with EdgeProcess(config, tmp_path, name="edge-kill") as edge:
        wait_ready(edge)
        context = ssl.create_default_context(cafile=str(pki.ca))
        session, _ = python_handshake(edge.port, pki, context=context)
        ks.kill()
        # Fails fast: the key-server timeout here (60 s) is longer than the handshake timeout (30 s), so an edge
        # that waited for the dead key server would cut the connection without this alert.
        out = s_client(edge.port, pki)
        assert "alert handshake failure" in out, out
        assert edge.metric("keyless_edge_handshake_failures_total", reason="handshake_failure") >= 1
        assert edge.metric("keyless_edge_alerts_sent_total", description="handshake_failure") >= 1
        _, reused = python_handshake(edge.port, pki, session=session, context=context)
        assert reused  # resumption needs no key server
        wait_ready(edge, want=503)
        with start_keyserver(pki, tmp_path, port=port):
            wait_until(lambda: "New, TLSv1.3" in s_client(edge.port, pki), "the edge to recover", timeout=60)
            wait_ready(edge)


def test_two_key_servers_one_killed_under_load_fails_no_handshake(
    pki: DemoPKI, origin: OriginProcess, tmp_path: Path
) -> None:
    ks1 = start_keyserver(pki, tmp_path)
    ks2 = start_keyserver(pki, tmp_path)
    servers = [f"127.0.0.1:{ks1.port}", f"127.0.0.1:{ks2.port}"]
    try:
        with EdgeProcess(edge_config(pki, origin.port, servers), tmp_path, name="edge-two") as edge:
            wait_ready(edge)
            failures: list[str] = []
            done = threading.Event()
            count = [0]

            def load() -> None:
                ctx = ssl.create_default_context(cafile=str(pki.ca))
                while not done.is_set():
                    try:
                        python_handshake(edge.port, pki, context=ctx)  # no session: every one is full
                        count[0] += 1
                    except Exception as exc:
                        failures.append(repr(exc))

            threads = [threading.Thread(target=load) for _ in range(4)]
            for thread in threads:
                thread.start()
            try:
                wait_until(lambda: count[0] >= 8 or failures, "handshakes under load before the kill")
                ks1.kill()
                at_kill = count[0]
                # Handshakes keep succeeding after the kill: at least 20 more, however long that takes here.
                wait_until(lambda: count[0] >= at_kill + 20 or failures, "20 handshakes after the kill", timeout=120)
            finally:
                done.set()
                for thread in threads:
                    thread.join(60)
            assert not failures, failures[:3]
            assert ks2.sign_count() > 0
    finally:
        ks1.kill()
        ks2.stop()


def test_origin_killed_gives_502(pki: DemoPKI, keyserver: KeyServerProcess, tmp_path: Path) -> None:
    curl = require_tool("curl")
    with (
        OriginProcess() as doomed,
        EdgeProcess(edge_config(pki, doomed.port, [f"127.0.0.1:{keyserver.port}"]), tmp_path, name="e502") as edge,
    ):
        doomed.kill()
        result = subprocess.run(
            [
                curl,
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                str(pki.ca),
                "--resolve",
                f"{HOST}:{edge.port}:127.0.0.1",
                f"https://{HOST}:{edge.port}/",
            ],
            capture_output=True,
            timeout=30,
        )
        assert result.stdout == b"502"  # the subprocess timeout (30 s) catches a hang
        assert edge.metric("keyless_edge_origin_errors_total", kind="connect") >= 1


# --- one key-server round trip per full handshake, none per resumed one ----------------------------
# Counted, not timed: the latency this adds (one round trip, not two) is measured by bench/edge_round_trip.py.


def handshake(port: int, pki: DemoPKI, resume_from: tuple[ssl.SSLContext, ssl.SSLSession] | None) -> None:
    context = resume_from[0] if resume_from else ssl.create_default_context(cafile=str(pki.ca))
    session = resume_from[1] if resume_from else None
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=HOST, session=session) as tls,
    ):
        assert tls.session_reused == (resume_from is not None)


def key_server_requests(ks: KeyServerProcess) -> float:
    """Requests other than the edge's health pings."""
    return requests_by_opcode(ks, "", exclude="PING")


def test_key_server_round_trip_costs_full_handshakes_only(
    pki: DemoPKI, origin: OriginProcess, keyserver: KeyServerProcess, tmp_path: Path
) -> None:
    loop = LoopThread()
    relay = DelayRelay(loop, ("127.0.0.1", keyserver.port), 0.0)  # counts the edge's key-server connections
    try:
        config = edge_config(pki, origin.port, [f"127.0.0.1:{relay.port}"])
        with EdgeProcess(config, tmp_path, name="edge-round-trips") as edge:
            wait_ready(edge)
            context = ssl.create_default_context(cafile=str(pki.ca))
            session, _ = python_handshake(edge.port, pki, context=context)  # opens the key-server link
            assert session is not None
            links, signs, requests = relay.connections, settle(keyserver), key_server_requests(keyserver)
            for _ in range(5):
                handshake(edge.port, pki, None)
            # One request each, on the link already open: one round trip per full handshake.
            assert (settle(keyserver), key_server_requests(keyserver)) == (signs + 5, requests + 5)
            for _ in range(5):
                handshake(edge.port, pki, (context, session))
            assert (settle(keyserver), key_server_requests(keyserver)) == (signs + 5, requests + 5)
            assert relay.connections == links
    finally:
        relay.close()
        loop.stop()


def test_readyz_follows_key_server(edge: EdgeProcess) -> None:
    assert edge.status("/readyz") == 200
    assert edge.status("/healthz") == 200


def worker_pids(edge: EdgeProcess) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(edge.proc.pid)], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def test_workers_share_metrics_readiness_and_are_restarted(
    pki: DemoPKI, origin: OriginProcess, keyserver: KeyServerProcess, tmp_path: Path
) -> None:
    import os

    config = edge_config(pki, origin.port, [f"127.0.0.1:{keyserver.port}"])
    with EdgeProcess(config, tmp_path, workers=2, name="workers") as edge:
        wait_ready(edge)  # the parent's own key-server check
        context = ssl.create_default_context(cafile=str(pki.ca))
        for _ in range(6):
            python_handshake(edge.port, pki, context=ssl.create_default_context(cafile=str(pki.ca)))
        # Six full handshakes, wherever they landed, summed over both workers by the parent.
        assert edge.metric("keyless_edge_key_operations_total", kind="sign", result="ok") == 6
        assert edge.metric("keyless_edge_handshakes_total", resumed="false") == 6
        first = worker_pids(edge)
        assert len(first) == 2
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: (lambda now: len(now) == 2 and victim not in now)(worker_pids(edge)),
            lambda: f"the worker to be restarted: {worker_pids(edge)}",
            timeout=60,
        )
        for _ in range(4):
            python_handshake(edge.port, pki, context=context)
