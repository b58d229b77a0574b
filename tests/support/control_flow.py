"""Which Python code runs, instruction by instruction: a deterministic check that a secret-dependent input does
not change the path through our code (an early exit, a branch on a padding byte).

Timing itself is measured in bench/premaster_timing.py: a statistical measurement on a shared machine can be
swamped by other load, so it does not decide a test. What a test can decide is the cause of the classic timing
leaks in Python code — a different sequence of bytecode instructions for different secret inputs. This records
the instructions executed in our own source files (src/keyless and tests/; the standard library and C
extensions are not traced, their running time is the bench's business).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

_ROOT = Path(__file__).resolve().parents[2]
_OURS = (str(_ROOT / "src" / "keyless"), str(_ROOT / "tests"))
_THIS_FILE = str(Path(__file__).resolve())

Step = tuple[str, str, int]  # (file, function, bytecode offset)


def instruction_trace(function: Callable[..., Any], *args: Any) -> list[Step]:
    """Run ``function(*args)`` and return the bytecode instructions executed in our own files, in order."""
    steps: list[Step] = []
    code_is_ours: dict[Any, bool] = {}

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        ours = code_is_ours.get(code)
        if ours is None:
            ours = code_is_ours[code] = code.co_filename.startswith(_OURS) and code.co_filename != _THIS_FILE
        if not ours:
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return on_step

    def on_step(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            steps.append((frame.f_code.co_filename, frame.f_code.co_qualname, frame.f_lasti))
        return on_step

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        function(*args)
    finally:
        sys.settrace(previous)
    return steps


def first_difference(a: list[Step], b: list[Step]) -> str:
    """Where two traces part, for an assertion message."""
    for index, (step_a, step_b) in enumerate(zip(a, b, strict=False)):
        if step_a != step_b:
            return f"instruction {index}: {step_a} vs {step_b}"
    return f"one trace is a prefix of the other ({len(a)} vs {len(b)} instructions)"
