"""Waiting for something to happen, the one way tests do it: poll the state until it holds, with a deadline
generous enough for a loaded CI machine several times slower than a laptop. The deadline only ever decides a
failure; on the normal path the wait ends as soon as the state holds. See CONTRIBUTING.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# How long a test waits for something that normally takes milliseconds before calling it a failure.
DEADLINE = 30.0
# How often the state is polled: short enough not to slow a passing test down.
POLL_INTERVAL = 0.02


def _timed_out(what: str | Callable[[], str], timeout: float) -> str:
    return f"timed out after {timeout:g}s waiting for {what if isinstance(what, str) else what()}"


def wait_until(
    check: Callable[[], T], what: str | Callable[[], str], timeout: float = DEADLINE, interval: float = POLL_INTERVAL
) -> T:
    """Return ``check()``'s first truthy value; fail naming ``what`` (a string, or a function giving one) when
    ``timeout`` seconds pass without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(what, timeout))
        time.sleep(interval)


async def async_wait_until(
    check: Callable[[], T], what: str | Callable[[], str], timeout: float = DEADLINE, interval: float = POLL_INTERVAL
) -> T:
    """``wait_until`` on an event loop: polls without blocking the loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(_timed_out(what, timeout))
        await asyncio.sleep(interval)
