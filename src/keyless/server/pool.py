"""A small thread pool for RSA (and hook) jobs, tuned for many tiny jobs.

``cryptography`` and OpenSSL release the GIL during RSA, so threads give real parallelism. Compared
with ``loop.run_in_executor`` per job (a Future, a callback and a self-pipe write each), this takes
jobs in batches and hands results back to the event loop with one ``call_soon_threadsafe`` per
batch, which keeps the per-request overhead small next to a 0.2 ms RSA-2048 signature.
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
from keyless.server.dispatch import Answer, HookJob, perform

# One job: an opaque context handed back with the result, what to run, the opcode and the payload.
PoolItem = tuple[Any, KeyHandle | HookJob, int, bytes | None]
# One finished job: its context, the answer, and seconds spent running it.
Done = tuple[Any, Answer, float]


class CryptoPool:
    """``submit(items)`` runs each item on a worker thread; ``on_done(results)`` is called on the
    event loop with a list of ``(context, answer, exec_seconds)``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int, on_done: Callable[[list[Done]], None]) -> None:
        self._loop = loop
        self._on_done = on_done
        self._queue: queue.SimpleQueue[list[PoolItem] | None] = queue.SimpleQueue()
        # Finished batches wait here; one loop wake-up collects every batch finished meanwhile, so
        # several workers finishing together cost one wake-up and one write per connection.
        self._finished: collections.deque[list[Done]] = collections.deque()
        self._wakeup_pending = False
        self._wakeup_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"keyless-rsa-{i}", daemon=True) for i in range(max(1, threads))
        ]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        return len(self._threads)

    def submit(self, items: Sequence[PoolItem]) -> None:
        """Queue ``items`` split into one batch per thread (at most 16 jobs per batch, so one
        batch does not keep a slow job's neighbours waiting long)."""
        count = len(items)
        if count == 0:
            return
        chunk = min(16, max(1, -(-count // len(self._threads))))
        for start in range(0, count, chunk):
            self._queue.put(list(items[start : start + chunk]))

    def _work(self) -> None:
        get = self._queue.get
        perf = time.perf_counter
        while True:
            batch = get()
            if batch is None:
                return
            results: list[Done] = []
            for context, target, opcode, payload in batch:
                started = perf()
                answer = perform(target, opcode, payload)
                results.append((context, answer, perf() - started))
            self._finished.append(results)
            with self._wakeup_lock:
                if self._wakeup_pending:
                    continue
                self._wakeup_pending = True
            try:
                self._loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop closed during shutdown: nobody is waiting any more
                return

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
