"""A real redis-server on 127.0.0.1 for tests.

redis-server cannot report a port it chose itself, so the test picks a free one; another process may take it
between the pick and redis' bind. Such a redis-server exits at once, and the start is retried on another port.
Ready means: this very process (its pid in ``INFO server``) answers on the port, not merely that something
accepts connections there.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator

import redis

from tests.conftest import require_tool
from tests.support.waiting import DEADLINE, wait_until

ATTEMPTS = 5


def free_port() -> int:
    """A port nothing listened on a moment ago (may be taken by the time it is used: see above)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(proc: subprocess.Popen[bytes], port: int) -> str | None:
    """"ready", "exited", or None while still starting."""
    if proc.poll() is not None:
        return "exited"
    try:
        info = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).info("server")
    except redis.ConnectionError:
        return None
    return "ready" if info.get("process_id") == proc.pid else "exited"  # someone else's server on that port


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """Start redis-server (no persistence); yields its port; stops it afterwards."""
    binary = require_tool("redis-server", "redis-server")
    for _attempt in range(ATTEMPTS):
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            state = wait_until(lambda proc=proc, port=port: _answers(proc, port), "redis-server to answer", DEADLINE)
            if state == "ready":
                yield port
                return
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=30)
    raise AssertionError(f"redis-server did not start on a free port in {ATTEMPTS} attempts")
