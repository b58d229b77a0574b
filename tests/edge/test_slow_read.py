"""Slow-read lockout (issue 16): clients that ask for a large response and never read it.

Without a deadline on writes, each such client holds its connection slot and an origin connection
for ever (the TLS stream's write waits on drain(); ``idle_timeout`` bounds reads only), so
``max_connections`` of them lock everyone out. With ``limits.send_timeout`` the edge aborts them,
which frees the slots and the origin connections; then a normal client is served. Real edge
process, real TLS clients, an origin in this process that counts its open connections.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from keyless.edge.config import ConfigError, load_config
from keyless.edge.demo_origin import OriginHandler, OriginServer
from tests.edge.certs import KINDS, SitePKI, make_pki
from tests.edge.edgeproc import EdgeProcess

SLOW_CLIENTS = 4
HUGE = 1 << 40  # far more than any buffer between the origin and a client that does not read
HOST = "ecdsa.edge.test"


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.seen = 0

    def enter(self) -> None:
        with self.lock:
            self.open += 1
            self.seen += 1

    def leave(self) -> None:
        with self.lock:
            self.open -= 1


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SitePKI:
    return make_pki(tmp_path_factory.mktemp("slow-read-pki"))


def _serve(server: socketserver.BaseServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]  # type: ignore[misc]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_origin() -> Iterator[tuple[int, Counter]]:
    """The demo origin, counting the connections it has open (an endless /bytes/N keeps one busy)."""
    counter = Counter()

    class Counting(OriginHandler):
        def handle(self) -> None:
            counter.enter()
            try:
                super().handle()
            except OSError:
                pass  # the edge cut this connection
            finally:
                counter.leave()

    for port in _serve(OriginServer(("127.0.0.1", 0), Counting)):
        yield port, counter


@pytest.fixture
def tcp_origin() -> Iterator[tuple[int, Counter]]:
    """A TCP origin that sends to each connection until the connection breaks."""
    counter = Counter()

    class Flood(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            counter.enter()
            try:
                while True:
                    self.request.sendall(b"x" * 65536)
            except OSError:
                pass
            finally:
                counter.leave()

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    for port in _serve(Server(("127.0.0.1", 0), Flood)):
        yield port, counter


def edge_config(pki: SitePKI, origin: dict[str, Any], **limits: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listen": [{"address": "127.0.0.1", "port": 0}],
        "metrics_addr": "127.0.0.1:0",
        "certificates": [
            {"names": [f"{kind}.edge.test"], "chain": str(pki.chain(kind)), "key_file": str(pki.key(kind))}
            for kind in KINDS
        ],
        "origin": origin,
        "limits": {"max_connections": SLOW_CLIENTS, "drain_timeout": 1, **limits},
    }
    config["certificates"][0]["default"] = True
    return config


def tls_client(pki: SitePKI, port: int, *, receive_buffer: int | None = None) -> ssl.SSLSocket:
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect: a small window
    raw.settimeout(30)
    raw.connect(("127.0.0.1", port))
    context = ssl.create_default_context(cafile=str(pki.ca))
    return context.wrap_socket(raw, server_hostname=HOST)


def wait_until(probe: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout  # decides failure only
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def read_response(sock: ssl.SSLSocket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the response head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    length = int(lengths[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return head, body


def test_clients_that_never_read_cannot_lock_out_http_clients(
    pki: SitePKI, http_origin: tuple[int, Counter], tmp_path: Path
) -> None:
    origin_port, origin = http_origin
    config = edge_config(pki, {"mode": "http", "address": f"127.0.0.1:{origin_port}"}, send_timeout=0.5)
    with EdgeProcess(config, tmp_path, name="slow-read-http") as edge:
        slow = [tls_client(pki, edge.port, receive_buffer=4096) for _ in range(SLOW_CLIENTS)]
        for sock in slow:
            sock.sendall(f"GET /bytes/{HUGE} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        # Every slot was taken and every request reached the origin...
        wait_until(lambda: origin.seen >= SLOW_CLIENTS, "the slow clients' requests to reach the origin")
        # ... and the edge gives both back although the clients still have not read a byte.
        wait_until(lambda: edge.metric("keyless_edge_active_connections") == 0, "the slots to be freed")
        wait_until(lambda: origin.open == 0, "the origin connections to be released")
        with tls_client(pki, edge.port) as normal:
            normal.sendall(f"GET /bytes/1000000 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            head, body = read_response(normal)
        assert head.startswith(b"HTTP/1.1 200") and len(body) == 1_000_000
        for sock in slow:
            assert _was_cut(sock)
        assert edge.metric("keyless_edge_connections_refused_total") == 0


def test_clients_that_never_read_cannot_lock_out_tcp_clients(
    pki: SitePKI, tcp_origin: tuple[int, Counter], tmp_path: Path
) -> None:
    origin_port, origin = tcp_origin
    config = edge_config(pki, {"mode": "tcp", "address": f"127.0.0.1:{origin_port}"}, send_timeout=0.5)
    with EdgeProcess(config, tmp_path, name="slow-read-tcp") as edge:
        slow = [tls_client(pki, edge.port, receive_buffer=4096) for _ in range(SLOW_CLIENTS)]
        wait_until(lambda: origin.seen >= SLOW_CLIENTS, "the slow clients' origin connections")
        wait_until(lambda: edge.metric("keyless_edge_active_connections") == 0, "the slots to be freed")
        wait_until(lambda: origin.open == 0, "the origin connections to be released")
        with tls_client(pki, edge.port) as normal:
            received = 0
            while received < 1_000_000:
                chunk = normal.recv(65536)
                assert chunk, "the normal client's stream ended early"
                received += len(chunk)
        for sock in slow:
            assert _was_cut(sock)


def test_the_default_send_timeout_is_a_minute_and_validated(pki: SitePKI, tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(edge_config(pki, {"mode": "http", "address": "127.0.0.1:1"})))
    assert load_config(path).limits.send_timeout == 60.0
    path.write_text(yaml.safe_dump(edge_config(pki, {"mode": "http", "address": "127.0.0.1:1"}, send_timeout=0)))
    with pytest.raises(ConfigError, match=r"limits\.send_timeout"):
        load_config(path)


def _was_cut(sock: ssl.SSLSocket) -> bool:
    """Reading what the edge had sent ends in EOF or a reset, never a live stream."""
    sock.settimeout(30)
    try:
        while sock.recv(1 << 20):
            pass
    except (ConnectionError, ssl.SSLError, OSError) as exc:
        sock.close()
        return not isinstance(exc, TimeoutError)
    sock.close()
    return True
