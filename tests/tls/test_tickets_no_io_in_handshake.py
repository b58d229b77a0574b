"""Issue 13: the engine reads no files and no stores during a handshake — ``TicketKeyRing.seal``/``open`` only
use the keys in memory, however overdue a refresh is; the daemon's timer task (``refresh_ticket_keys``)
re-reads the source, in a thread, and follows the ring a reload installs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from keyless.tls.asyncio_adapter import refresh_ticket_keys
from keyless.tls.tickets import SessionState, TicketKey, TicketKeyRing


class CountingSource:
    """A source that records every load and the thread it ran on."""

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.keys = [TicketKey.generate()]

    def load(self, now: float) -> Sequence[TicketKey]:
        self.loads.append(threading.current_thread().name)
        return list(self.keys)

    def next_change(self, now: float) -> float:
        return now + 3600


def state(now: float) -> SessionState:
    return SessionState(version=0x0304, cipher_suite=0x1301, secret=b"s" * 32, created_at=now, lifetime=7200)


def test_seal_and_open_never_read_the_source() -> None:
    clock = [1000.0]
    source = CountingSource()
    ring = TicketKeyRing(source, now=lambda: clock[0], refresh_interval=60)
    assert len(source.loads) == 1  # at construction: start-up, not a handshake
    clock[0] += 10 * 3600  # long overdue
    assert ring.refresh_due
    for _ in range(5):
        assert ring.open(ring.seal(state(clock[0]))) is not None
    assert len(source.loads) == 1


def test_the_timer_task_refreshes_in_a_thread_and_follows_a_new_ring() -> None:
    clock = [1000.0]
    first_source, second_source = CountingSource(), CountingSource()
    rings = [TicketKeyRing(first_source, now=lambda: clock[0], refresh_interval=60)]

    async def main() -> None:
        task = asyncio.create_task(refresh_ticket_keys(lambda: rings[-1], interval=0.01))
        clock[0] += 61
        for _ in range(500):  # polled with a generous bound; the task wakes every 10 ms
            if len(first_source.loads) >= 2:
                break
            await asyncio.sleep(0.01)
        rings.append(TicketKeyRing(second_source, now=lambda: clock[0], refresh_interval=60))  # a reload
        clock[0] += 61
        for _ in range(500):
            if len(second_source.loads) >= 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(main())
    assert len(first_source.loads) >= 2 and len(second_source.loads) >= 2
    main_thread = threading.main_thread().name
    assert all(name != main_thread for name in first_source.loads[1:] + second_source.loads[1:])
