"""A small thread pool for RSA (and hook) jobs, tuned for many tiny jobs.

``cryptography`` and OpenSSL release the GIL during RSA, so threads give real parallelism. Compared
with ``loop.run_in_executor`` per job (a Future, a callback and a self-pipe write each), this takes
jobs in batches and hands each batch's results back to the event loop with one
``call_soon_threadsafe``.

What a batch costs the event loop is mostly fixed: a wake-up, then one TLS write and one send per
connection with a reply in it (and, from a busy edge, the read of the requests those replies
provoke). So the number of jobs per batch decides the server's overhead: measured with
bench/keyserver.py, one or two RSA-2048 jobs per batch cost the loop about 28 µs per job next to
the job's 216 µs, thirty about 9 µs. A worker therefore takes more than one queued submission when
the queue is deep, in proportion to its depth. A batch of ``b`` jobs holds its first result back
for ``b`` jobs' time; taking at most 1/``DEPTH_SHARE`` of the worker's share of the queue keeps that
below a quarter of what the requests at the back of the queue wait anyway, and ``MAX_HOLD_SECONDS``
bounds it for slow keys. A lightly loaded server (short queue) keeps batches of one submission and
answers as soon as each job finishes.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from keyless.keys.store import KeyHandle
from keyless.server.dispatch import Answer, HookJob, failure, perform

# One job: an opaque context handed back with the result, what to run, the opcode and the payload.
PoolItem = tuple[Any, KeyHandle | HookJob, int, bytes | None]
# One finished job: its context, the outcome (the key operation's output, or an Answer for a hook
# or an error), and seconds spent running it.
Done = tuple[Any, bytes | Answer, float]

# Jobs per queue submission: a read's jobs are split into submissions of at most this many, and
# at least one per thread, so that idle threads share a large read.
SUBMISSION_SIZE = 16
# Upper bound of a worker batch (32 RSA-2048 signatures take about 7 ms)...
MAX_BATCH = 32
# ... and of the time a finished result waits for the rest of its batch (RSA-4096 is 1.6 ms a job).
MAX_HOLD_SECONDS = 0.008
# A worker takes at most 1/DEPTH_SHARE of its share of the queued jobs into one batch.
DEPTH_SHARE = 4


def batch_budget(queued: int, threads: int, max_batch: int = MAX_BATCH) -> int:
    """How many jobs a worker may gather into one batch while ``queued`` jobs wait for ``threads``
    workers: 1/DEPTH_SHARE of its share, at most ``max_batch`` (0: take no more than one submission)."""
    return max(0, min(max_batch, queued // (threads * DEPTH_SHARE)))


class CryptoPool:
    """``submit(items)`` runs each item on a worker thread; ``on_done(results)`` is called on the
    event loop with a list of ``(context, outcome, exec_seconds)``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int, on_done: Callable[[list[Done]], None],
                 max_batch: int = MAX_BATCH, clock: Callable[[], float] = time.perf_counter) -> None:
        self._loop = loop
        self._clock = clock  # what the hold bound and exec_seconds are measured with (tests pass their own)
        self._on_done = on_done
        self._max_batch = max(1, max_batch)
        self._queue: queue.SimpleQueue[list[PoolItem] | None] = queue.SimpleQueue()
        count = max(1, threads)
        # The queue's depth in jobs, without a shared counter: each number has exactly one writer
        # (the loop thread counts submissions, worker i what it took), so no update is lost; a
        # stale read only shifts one batch's size.
        self._submitted = 0
        self._taken = [0] * count
        # Finished batches wait here; one loop wake-up collects every batch finished meanwhile, so
        # several workers finishing together cost one wake-up and one write per connection.
        self._finished: collections.deque[list[Done]] = collections.deque()
        self._wakeup_pending = False
        self._wakeup_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"keyless-rsa-{i}", daemon=True) for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        return len(self._threads)

    @property
    def queued(self) -> int:
        """Jobs submitted and not yet taken by a worker (approximate while workers run)."""
        return self._submitted - sum(self._taken)

    def submit(self, items: Sequence[PoolItem]) -> None:
        """Queue ``items`` (called on the event loop only)."""
        count = len(items)
        if count == 0:
            return
        self._submitted += count
        chunk = min(SUBMISSION_SIZE, max(1, -(-count // len(self._threads))))
        for start in range(0, count, chunk):
            self._queue.put(list(items[start : start + chunk]))

    def _take(self, index: int) -> list[PoolItem] | None:
        """Wait for one submission, then add queued ones while the queue is deep (see the module
        docstring). None when the pool is closing."""
        jobs = self._queue
        batch = jobs.get()
        if batch is None:
            return None
        taken = self._taken
        taken[index] += len(batch)
        budget = batch_budget(self._submitted - sum(taken), len(taken), self._max_batch)
        while len(batch) < budget and not jobs.empty():
            more = jobs.get()
            if more is None:  # closing: put the marker back for this thread's next take
                jobs.put(None)
                break
            taken[index] += len(more)
            batch += more
        return batch

    def _work(self, index: int) -> None:
        perf = self._clock
        while True:
            batch = self._take(index)
            if batch is None:
                return
            results: list[Done] = []
            held_since = perf()
            for context, target, opcode, payload in batch:
                started = perf()
                outcome: bytes | Answer
                if isinstance(target, HookJob):
                    outcome = perform(target, opcode, payload)
                else:
                    try:
                        outcome = target.execute(opcode, payload if payload is not None else b"")
                    except Exception as exc:  # a key backend bug must cost one request, not the pool
                        outcome = failure(exc)
                finished = perf()
                results.append((context, outcome, finished - started))
                if finished - held_since > MAX_HOLD_SECONDS and len(results) < len(batch):
                    if not self._publish(results):
                        return
                    results = []
                    held_since = finished
            if not self._publish(results):
                return

    def _publish(self, results: list[Done]) -> bool:
        """Hand ``results`` to the event loop; False once the loop is gone."""
        self._finished.append(results)
        with self._wakeup_lock:
            if self._wakeup_pending:
                return True
            self._wakeup_pending = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop closed during shutdown: nobody is waiting any more
            return False
        return True

    def _deliver(self) -> None:
        """On the event loop: hand every finished batch to ``on_done`` in one call."""
        with self._wakeup_lock:
            self._wakeup_pending = False
        finished = self._finished
        results: list[Done] = []
        while finished:
            results.extend(finished.popleft())
        if results:
            self._on_done(results)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
