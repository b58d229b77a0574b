"""Helpers for the edge tests: an origin (stdlib http.server), an asyncio loop in a thread, openssl s_client."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from keyless.edge.demo_origin import OriginHandler, make_server
from tests.conftest import require_tool


def s_client_get(port: int, ca: Path, host: str, *args: str) -> str:
    """``openssl s_client`` to 127.0.0.1:``port`` with SNI ``host``, verifying against ``ca``, doing one
    ``GET /``; its stdout and stderr."""
    openssl = require_tool("openssl")
    result = subprocess.run(
        [
            openssl,
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            host,
            "-CAfile",
            str(ca),
            "-verify_return_error",
            "-ign_eof",
            *args,
        ],
        # A whole HTTP exchange: the TLS 1.3 tickets arrive before the answer, and the edge then closes.
        input=f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(),
        capture_output=True,
        timeout=30,
    )
    return result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")


@contextlib.contextmanager
def origin_thread() -> Iterator[int]:
    """A stdlib HTTP origin in a thread; yields its port."""
    server = make_server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class HeldOrigin:
    """The demo origin in a thread, where ``GET /held`` is answered only once the test sets ``release``; the
    test learns from ``arrived`` that the request has reached the origin (so it is in flight at the edge)."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        origin = self

        class Handler(OriginHandler):
            def do_GET(self) -> None:
                if self.path != "/held":
                    return super().do_GET()
                origin.arrived.set()
                origin.release.wait(60)
                return self._send(200, b"held\n", "text/plain")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HeldOrigin:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class OriginProcess:
    """The demo origin as a real process (so a test can kill it)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "keyless.edge.demo_origin", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("origin ready port="):
            self.proc.kill()
            raise RuntimeError(f"origin did not start: {line!r}")
        self.port = int(line.strip().split("=")[1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self) -> OriginProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class LoopThread:
    """An asyncio event loop running in a daemon thread, for servers that blocking clients talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def call(self, fn: Callable[[], Any]) -> Any:
        async def wrapper() -> Any:
            return fn()

        return self.run(wrapper())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
