"""What every fuzz target shares: the ``Target`` record, the failure type, and helpers to cut one fuzz input
into the pieces a target needs (split points for chunked reads, a selector byte).

A target is a function ``one_input(data: bytes) -> None`` that returns for every input the code under test
handles correctly (a parsed value, the protocol's own error with the right alert or error code, a clean
close) and raises for anything else: an unexpected exception escapes as itself, a broken invariant as
``Finding``. libFuzzer (through atheris) records the input that raised as a crash artifact; the per-input
time limit and the RSS limit of the runner catch unbounded time and memory.

Targets never sleep, never touch the network and keep no state between inputs beyond what ``setup`` builds
once (keys, configs); that is what makes a crash reproducible from its input alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


class Finding(AssertionError):
    """An input broke a target's invariant (not merely: the parser rejected it)."""


@dataclass(frozen=True)
class Target:
    name: str
    one_input: Callable[[bytes], None]
    family: str
    description: str
    setup: Callable[[], None] = field(default=lambda: None)
    max_len: int = 4096  # libFuzzer -max_len: enough for the largest seed of the family


class RaiseOnBug(logging.Handler):
    """Turn the engine's "bug: unexpected exception" log lines into a Finding at the point they are logged.

    ``TLSServerConnection`` converts any unexpected exception into an internal_error alert and logs it
    (so one bad connection cannot take a server down); for the fuzzer that log line *is* the crash, and
    raising from inside ``log.exception`` keeps the original traceback chained to the Finding.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("bug"):
            raise Finding(message)


_BUG_HANDLER = RaiseOnBug()


def raise_on_bug_logs(*loggers: str) -> None:
    for name in loggers:
        logger = logging.getLogger(name)
        if _BUG_HANDLER not in logger.handlers:
            logger.addHandler(_BUG_HANDLER)


def quiet_logs() -> None:
    """Warnings a target provokes on purpose (an origin failing, say) are not findings: keep ERROR and up,
    where the engine's "bug:" lines are."""
    logging.getLogger("keyless").setLevel(logging.ERROR)
    raise_on_bug_logs("keyless")


def chunks(data: bytes, size_byte: int) -> Iterator[bytes]:
    """``data`` in pieces of ``size_byte`` + 1 bytes (0xFF: in one piece), as a socket might deliver it."""
    if size_byte == 0xFF or not data:
        yield data
        return
    step = size_byte + 1
    for start in range(0, len(data), step):
        yield data[start : start + step]


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Finding(message)
