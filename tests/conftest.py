"""Shared test helpers.

Tests that need a system package skip with a clear reason on a developer's laptop, but CI sets
KEYLESS_REQUIRE_ALL=1, under which such a skip is a failure.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

REQUIRE_ALL = os.environ.get("KEYLESS_REQUIRE_ALL") == "1"

# Tests assert behaviour, never speed (CONTRIBUTING.md): no per-example deadline (hypothesis' default is
# 200 ms) and no "generation too slow" health check, both of which a loaded 2-core CI runner can trip.
settings.register_profile("keyless", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("keyless")


def require_tool(name: str, package: str | None = None) -> str:
    """Return the path of executable ``name``, or skip (fail under KEYLESS_REQUIRE_ALL=1)."""
    path = shutil.which(name)
    if path is None:
        hint = f" (Debian package {package!r})" if package else ""
        message = f"{name} is not installed{hint}"
        if REQUIRE_ALL:
            pytest.fail(f"KEYLESS_REQUIRE_ALL=1 but {message}")
        pytest.skip(message)
    return path


def require(condition: bool, reason: str) -> None:
    """Skip (fail under KEYLESS_REQUIRE_ALL=1) unless ``condition`` holds."""
    if not condition:
        if REQUIRE_ALL:
            pytest.fail(f"KEYLESS_REQUIRE_ALL=1 but {reason}")
        pytest.skip(reason)


# --- abandoned asyncio tasks -------------------------------------------------------------------------
# asyncio reports a task garbage-collected while pending (a client or server not closed by a test) only as
# a log line, which pytest hides for passing tests. Collect them and fail the run, naming the test.

ABANDONED_TASK_MESSAGES = ("Task was destroyed but it is pending", "Task exception was never retrieved")


class _AbandonedTaskAlarm(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.current_test = "(collection)"
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(ABANDONED_TASK_MESSAGES):
            self.seen.append(f"{self.current_test}: {' | '.join(message.splitlines()[:2])[:300]}")


_ALARM = _AbandonedTaskAlarm()
logging.getLogger("asyncio").addHandler(_ALARM)


@pytest.fixture(autouse=True)
def _name_the_test_for_the_task_alarm(request: pytest.FixtureRequest) -> None:
    # A task is reported when it is collected: during its test, or (if it sat in a cycle) a little later.
    _ALARM.current_test = f"{request.node.nodeid} (or just before)"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _ALARM.current_test = "(end of session: a test that left a task in a reference cycle)"
    gc.collect()  # tasks that sat in reference cycles are reported now, not after pytest has finished
    if _ALARM.seen and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _ALARM.seen:
        terminalreporter.section("asyncio tasks abandoned by tests", red=True)
        for line in _ALARM.seen:
            terminalreporter.line(line)

