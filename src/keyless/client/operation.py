"""One key operation carried to an answer over the key servers: attempts, hedges, retries.

An operation starts one attempt on the endpoint the client chooses, then waits for the first of:
- an attempt's outcome: an answer wins (the other attempts are cancelled); a "try elsewhere" error
  (overloaded) or a failed connect moves the operation to another server at no retry cost, and the
  server that shed it is never tried again by this operation; a broken connection or a timeout costs a
  retry (at most ``retries``), as before hedging existed;
- the hedge delay of the newest attempt's server: a hedge goes to another healthy server if the
  budget allows (at most ``max_hedges``);
- the server of a running attempt going down (ejected, missed ping): the operation is sent elsewhere at
  once, outside the hedge budget (the answer it waits for will most likely never come).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from keyless.client.errors import (
    ConnectFailed,
    ConnectionLost,
    KeylessClientError,
    KeyServerError,
    NoServerAvailable,
    OperationTimeout,
    ResponseError,
    error_for_code,
)
from keyless.protocol import ErrorCode, Opcode

if TYPE_CHECKING:
    from keyless.client.core import Answer, Request
    from keyless.client.endpoint import Endpoint
    from keyless.client.resilience import HedgeBudget, HedgePolicy

# Answers that mean "this server will not do it now; another may": the operation moves on, never back.
TRY_ELSEWHERE = frozenset({ErrorCode.OVERLOADED})
MAX_HEDGES = 1  # copies beyond the first sent on a timer (rescues of a down server's attempts are extra)


class Chooser(Protocol):
    """What an operation needs of ``KeylessClient``."""

    retries: int
    hedge_policy: HedgePolicy
    hedge_budget: HedgeBudget

    @property
    def endpoint_count(self) -> int: ...

    def choose(self, exclude: list[Endpoint], *, healthy_only: bool = False) -> Endpoint | None: ...

    def attempt_failed(self, endpoint: Endpoint, reason: str) -> None: ...


class Attempt:
    __slots__ = ("endpoint", "future", "hedge", "rescued", "started")

    def __init__(self, endpoint: Endpoint, future: asyncio.Future[Answer], started: float, hedge: bool) -> None:
        self.endpoint = endpoint
        self.future = future
        self.started = started
        self.hedge = hedge
        self.rescued = False  # its endpoint went down and a copy was sent elsewhere


async def _acquire_and_submit(endpoint: Endpoint, request: Request, deadline: float) -> Answer:
    connection = await endpoint.acquire(deadline)
    return await connection.submit(request, deadline)


class Operation:
    def __init__(self, client: Chooser, request: Request, attempt_timeout: float, deadline: float | None) -> None:
        self.client = client
        self.request = request
        self.attempt_timeout = attempt_timeout
        self.deadline = deadline
        self.loop = asyncio.get_running_loop()
        self.running: list[Attempt] = []
        self.tried: list[Endpoint] = []  # endpoints this operation used or crossed off
        self.shed_by: list[Endpoint] = []  # endpoints that answered "try elsewhere": never again
        self.retries_left = client.retries
        self.hedges = 0
        self.launches = 0
        self.last_error: KeylessClientError | None = None
        self.watching: set[Endpoint] = set()  # endpoints whose going down wakes this operation
        self._wake: asyncio.Future[None] | None = None

    async def run(self) -> Answer:
        self.client.hedge_budget.earn()
        try:
            return await self._run()
        finally:
            for attempt in self.running:
                attempt.future.cancel()  # the losers: their IDs are abandoned, late answers dropped
            for endpoint in self.watching:
                endpoint.unwatch_down(self._poke)

    def _poke(self, *_: object) -> None:
        """Something the operation waits for happened: an attempt finished, a server went down, or the
        hedge delay passed (one wake-up future per operation: cheaper than asyncio.wait per step)."""
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _needs_rescue(self, attempt: Attempt) -> bool:
        return not attempt.rescued and attempt.endpoint in self.watching and not attempt.endpoint.healthy

    async def _run(self) -> Answer:
        loop = self.loop
        # Bounded: each launch either sends or crosses off an endpoint, retries and hedges are capped.
        max_launches = 2 * self.client.endpoint_count + self.client.retries + MAX_HEDGES + 1
        while True:
            if not self.running and (self.launches >= max_launches or not self._launch(hedge=False)):
                break
            hedge_at = self._hedge_time()
            ready = any(a.future.done() or self._needs_rescue(a) for a in self.running)
            if not ready and (hedge_at is None or loop.time() < hedge_at):
                self._wake = loop.create_future()
                timer = None if hedge_at is None else loop.call_at(hedge_at, self._poke)
                try:
                    await self._wake
                finally:
                    self._wake = None
                    if timer is not None:
                        timer.cancel()
            for attempt in [a for a in self.running if a.future.done()]:
                self.running.remove(attempt)
                answer = self._outcome(attempt)
                if answer is not None:
                    return answer
            for attempt in list(self.running):
                if self._needs_rescue(attempt):
                    attempt.rescued = True  # its server went down: the answer will most likely never come
                    if self._launch(hedge=True, healthy_only=True):
                        attempt.endpoint.hedged += 1
            if hedge_at is not None and loop.time() >= hedge_at and self.hedges < MAX_HEDGES:
                self._hedge()
        if isinstance(self.last_error, OperationTimeout | KeyServerError):
            raise self.last_error  # a timeout, or every server it reached shed it (OverloadedError)
        if self.last_error is None and self.deadline is not None:
            raise OperationTimeout("the call's deadline passed before an answer")
        raise NoServerAvailable(f"no key server could carry the operation ({self.last_error})")

    # -- launching --------------------------------------------------------------------------------

    def _launch(self, *, hedge: bool, healthy_only: bool = False) -> bool:
        """Start an attempt on a server chosen among those not tried; False when there is none or the
        call's deadline has passed."""
        now = self.loop.time()
        if self.deadline is not None and now >= self.deadline:
            return False
        exclude = self.tried + self.shed_by
        endpoint = self.client.choose(exclude, healthy_only=healthy_only)
        if endpoint is None and not hedge and self.tried:
            # Every endpoint was tried once: a broken connection may be retried over a fresh connection
            # to a healthy server, never onto one that shed the operation.
            endpoint = self.client.choose(self.shed_by, healthy_only=True)
        if endpoint is None:
            return False
        deadline = now + self.attempt_timeout if self.deadline is None else min(now + self.attempt_timeout,
                                                                                  self.deadline)
        connection = endpoint.connection_now()
        future: asyncio.Future[Answer]
        if connection is not None:
            future = connection.submit(self.request, deadline)
        else:
            future = self.loop.create_task(_acquire_and_submit(endpoint, self.request, deadline))
        endpoint.in_flight += 1
        future.add_done_callback(lambda _: _finished(endpoint))
        future.add_done_callback(self._poke)
        if endpoint.healthy and endpoint not in self.watching:
            self.watching.add(endpoint)
            endpoint.watch_down(self._poke)
        self.running.append(Attempt(endpoint, future, now, hedge))
        if endpoint not in self.tried:
            self.tried.append(endpoint)
        self.launches += 1
        return True

    def _hedge_time(self) -> float | None:
        policy = self.client.hedge_policy
        if not policy.enabled or self.hedges >= MAX_HEDGES or not self.running:
            return None
        newest = self.running[-1]
        return newest.started + newest.endpoint.hedge_delay(policy)

    def _hedge(self) -> None:
        slow = self.running[-1].endpoint if self.running else None
        if slow is None or self.client.choose(self.tried + self.shed_by, healthy_only=True) is None:
            self.hedges = MAX_HEDGES  # nowhere to hedge to: stop the timer
            return
        if not self.client.hedge_budget.spend():
            self.hedges = MAX_HEDGES
            return
        self.hedges += 1
        if self._launch(hedge=True, healthy_only=True):
            slow.hedged += 1

    # -- outcomes ---------------------------------------------------------------------------------

    def _outcome(self, attempt: Attempt) -> Answer | None:
        """The answer to return, or None to keep going (raises when the operation has failed)."""
        endpoint = attempt.endpoint
        future = attempt.future
        error = None if future.cancelled() else future.exception()
        if future.cancelled() or (error is not None and not isinstance(error, KeylessClientError)):
            raise error or asyncio.CancelledError()
        if error is None:
            answer = future.result()
            if answer.opcode == Opcode.ERROR and answer.error_code in TRY_ELSEWHERE:
                endpoint.shed += 1
                self.shed_by.append(endpoint)
                self.last_error = error_for_code(answer.error_code or 0, endpoint.label)
                return None
            endpoint.record_answer(self.loop.time() - attempt.started)
            endpoint.readmit(self.loop.time())  # it answered (tried when all were down): back, unless ejected
            if attempt.hedge:
                endpoint.hedge_won += 1
            for other in self.running:
                if other.started <= attempt.started and not other.rescued:
                    # It was outrun by a copy sent after it: one failure towards its ejection.
                    self.client.attempt_failed(other.endpoint, "slower than a hedge sent after it")
            if answer.opcode == Opcode.ERROR:
                raise error_for_code(answer.error_code or 0, endpoint.label)
            return answer
        assert isinstance(error, KeylessClientError)
        self.last_error = error
        if isinstance(error, ConnectFailed):
            endpoint.mark_down(str(error))
            return None  # nothing was sent: costs no retry
        if isinstance(error, ConnectionLost | ResponseError):
            if self.running:
                return None
            if self.retries_left <= 0:
                raise error
            self.retries_left -= 1
            return None
        if isinstance(error, OperationTimeout):
            self.client.attempt_failed(endpoint, "operation timed out")
            if self.running:
                return None
            if self.retries_left <= 0 or self.deadline is None or self.loop.time() >= self.deadline:
                raise error
            self.retries_left -= 1
            return None
        return None


def _finished(endpoint: Endpoint) -> None:
    endpoint.in_flight -= 1


__all__ = ["MAX_HEDGES", "TRY_ELSEWHERE", "Operation"]
