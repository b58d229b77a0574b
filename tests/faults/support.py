"""The fault suite's parts: an edge on two real key servers, a closed-loop load of full TLS handshakes by
Python's ssl, and a TCP proxy the test owns that can delay a key server's answers or reset its
connections mid-operation."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Iterable
from typing import Any

from keyless.pki import DemoPKI
from tests.edge.edgeproc import EdgeProcess
from tests.edge.support import LoopThread
from tests.support.waiting import wait_until

HOST = "keyless.test"


def edge_config(pki: DemoPKI, origin_port: int, key_servers: list[str], **tls: Any) -> dict[str, Any]:
    """One ECDSA site on ``key_servers``. The key-server timeout (5 s) is the issue's: a frozen server's
    operations must not wait for it. Ejected servers come back after 1 s (tests watch them return)."""
    return {
        "listen": [{"address": "127.0.0.1", "port": 0}],
        "metrics_addr": "127.0.0.1:0",
        "key_server_tls": {
            "client_cert": str(pki.edge_cert),
            "client_key": str(pki.edge_key),
            "ca": str(pki.ca),
            "timeout": 5,
            "ejection_time": 1,
            **tls,
        },
        "certificates": [{"names": [HOST], "chain": str(pki.site_cert("ecdsa-p256")), "key_servers": key_servers,
                          "default": True}],
        "origin": {"mode": "http", "address": f"127.0.0.1:{origin_port}"},
        "limits": {"drain_timeout": 2, "handshake_timeout": 60},
    }


def full_handshake(port: int, context: ssl.SSLContext) -> None:
    """One full TLS 1.3 handshake (no session offered) and one HTTP exchange through the edge."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=60) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        body = b""
        while chunk := tls.recv(65536):
            body += chunk
        if b"Hello through a keyless edge" not in body:
            raise AssertionError(f"unexpected answer: {body[:200]!r}")


class HandshakeLoad:
    """``clients`` threads doing full handshakes back to back; counts successes, keeps every failure."""

    def __init__(self, edge: EdgeProcess, pki: DemoPKI, clients: int = 4) -> None:
        self.edge = edge
        self.pki = pki
        self.done = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        while not self._stop.is_set():
            try:
                full_handshake(self.edge.port, context)
            except Exception as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                continue
            with self._lock:
                self.done += 1

    def __enter__(self) -> HandshakeLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def wait_for_more(self, count: int, what: str, timeout: float = 120.0) -> None:
        """Until ``count`` more handshakes succeeded (or one failed: the test then reports it)."""
        target = self.done + count
        wait_until(lambda: self.done >= target or self.failures, what, timeout=timeout)


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target``: ``delay`` seconds are added to every chunk the
    target sends back (a slow key server), ``reset()`` aborts every connection with a TCP RST, and
    ``reset_requests(n)`` makes each of the next ``n`` requests (client data after the TLS handshake)
    reach the target and then RSTs its connection: a reset mid-operation."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.loop = LoopThread()
        self.target = target
        self.delay = 0.0
        self.connections = 0
        self.armed_resets = 0
        self.resets_done = 0
        self._sockets: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server = self.loop.run(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.connections += 1
        self._sockets.update((writer, up_writer))
        try:
            await asyncio.gather(self._pump(reader, up_writer, delayed=False, pair=(writer, up_writer)),
                                 self._pump(up_reader, writer, delayed=True))
        finally:
            for w in (writer, up_writer):
                self._sockets.discard(w)
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delayed: bool,
                    pair: tuple[asyncio.StreamWriter, ...] = ()) -> None:
        chunks = 0
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                chunks += 1
                if delayed and self.delay > 0:
                    await asyncio.sleep(self.delay)  # the simulated slowness itself, not a wait in a test
                writer.write(data)
                await writer.drain()
                # Chunks 1-2 from the client are its TLS handshake; later ones carry requests.
                if pair and chunks > 2 and self.armed_resets > 0:
                    self.armed_resets -= 1
                    self.resets_done += 1
                    self._abort(pair)
                    return
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()

    def reset(self) -> int:
        """RST every open connection (both sides); returns how many were open."""
        result: int = self.loop.call(self._abort_all)
        return result

    def reset_requests(self, count: int) -> None:
        def arm() -> None:
            self.armed_resets += count

        self.loop.call(arm)

    def _abort_all(self) -> int:
        writers = list(self._sockets)
        self._abort(writers)
        return len(writers) // 2

    @staticmethod
    def _abort(writers: Iterable[asyncio.StreamWriter]) -> None:
        for writer in writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

    def close(self) -> None:
        self.loop.call(self.server.close)
        self.loop.call(self._abort_all)
        self.loop.stop()


def keyserver_label(port: int) -> str:
    return f"127.0.0.1:{port}"
