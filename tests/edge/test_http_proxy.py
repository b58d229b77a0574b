"""The HTTP/1.1 reverse proxy over plain TCP streams, against curl / http.client and a stdlib origin."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyless.edge.http_proxy import HTTPProxy, ProxySettings
from keyless.edge.streams import SocketStream
from tests.conftest import require_tool
from tests.edge.support import LoopThread, OriginProcess, origin_thread


class Counting:
    def __init__(self) -> None:
        self.origin_errors: list[str] = []
        self.statuses: list[int] = []

    def origin_error(self, kind: str) -> None:
        self.origin_errors.append(kind)

    def response_sent(self, status: int) -> None:
        self.statuses.append(status)

    def transferred(self, received: int, sent: int) -> None:
        pass


class ProxyUnderTest:
    def __init__(self, loop: LoopThread, settings: ProxySettings) -> None:
        self.loop = loop
        self.observer = Counting()
        self.proxy = HTTPProxy(settings, self.observer)  # type: ignore[arg-type]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = SocketStream(reader, writer)
            try:
                await self.proxy.serve(stream, writer.get_extra_info("peername"))
            finally:
                await stream.close()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(handle, "127.0.0.1", 0)

        self.server: asyncio.Server = loop.run(start())
        self.port = self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.proxy.close()

        self.loop.run(stop())


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.stop()


@pytest.fixture
def origin_port() -> Iterator[int]:
    with origin_thread() as port:
        yield port


def make_proxy(loop: LoopThread, origin_port: int, **overrides: object) -> ProxyUnderTest:
    settings = ProxySettings(origin_host="127.0.0.1", origin_port=origin_port, **overrides)  # type: ignore[arg-type]
    return ProxyUnderTest(loop, settings)


@pytest.fixture
def proxy(loop_thread: LoopThread, origin_port: int) -> Iterator[ProxyUnderTest]:
    p = make_proxy(loop_thread, origin_port)
    yield p
    p.close()


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    path = require_tool("curl")
    return subprocess.run([path, "-sS", *args], capture_output=True, timeout=timeout)


def test_get_and_keep_alive_reuses_one_origin_connection(proxy: ProxyUnderTest) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    for _ in range(3):
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200
        assert b"Hello through a keyless edge" in body
    conn.close()
    assert proxy.loop.call(lambda: len(proxy.proxy.pool._idle)) == 1
    assert proxy.observer.statuses == [200, 200, 200]


def test_forwarding_headers_replace_client_claims_and_hop_by_hop_is_dropped(proxy: ProxyUnderTest) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    conn.request(
        "GET",
        "/headers",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "Forwarded": "for=6.6.6.6",
            "Connection": "keep-alive, X-Private",
            "X-Private": "hop only",
            "X-End-To-End": "kept",
        },
    )
    seen = json.loads(conn.getresponse().read())["headers"]
    conn.close()
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"
    # RFC 7239: a host with a port is not a token, so it is quoted
    assert seen["forwarded"] == f'for=127.0.0.1;proto=https;host="127.0.0.1:{proxy.port}"'
    assert "x-private" not in seen
    assert "connection" not in seen or "x-private" not in seen["connection"].lower()
    assert seen["x-end-to-end"] == "kept"


def test_large_post_streams_both_ways(proxy: ProxyUnderTest, tmp_path: Path) -> None:
    payload = bytes(range(256)) * (6 * 4096)  # 6 MiB
    source = tmp_path / "body.bin"
    source.write_bytes(payload)
    result = curl(
        "-v", "--data-binary", f"@{source}", "-o", str(tmp_path / "out"), f"http://127.0.0.1:{proxy.port}/echo"
    )
    assert result.returncode == 0, result.stderr
    # curl asks "Expect: 100-continue" for a large body; the edge answers at once (no 1 s curl fallback wait).
    assert b"> Expect: 100-continue" in result.stderr and b"< HTTP/1.1 100" in result.stderr
    assert hashlib.sha256((tmp_path / "out").read_bytes()).digest() == hashlib.sha256(payload).digest()


def test_chunked_post_reaches_origin_chunked(proxy: ProxyUnderTest, tmp_path: Path) -> None:
    payload = b"chunky " * 100000
    source = tmp_path / "body.bin"
    source.write_bytes(payload)
    result = curl(
        "-D",
        "-",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        f"@{source}",
        "-o",
        str(tmp_path / "out"),
        f"http://127.0.0.1:{proxy.port}/echo",
    )
    assert result.returncode == 0, result.stderr
    assert b"x-request-was-chunked: 1" in result.stdout.lower()
    assert (tmp_path / "out").read_bytes() == payload


def test_chunked_response_and_large_download(proxy: ProxyUnderTest) -> None:
    result = curl(f"http://127.0.0.1:{proxy.port}/chunked/50")
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1] == b"chunk 49"
    big = curl(f"http://127.0.0.1:{proxy.port}/bytes/{20 * 1024 * 1024}")
    assert len(big.stdout) == 20 * 1024 * 1024


def test_oversized_header_gets_431(loop_thread: LoopThread, origin_port: int) -> None:
    p = make_proxy(loop_thread, origin_port, max_header_size=2048)
    try:
        result = curl(
            "-o", "/dev/null", "-w", "%{http_code}", "-H", "X-Big: " + "a" * 4000, f"http://127.0.0.1:{p.port}/"
        )
        assert result.stdout == b"431"
    finally:
        p.close()


def test_garbage_request_gets_400(proxy: ProxyUnderTest) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ")


def test_origin_refusing_connections_gives_502(loop_thread: LoopThread) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]  # bound, never listening: connections are refused
        p = make_proxy(loop_thread, dead_port)
        try:
            result = curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{p.port}/")
            assert result.stdout == b"502"
            assert p.observer.origin_errors == ["connect"]
        finally:
            p.close()


def test_slow_origin_gives_504_in_time(loop_thread: LoopThread, origin_port: int) -> None:
    p = make_proxy(loop_thread, origin_port, response_timeout=0.3)
    try:
        # The origin answers after 3 s, ten times the response timeout: a 504 (rather than the origin's 200)
        # shows the proxy gave up in time, whatever this machine's speed.
        result = curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{p.port}/slow/3")
        assert result.stdout == b"504"
        assert p.observer.origin_errors == ["response_timeout"]
    finally:
        p.close()


def test_killed_origin_gives_502_not_a_hang(loop_thread: LoopThread) -> None:
    with OriginProcess() as origin:
        p = make_proxy(loop_thread, origin.port)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)  # a hang fails at the timeout
            conn.request("GET", "/")
            assert conn.getresponse().read().startswith(b"<!doctype")
            origin.kill()
            conn.request("GET", "/")  # the pooled connection is dead, and so is every new one
            response = conn.getresponse()
            assert response.status == 502
        finally:
            p.close()


def test_request_with_both_content_length_and_chunked_is_refused(proxy: ProxyUnderTest) -> None:
    smuggle = (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /headers HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(smuggle)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1") == 1  # nothing else was answered: the connection was closed


def test_slowly_dribbled_request_head_is_cut_at_idle_timeout(loop_thread: LoopThread, origin_port: int) -> None:
    p = make_proxy(loop_thread, origin_port, idle_timeout=1.0)
    try:
        started = time.monotonic()  # before connecting: the proxy's timer starts after this
        with socket.create_connection(("127.0.0.1", p.port), timeout=30) as sock:
            # A slow peer: one byte of the head, then a wait for the proxy's close of at most 50 ms (far less
            # than the idle timeout, so only a limit on the whole head cuts it), and so on.
            head = iter(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"a" * 4000)
            closed = False
            while not closed:
                assert time.monotonic() - started < 60, "the dribbled head was never cut"
                try:
                    sock.sendall(bytes([next(head)]))
                except OSError:
                    break
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable:
                    try:
                        closed = sock.recv(1) == b""
                    except ConnectionResetError:
                        closed = True
                    assert closed, "the proxy answered a head it never got in full"
            assert time.monotonic() - started >= 0.9  # not cut before the idle timeout (1 s)
    finally:
        p.close()


def test_stale_keep_alive_connection_is_retried_on_a_fresh_one(loop_thread: LoopThread) -> None:
    """An origin that drops a keep-alive connection when its next request arrives (a keep-alive timeout
    racing the request): a body-less request is resent on a new connection and the client sees no error."""
    connections = []

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the second request on this connection: hang up unanswered
        writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(origin, "127.0.0.1", 0)

    server = loop_thread.run(start())
    p = make_proxy(loop_thread, server.sockets[0].getsockname()[1])
    try:
        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
        for _ in range(3):
            conn.request("GET", "/")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"ok\n")
        conn.close()
        assert len(connections) == 3  # each later request found its pooled connection dropped
        assert p.observer.origin_errors == []
    finally:
        p.close()
        loop_thread.call(server.close)
