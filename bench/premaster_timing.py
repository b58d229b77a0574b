"""Timing of the TLS 1.2 RSA premaster unpadding, good padding against bad, dudect-style: a figure, not a test.

    .venv/bin/python bench/premaster_timing.py [--samples 6000] [--rounds 5]

Two measurements, each also run on an early-exit unpadding (``leaky_unpad``, what NOT to do) as the control
that shows the harness can see a leak:

* ``unpad_premaster`` alone (keyless.keys.premaster);
* the engine's whole decrypt completion (``TLSServerConnection.complete_key_operation`` on a paused TLS 1.2
  handshake: unpadding, master secret, key schedule).

Method: calls on well-formed blocks and on malformed blocks (what an attacker's ciphertexts decrypt to) are
interleaved in a random order, each input a fresh copy so memory placement is the same for both classes, each
call timed with ``perf_counter_ns``. The slowest 10 % of each class are dropped (preemption only ever adds time)
and Welch's t compares the two classes. A round leaks when |t| > 4.5 (dudect's threshold) and the difference
exceeds a fraction of the call (1 % for the unpadding, 0.5 % for the engine): CPython is not constant time, and
with thousands of samples the t-test resolves nanoseconds of interpreter residue (≈ 5-10 ns of a 1.7 µs call).
An early exit costs hundreds of nanoseconds (≈ 2 % of the engine's call). A verdict needs 3 leaking rounds of 5.

These figures live here and not in the test suite because on a shared or slow machine other load can swamp a
2 % difference in either direction: the tests (tests/tls/test_premaster_timing.py, test_tls12_rsa_kx.py) check
deterministically that every block runs the same Python instructions. Run this on a quiet machine; exit status
1 if our unpadding leaks or the control is not detected.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.tls.test_premaster_timing import RANDOM, VERSION, K, Unpad, _bad_blocks, _good_block, leaky_unpad
from tests.tls.test_tls12_rsa_kx import _paused_connection, pkcs1_block

from keyless.keys.premaster import unpad_premaster
from keyless.tls import tls12_server

LEAK_T = 4.5
Round = tuple[float, float]  # (Welch t, relative difference of the trimmed means)


def welch(times: tuple[list[int], list[int]]) -> Round:
    a, b = (sorted(t)[: int(len(t) * 0.9)] for t in times)
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    var_a = sum((x - mean_a) ** 2 for x in a) / (len(a) - 1)
    var_b = sum((x - mean_b) ** 2 for x in b) / (len(b) - 1)
    denominator = math.sqrt(var_a / len(a) + var_b / len(b))
    return ((mean_a - mean_b) / denominator if denominator else 0.0), (mean_a - mean_b) / mean_a


def unpad_round(unpad: Unpad, seed: int, samples: int) -> Round:
    rng = random.Random(seed)
    goods = [_good_block(rng) for _ in range(70)]
    bads = [blk for _ in range(10) for blk in _bad_blocks(rng)]
    order = [i % 2 for i in range(2 * samples)]
    rng.shuffle(order)
    times: tuple[list[int], list[int]] = ([], [])
    clock = time.perf_counter_ns
    for n, cls in enumerate(order):
        raw = bytes(bytearray(goods[n % len(goods)] if cls == 0 else bads[n % len(bads)]))
        start = clock()
        unpad(raw, K, VERSION, RANDOM)
        times[cls].append(clock() - start)
    return welch(times)


def engine_round(unpad: Unpad, seed: int, samples: int) -> Round:
    rng = random.Random(seed)
    good = [pkcs1_block(b"\x03\x03" + rng.randbytes(46), padding_byte=rng.randrange(1, 256)) for _ in range(16)]
    bad = [rng.randbytes(K) for _ in range(8)] + [b"\x00\x02" + rng.randbytes(K - 2) for _ in range(8)]
    order = [i % 2 for i in range(2 * samples)]
    rng.shuffle(order)
    times: tuple[list[int], list[int]] = ([], [])
    real = tls12_server.unpad_premaster
    tls12_server.unpad_premaster = unpad  # type: ignore[attr-defined]
    try:
        for n, cls in enumerate(order):
            conn, op_id = _paused_connection()
            block = bytes(bytearray((good if cls == 0 else bad)[n % 16]))
            start = time.perf_counter_ns()
            conn.complete_key_operation(op_id, block)
            times[cls].append(time.perf_counter_ns() - start)
    finally:
        tls12_server.unpad_premaster = real  # type: ignore[attr-defined]
    return welch(times)


def verdict(name: str, measure: Callable[[int], Round], rounds: int, fraction: float) -> int:
    results = [measure(seed) for seed in range(1, rounds + 1)]
    leaking = sum(abs(t) > LEAK_T and abs(frac) > fraction for t, frac in results)
    shown = "  ".join(f"t={t:+6.1f} {frac:+.2%}" for t, frac in results)
    print(f"{name:<34} leaking rounds {leaking}/{rounds}   {shown}", flush=True)
    return leaking


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6000, help="unpadding calls per class and round")
    parser.add_argument("--engine-samples", type=int, default=800, help="engine completions per class and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    needed = args.rounds // 2 + 1
    ok = True
    for name, unpad, should_leak in (
        ("unpad_premaster", unpad_premaster, False),
        ("leaky_unpad (control)", leaky_unpad, True),
    ):
        leaking = verdict(name, lambda seed, u=unpad: unpad_round(u, seed, args.samples), args.rounds, 0.01)
        ok &= (leaking >= needed) == should_leak
    for name, unpad, should_leak in (
        ("engine + unpad_premaster", unpad_premaster, False),
        ("engine + leaky_unpad (control)", leaky_unpad, True),
    ):
        leaking = verdict(name, lambda seed, u=unpad: engine_round(u, seed, args.engine_samples), args.rounds, 0.005)
        ok &= (leaking >= needed) == should_leak
    print("OK: no leak seen, and the early-exit control was detected" if ok else "FAILED (on a quiet machine?)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
