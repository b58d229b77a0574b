"""Hedging and outlier ejection: the policies, the hedge budget and the latency window they use.

Hedging (as gRPC's hedging policy and Envoy's hedge-on-per-try-timeout): an operation not answered
within its server's hedge delay is sent to the next healthy key server too; the first answer wins and
the other copy is cancelled. Keyless operations are idempotent (a signature or a decryption with the
same input gives an equally valid answer; nothing on the key server changes), so two copies are safe.
The delay adapts: ``p99_multiplier`` times the server's p99 over its last ``LATENCY_WINDOW`` operations,
clamped to [``min_delay``, ``max_delay``] (``max_delay`` until the server has ``MIN_SAMPLES`` samples).
Hedges are budgeted (``HedgeBudget``): each operation earns ``budget_ratio`` of a hedge, so a slowdown
of every server is not doubled into an overload.

Outlier ejection (as Envoy's consecutive-failure detector): a server whose operations time out or lose
hedge races ``consecutive_failures`` times in a row, or that misses a health ping, leaves the rotation
for ``base_ejection_time`` x (ejections in a row), at most ``max_ejection_time``; it comes back only
after that time and a successful ping, and then takes a share of new operations that grows linearly
over ``slow_start`` seconds (Envoy's slow start). The last server in rotation is never ejected.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

LATENCY_WINDOW = 128  # samples the p99 is taken over
MIN_SAMPLES = 16  # fewer samples than this: the hedge delay is max_delay
_RECOMPUTE_EVERY = 16  # the p99 is re-sorted every this many samples, not on every operation


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """When to send a second copy of an operation to another key server (``enabled=False``: never)."""

    enabled: bool = True
    p99_multiplier: float = 2.0
    min_delay: float = 0.025  # seconds; below this, hedges would race servers that are merely busy
    max_delay: float = 1.0  # seconds; also the delay until a server has MIN_SAMPLES answers
    budget_ratio: float = 0.1  # at most this share of operations is hedged, in the long run
    budget_burst: float = 10.0  # hedges available at once (a hang of one server costs a few at once)

    def __post_init__(self) -> None:
        if not (0 < self.min_delay <= self.max_delay):
            raise ValueError("hedge delays: need 0 < min_delay <= max_delay")
        if self.p99_multiplier <= 0 or not (0 <= self.budget_ratio <= 1) or self.budget_burst < 1:
            raise ValueError("hedge policy: p99_multiplier > 0, 0 <= budget_ratio <= 1, budget_burst >= 1")

    def delay(self, p99: float | None) -> float:
        if p99 is None:
            return self.max_delay
        return min(self.max_delay, max(self.min_delay, self.p99_multiplier * p99))


@dataclass(frozen=True, slots=True)
class EjectionPolicy:
    """When a key server leaves the rotation, and how it comes back."""

    consecutive_failures: int = 3  # timeouts or lost hedge races in a row
    base_ejection_time: float = 10.0  # seconds; times the number of ejections in a row
    max_ejection_time: float = 300.0
    slow_start: float = 10.0  # seconds over which a readmitted server's share grows to full

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1 or self.base_ejection_time < 0 or self.slow_start < 0:
            raise ValueError("ejection policy: consecutive_failures >= 1, times >= 0")
        if self.max_ejection_time < self.base_ejection_time:
            raise ValueError("ejection policy: max_ejection_time must be >= base_ejection_time")

    def ejection_time(self, streak: int) -> float:
        return min(self.max_ejection_time, self.base_ejection_time * max(1, streak))

    def share(self, since_readmitted: float) -> float:
        """Share of new operations a server readmitted ``since_readmitted`` seconds ago may take."""
        if self.slow_start <= 0 or since_readmitted >= self.slow_start:
            return 1.0
        return 0.1 + 0.9 * max(0.0, since_readmitted) / self.slow_start


class HedgeBudget:
    """A token bucket: every operation adds ``ratio`` of a token (up to ``burst``), a hedge spends one
    (gRPC's retry throttling and Envoy's retry budget work the same way)."""

    __slots__ = ("burst", "ratio", "tokens")

    def __init__(self, ratio: float, burst: float) -> None:
        self.ratio = ratio
        self.burst = burst
        self.tokens = burst

    def earn(self) -> None:
        tokens = self.tokens + self.ratio
        self.tokens = tokens if tokens < self.burst else self.burst

    def spend(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class LatencyWindow:
    """The last ``LATENCY_WINDOW`` latencies of one server and their p99 (refreshed every 16 samples)."""

    __slots__ = ("_p99", "_samples", "_since_sort")

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._since_sort = 0
        self._p99: float | None = None

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self._since_sort += 1
        if self._since_sort >= _RECOMPUTE_EVERY and len(self._samples) >= MIN_SAMPLES:
            self._since_sort = 0
            ordered = sorted(self._samples)
            self._p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]

    @property
    def p99(self) -> float | None:
        return self._p99


__all__ = ["LATENCY_WINDOW", "MIN_SAMPLES", "EjectionPolicy", "HedgeBudget", "HedgePolicy", "LatencyWindow"]
