"""The RSA thread pool on a real event loop with real RSA keys: every job answered with its own
context, failures as error answers, batches sized by queue depth, and results of a slow batch not
held back for long."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import threading
import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from keyless.keys.store import LocalKeyHandle
from keyless.protocol import ErrorCode, Opcode
from keyless.server.dispatch import Answer, HookJob
from keyless.server.pool import DEPTH_SHARE, MAX_BATCH, MAX_HOLD_SECONDS, CryptoPool, Done, PoolItem, batch_budget

DIGEST = hashlib.sha256(b"pool").digest()
PSS = int(Opcode.RSA_PSS_SIGN_SHA256)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def run_pool(threads: int, items: list[PoolItem], timeout: float = 30.0,
             on_result: Callable[[Done], None] | None = None,
             clock: Callable[[], float] = time.perf_counter) -> list[list[Done]]:
    """Submit ``items`` at once on a fresh loop; returns the ``on_done`` calls in order."""
    loop = asyncio.new_event_loop()
    calls: list[list[Done]] = []
    expected = len(items)

    def on_done(results: list[Done]) -> None:
        calls.append(results)
        for result in results:
            if on_result is not None:
                on_result(result)
        if sum(map(len, calls)) >= expected:
            loop.stop()

    pool = CryptoPool(loop, threads, on_done, clock=clock)
    try:
        loop.call_soon(pool.submit, items)
        loop.call_later(timeout, loop.stop)  # only decides failure
        loop.run_forever()
    finally:
        pool.close()
        loop.close()
    return calls


def test_every_job_is_answered_once_with_its_context(rsa_key: rsa.RSAPrivateKey) -> None:
    handle = LocalKeyHandle(rsa_key, "test")
    items: list[PoolItem] = [(("job", i), handle, PSS, DIGEST) for i in range(100)]
    started = time.perf_counter()
    calls = run_pool(2, items)
    whole_run = time.perf_counter() - started
    results = [result for call in calls for result in call]
    assert sorted(context[1] for context, _, _ in results) == list(range(100))
    public = rsa_key.public_key()
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    for _, outcome, exec_seconds in results:
        assert isinstance(outcome, bytes)
        public.verify(outcome, DIGEST, pss, utils.Prehashed(hashes.SHA256()))
        assert 0 < exec_seconds < whole_run  # seconds spent on this job, measured inside the run


def test_a_failing_job_is_an_error_answer_and_its_neighbours_succeed(rsa_key: rsa.RSAPrivateKey) -> None:
    handle = LocalKeyHandle(rsa_key, "test")
    items: list[PoolItem] = [
        ("good", handle, PSS, DIGEST),
        ("short digest", handle, PSS, DIGEST[:20]),
        ("hook", HookJob(lambda: b"sealed"), int(Opcode.SEAL), b"x"),
        ("good too", handle, PSS, DIGEST),
    ]
    outcomes = {context: outcome for call in run_pool(1, items) for context, outcome, _ in call}
    assert isinstance(outcomes["good"], bytes) and isinstance(outcomes["good too"], bytes)
    failed = outcomes["short digest"]
    assert isinstance(failed, Answer) and failed.opcode == Opcode.ERROR and failed.error == ErrorCode.CRYPTO_FAILED
    assert outcomes["hook"] == Answer(Opcode.RESPONSE, b"sealed")


def test_batch_budget_grows_with_queue_depth() -> None:
    assert batch_budget(0, 2) == 0
    assert batch_budget(2 * DEPTH_SHARE - 1, 2) == 0  # a short queue: one submission per batch
    assert batch_budget(2 * DEPTH_SHARE * 5, 2) == 5
    assert batch_budget(10_000, 2) == MAX_BATCH


class ManualClock:
    """The pool's clock, moved only by the test: batch hand-over decisions depend on what the jobs do,
    not on how fast this machine runs them."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def consecutive_groups(sizes: list[int], deliveries: list[int]) -> bool:
    """True when ``deliveries`` splits ``sizes`` into runs of whole consecutive batches."""
    position = 0
    for delivered in deliveries:
        total = 0
        while total < delivered and position < len(sizes):
            total += sizes[position]
            position += 1
        if total != delivered:
            return False
    return position == len(sizes)


def test_consecutive_groups() -> None:
    assert consecutive_groups([1, 32, 16], [33, 16]) and consecutive_groups([1, 32, 16], [1, 32, 16])
    assert not consecutive_groups([1, 32, 16], [1, 48 - 16, 15]) and not consecutive_groups([1, 32], [1, 16, 16])


def test_a_deep_queue_is_worked_off_in_large_batches(rsa_key: rsa.RSAPrivateKey) -> None:
    """300 jobs queued while the only worker is held busy: once released it takes several 16-job submissions
    per batch while the queue is deep, then one at a time. The worker is blocked deliberately so that the whole
    queue is there before it looks, and the clock stands still so that no batch is handed over early: the batch
    sizes are determined by the queue, not raced against this machine's speed."""
    handle = LocalKeyHandle(rsa_key, "test")
    started, release = threading.Event(), threading.Event()
    # What is still queued when each job runs: every job of a batch sees the same number (the worker took the
    # whole batch before running it), so the runs of equal numbers are the batches.
    queued_when_run: list[int] = []
    sign = handle.execute

    def execute(opcode: int, payload: bytes) -> bytes:
        queued_when_run.append(pool.queued)
        return sign(opcode, payload)

    handle.execute = execute

    def blocker() -> bytes:
        started.set()
        return b"released" if release.wait(30) else b"never released"

    loop = asyncio.new_event_loop()
    deliveries: list[list[Done]] = []

    def on_done(results: list[Done]) -> None:
        deliveries.append(results)
        if sum(map(len, deliveries)) == 301:
            loop.stop()

    pool = CryptoPool(loop, 1, on_done, clock=ManualClock())
    try:
        pool.submit([("blocker", HookJob(blocker), int(Opcode.CUSTOM), b"")])
        assert started.wait(30), "the worker never took the blocking job"
        pool.submit([(i, handle, PSS, DIGEST) for i in range(300)])  # 18 submissions of 16, one of 12
        release.set()
        loop.call_later(60, loop.stop)  # only decides failure
        loop.run_forever()
    finally:
        release.set()
        pool.close()
        loop.close()
    results = [result for delivery in deliveries for result in delivery]
    assert sorted(context for context, _, _ in results if context != "blocker") == list(range(300))
    assert all(isinstance(outcome, bytes) for context, outcome, _ in results if context != "blocker")
    # batch_budget: 1/4 of the queue, at most MAX_BATCH, so two submissions per batch while 128+ jobs wait.
    batches = [MAX_BATCH] * 7 + [16] * 4 + [12]
    assert [len(list(run)) for _, run in itertools.groupby(queued_when_run)] == batches, queued_when_run
    sizes = [len(delivery) for delivery in deliveries]
    # One wake-up may collect several finished batches (the blocker's among them), never part of one.
    assert consecutive_groups([1, *batches], sizes), f"deliveries {sizes} are not whole batches of {batches}"


def test_a_slow_batch_hands_over_finished_results_early() -> None:
    """The first job of a batch takes longer than MAX_HOLD_SECONDS on the pool's clock; the second waits until
    the event loop has the first one's result, which it only gets if the pool does not hold it for the whole
    batch."""
    first_delivered = threading.Event()
    clock = ManualClock()

    def slow_first() -> bytes:
        clock.now += MAX_HOLD_SECONDS * 1.5
        return b"first"

    def waits_for_first() -> bytes:
        return b"second" if first_delivered.wait(30) else b"second, after the first was held back"

    def on_result(result: Done) -> None:
        if result[0] == "first":
            first_delivered.set()

    items: list[PoolItem] = [
        ("first", HookJob(slow_first), int(Opcode.CUSTOM), b""),
        ("second", HookJob(waits_for_first), int(Opcode.CUSTOM), b""),
    ]
    calls = run_pool(1, items, on_result=on_result, clock=clock)
    outcomes = {context: outcome for call in calls for context, outcome, _ in call}
    assert outcomes == {"first": Answer(Opcode.RESPONSE, b"first"), "second": Answer(Opcode.RESPONSE, b"second")}
