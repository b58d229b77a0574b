"""Statistical timing test of the premaster unpadding: good and bad padding must take the same time.

Method (dudect-style): calls on well-formed blocks and on malformed blocks (what an attacker's
ciphertexts decrypt to) are interleaved in a random order, each input a fresh copy so that memory
placement is the same for both classes, each call timed with ``perf_counter_ns``. The slowest 10 % of
each class are dropped (preemption on a busy 2-core machine only ever adds time) and Welch's t compares
the two classes.

A class difference counts as a leak when it is both statistically significant (|t| > 4.5, dudect's
threshold) and larger than 1 % of the call (≈ 20 ns here). The second condition is needed because
CPython itself is not constant time: with 6,000 samples per class the t-test resolves differences of a
few nanoseconds, and the interpreter's bool/int paths leave a residue of that order (measured: ≈ 5-10 ns
of a 1.7 µs call), far below the jitter of the key-server round trip this step follows. An early-exit
implementation differs by hundreds of nanoseconds, and ``test_harness_detects_an_early_exit_leak`` shows
that the harness then fails. A leak must repeat: it has to show in at least 3 of 5 rounds (noise bursts
on a shared 2-core machine rarely hit several rounds, a real leak shows in all of them).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import pytest

from keyless.keys.premaster import unpad_premaster

K = 256
VERSION = b"\x03\x03"
RANDOM = bytes(range(48))
SAMPLES_PER_CLASS = 6000
LEAK_T = 4.5
LEAK_FRACTION = 0.01

Unpad = Callable[[bytes, int, bytes, bytes], bytes]


def _good_block(rng: random.Random) -> bytes:
    ps = bytes(rng.randrange(1, 256) for _ in range(K - 51))
    return b"\x00\x02" + ps + b"\x00" + VERSION + rng.randbytes(46)


def _bad_blocks(rng: random.Random) -> list[bytes]:
    """Random blocks (the common case for a forged ciphertext), plus near-misses of each rule."""
    good = _good_block(rng)
    sep = K - 49
    return [
        rng.randbytes(K),
        rng.randbytes(K),
        b"\x00\x02" + rng.randbytes(K - 2),  # right header, then random
        b"\x00\x01" + good[2:],  # wrong block type
        good[:sep] + b"\x07" + good[sep + 1 :],  # no separator
        good[:40] + b"\x00" + good[41:],  # zero inside the padding
        good[: sep + 1] + b"\x03\x01" + good[sep + 3 :],  # wrong version only
    ]


def _trimmed(xs: list[int]) -> list[int]:
    return sorted(xs)[: int(len(xs) * 0.9)]


def measure(unpad: Unpad, seed: int) -> tuple[float, float]:
    """(Welch t, relative difference of the trimmed means) between good and bad padding."""
    rng = random.Random(seed)
    goods = [_good_block(rng) for _ in range(70)]
    bads = [blk for _ in range(10) for blk in _bad_blocks(rng)]
    order = [i % 2 for i in range(2 * SAMPLES_PER_CLASS)]
    rng.shuffle(order)
    timings: tuple[list[int], list[int]] = ([], [])
    clock = time.perf_counter_ns
    for n, cls in enumerate(order):
        raw = bytes(bytearray(goods[n % len(goods)] if cls == 0 else bads[n % len(bads)]))
        start = clock()
        unpad(raw, K, VERSION, RANDOM)
        timings[cls].append(clock() - start)
    a, b = _trimmed(timings[0]), _trimmed(timings[1])
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    var_a = sum((x - mean_a) ** 2 for x in a) / (len(a) - 1)
    var_b = sum((x - mean_b) ** 2 for x in b) / (len(b) - 1)
    denominator = math.sqrt(var_a / len(a) + var_b / len(b))
    t = (mean_a - mean_b) / denominator if denominator else 0.0
    return t, (mean_a - mean_b) / mean_a


def leaking_rounds(unpad: Unpad, seeds: tuple[int, ...]) -> tuple[int, list[tuple[float, float]]]:
    results = [measure(unpad, seed) for seed in seeds]
    return sum(abs(t) > LEAK_T and abs(frac) > LEAK_FRACTION for t, frac in results), results


def leaky_unpad(raw: bytes, k: int, version: bytes, rnd: bytes) -> bytes:
    """What NOT to do: early exits on the first failed rule (a Bleichenbacher timing oracle)."""
    if len(raw) != k or raw[0] != 0 or raw[1] != 2:
        return rnd
    sep = k - 49
    if 0 in raw[2:sep]:
        return rnd
    if raw[sep] != 0 or raw[sep + 1 : sep + 3] != version:
        return rnd
    return raw[sep + 1 :]


@pytest.mark.timeout(120)
def test_harness_detects_an_early_exit_leak() -> None:
    count, results = leaking_rounds(leaky_unpad, (11, 12, 13, 14, 15))
    assert count >= 3, f"(t, fraction) per round: {results}"


@pytest.mark.timeout(120)
def test_unpadding_time_does_not_depend_on_the_padding() -> None:
    count, results = leaking_rounds(unpad_premaster, (1, 2, 3, 4, 5))
    assert count < 3, f"(t, fraction) per round: {results}"
