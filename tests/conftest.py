"""Shared test helpers.

Tests that need a system package skip with a clear reason on a developer's laptop, but CI sets
KEYLESS_REQUIRE_ALL=1, under which such a skip is a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ALL = os.environ.get("KEYLESS_REQUIRE_ALL") == "1"


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
