"""Garbage and mutated requests cost only their own connection: the proxy answers 4xx or closes, never
raises out of its handler, and keeps serving well-formed requests (h11's invariant, through our proxy)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Iterator

import pytest

from keyless.edge.http_proxy import HTTPProxy, ProxySettings
from keyless.edge.streams import SocketStream
from tests.edge.support import LoopThread, origin_thread

SEEDS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /headers HTTP/1.0\r\n\r\n",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        position = rng.randrange(len(buf) + 1)
        if choice < 0.3 and buf:
            del buf[position % len(buf)]
        elif choice < 0.6:
            buf[position:position] = bytes([rng.choice(b"\r\n :\x00\x7f\xff;,0Aa")])
        elif choice < 0.8 and buf:
            buf[position % len(buf)] = rng.randrange(256)
        else:
            buf[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
    return bytes(buf)


@pytest.fixture
def proxy_port() -> Iterator[tuple[int, list[object]]]:
    errors: list[object] = []
    loop = LoopThread()
    with origin_thread() as origin_port:
        proxy = HTTPProxy(ProxySettings("127.0.0.1", origin_port, idle_timeout=2.0, response_timeout=5.0))

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = SocketStream(reader, writer)
            try:
                await proxy.serve(stream, writer.get_extra_info("peername"))
            except Exception as exc:  # what the invariant forbids
                errors.append(exc)
            finally:
                await stream.close()

        async def start() -> asyncio.Server:
            asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
            return await asyncio.start_server(handle, "127.0.0.1", 0)

        server = loop.run(start())
        yield server.sockets[0].getsockname()[1], errors
        loop.call(server.close)
    loop.stop()


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def test_mutated_requests_never_break_the_proxy(proxy_port: tuple[int, list[object]]) -> None:
    port, errors = proxy_port
    rng = random.Random(20261127)
    for _ in range(150):
        data = mutate(rng, rng.choice(SEEDS))
        answer = exchange(port, data)
        if answer:
            assert answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), (data, answer[:100])
            status = int(answer[9:12])
            assert status in (200, 400, 404, 431, 501, 502, 505), (data, answer[:100])
    assert exchange(port, SEEDS[0]).startswith(b"HTTP/1.1 200 ")
    assert errors == []


def test_random_bytes_never_break_the_proxy(proxy_port: tuple[int, list[object]]) -> None:
    port, errors = proxy_port
    rng = random.Random(7)
    for _ in range(100):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
        answer = exchange(port, data)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    assert exchange(port, SEEDS[1]).endswith(b"hello")
    assert errors == []
