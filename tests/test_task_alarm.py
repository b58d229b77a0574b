"""The suite's alarm for asyncio tasks that tests abandon (tests/conftest.py) really catches them."""

from __future__ import annotations

import asyncio
import gc

from tests import conftest


def test_a_task_destroyed_while_pending_is_recorded() -> None:
    before = len(conftest._ALARM.seen)

    async def forever() -> None:
        await asyncio.Event().wait()

    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(forever())
        loop.run_until_complete(asyncio.sleep(0))  # the task starts and waits
    finally:
        loop.close()
    del task
    gc.collect()
    try:
        new = conftest._ALARM.seen[before:]
        assert len(new) == 1 and "Task was destroyed but it is pending" in new[0], new
        assert "test_a_task_destroyed_while_pending_is_recorded" in new[0]  # names the test
    finally:
        del conftest._ALARM.seen[before:]  # this one was on purpose: keep the session green
