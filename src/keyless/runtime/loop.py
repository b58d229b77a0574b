"""The event loop of a daemon process: which loop, which signals, which port, and the ready line.

- uvloop when installed (``pip install keyless[fast]``: about 8% less CPU per connection here);
  ``KEYLESS_NO_UVLOOP=1`` keeps the standard loop.
- SIGTERM/SIGINT mean "drain and exit", SIGHUP means "reload": ``wire_signals`` installs exactly that.
- ``reserve_port`` binds (without listening) an SO_REUSEPORT socket, so ``port: 0`` resolves to one
  ephemeral port that every worker of a ``--workers N`` group then binds too.
- Every daemon prints one ready line on stdout once it serves, for scripts, tests and service managers::

      keyless <daemon> ready key=value ...
      keyless <daemon> worker ready pid=<pid> key=value ...   (a worker, to its supervisor)
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

NO_UVLOOP_VARIABLE = "KEYLESS_NO_UVLOOP"


def _uvloop_wanted() -> bool:
    return os.environ.get(NO_UVLOOP_VARIABLE) != "1"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when installed and not disabled, asyncio's otherwise."""
    if _uvloop_wanted():
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def run(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run the coroutine ``main()`` on a fresh loop from ``new_event_loop`` and return its exit code; like
    ``asyncio.run``, tasks still pending at the end are cancelled and awaited before the loop closes."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main())


def wire_signals(loop: asyncio.AbstractEventLoop, *, stop: Callable[[], None],
                 reload: Callable[[], None] | None = None) -> None:
    """SIGTERM and SIGINT call ``stop`` (drain, then exit); SIGHUP calls ``reload``."""
    loop.add_signal_handler(signal.SIGTERM, stop)
    loop.add_signal_handler(signal.SIGINT, stop)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` with SO_REUSEPORT without listening: the port is now ours (``port`` 0 picks
    one), and workers binding the same address with SO_REUSEPORT join it. Close it once they listen."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def ready_line(daemon: str, **fields: object) -> str:
    return " ".join([f"keyless {daemon} ready", *(f"{key}={value}" for key, value in fields.items())])


def worker_ready_line(daemon: str, **fields: object) -> str:
    return ready_line(f"{daemon} worker", pid=os.getpid(), **fields)


def parse_ready_fields(line: str) -> dict[str, str]:
    """The ``key=value`` fields of a ready line."""
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def print_ready_line(daemon: str, out: TextIO | None = None, **fields: object) -> None:
    print(ready_line(daemon, **fields), file=out if out is not None else sys.stdout, flush=True)


__all__ = [
    "new_event_loop",
    "parse_ready_fields",
    "print_ready_line",
    "ready_line",
    "reserve_port",
    "run",
    "wire_signals",
    "worker_ready_line",
]
