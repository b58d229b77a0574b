"""The premaster unpadding runs the same Python instructions for a good block and for every bad one.

A Bleichenbacher timing oracle in Python code is a different path for different blocks: an early exit on the
first failed rule, a branch on a padding byte. Whether the path depends on the block is deterministic, so this
is what the tests check (tests/support/control_flow.py records the bytecode instructions executed in our
files): every block of the modulus' length — well-formed, random, and a near miss of each rule — runs the same
instructions, and ``test_the_check_catches_an_early_exit_unpadding`` shows the check fails for an early-exit
implementation. The C routines the unpadding relies on (``hmac.compare_digest``, ``bytes.translate``, int
conversions) and the time itself are measured by bench/premaster_timing.py (dudect-style: Welch's t over
interleaved good and bad calls), which on a shared machine is a figure, not a verdict.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from keyless.keys.premaster import unpad_premaster
from tests.support.control_flow import first_difference, instruction_trace

K = 256
VERSION = b"\x03\x03"
RANDOM = bytes(range(48))

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




def blocks_of_both_classes(seed: int) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(seed)
    goods = [_good_block(rng) for _ in range(8)]
    bads = [blk for _ in range(3) for blk in _bad_blocks(rng)]
    bads.append(bytes(K))
    bads.append(b"\x00\x02" + b"\xff" * (K - 51) + b"\x00" + b"\x03\x03" + bytes(46))  # good but for the version
    return goods, bads


def paths_that_differ(unpad: Unpad, seed: int) -> list[str]:
    """How each block's instruction trace differs from the first good block's (empty: one path for all)."""
    goods, bads = blocks_of_both_classes(seed)
    reference = instruction_trace(unpad, goods[0], K, VERSION, RANDOM)
    assert reference, "nothing traced: the unpadding is not in a traced file"
    differences = []
    for n, block in enumerate(goods + bads):
        trace = instruction_trace(unpad, block, K, VERSION, RANDOM)
        if trace != reference:
            differences.append(f"block {n}: {first_difference(reference, trace)}")
    return differences


def test_unpadding_runs_the_same_instructions_for_every_block() -> None:
    assert paths_that_differ(unpad_premaster, seed=1) == []


def test_the_check_catches_an_early_exit_unpadding() -> None:
    assert len(paths_that_differ(leaky_unpad, seed=2)) >= 10  # every bad block leaves early somewhere


def test_both_unpaddings_agree_on_the_outcome() -> None:
    """The early-exit control above is a faithful (leaky) implementation: it returns what the real one does."""
    goods, bads = blocks_of_both_classes(seed=3)
    for block in goods + bads:
        assert unpad_premaster(block, K, VERSION, RANDOM) == leaky_unpad(block, K, VERSION, RANDOM)
    assert unpad_premaster(goods[0], K, VERSION, RANDOM) == goods[0][-48:]
    assert unpad_premaster(bads[0], K, VERSION, RANDOM) == RANDOM
