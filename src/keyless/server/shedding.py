"""Load shedding: answer "overloaded" (0xC0) at once rather than let a request age in a queue.

The queue that forms on an overloaded key server is the crypto pool's (RSA operations and hooks; ECDSA
and Ed25519 run inline on the event loop, where a backlog waits in the socket, unseen). Before a job
joins it, the expected wait is estimated as ``(queued + 1) x service time / threads``, the service time
being a moving average of the pool's recent execution times. When that exceeds ``shed_queue_time``,
the request is answered 0xC0 without being done: the client sends it to another key server (and never
back here), and the work this server accepts keeps its latency.

Off by default (``shed_queue_time: 0``): a client that does not know 0xC0 (the reference edge) would
count it as a failure. Turn it on where every client is ``keyless.client``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from keyless.protocol import ErrorCode
from keyless.server.dispatch import Answer, error

OVERLOADED: Answer = error(ErrorCode.OVERLOADED, "shed: the queue of work is longer than shed_queue_time")
_WEIGHT = 0.1  # of the newest execution time in the average: about the last 20 jobs count


class LoadShedder:
    __slots__ = ("bound", "service_time", "shed", "threads")

    def __init__(self, bound: float, threads: int) -> None:
        self.bound = bound  # seconds of expected queueing above which requests are shed; 0: never
        self.threads = max(1, threads)
        self.service_time = 0.0  # no sample yet: nothing is shed until the pool has done some work
        self.shed = 0

    def observe(self, results: Iterable[tuple[Any, Any, float]]) -> None:
        """The pool's finished jobs: (context, outcome, execution seconds)."""
        if self.bound <= 0:
            return
        average = self.service_time
        for _, _, seconds in results:
            average = seconds if average == 0.0 else average + _WEIGHT * (seconds - average)
        self.service_time = average

    def should_shed(self, queued: int) -> bool:
        """True when a job joining a queue of ``queued`` would wait longer than the bound."""
        if self.bound <= 0 or (queued + 1) * self.service_time <= self.bound * self.threads:
            return False
        self.shed += 1
        return True


__all__ = ["OVERLOADED", "LoadShedder"]
