"""``keyless.keys.premaster.unpad_premaster``: every malformed block gives the random premaster."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from keyless.keys.local import LocalKey
from keyless.keys.premaster import PREMASTER_LENGTH, unpad_premaster

K = 256
VERSION = b"\x03\x03"
RANDOM = bytes(range(100, 148))


def block(
    *,
    header: bytes = b"\x00\x02",
    ps: bytes | None = None,
    separator: int = 0,
    premaster: bytes | None = None,
    k: int = K,
) -> bytes:
    premaster = VERSION + bytes(range(1, 47)) if premaster is None else premaster
    if ps is None:
        ps = bytes((0x5A,)) * (k - 3 - len(premaster))
    return header + ps + bytes((separator,)) + premaster


def reference(raw: bytes, k: int, version: bytes, rnd: bytes) -> bytes:
    """The rules written the obvious (branching) way, to compare against."""
    if len(raw) != k or raw[0] != 0 or raw[1] != 2:
        return rnd
    separator = k - 49
    if 0 in raw[2:separator] or raw[separator] != 0 or raw[separator + 1 : separator + 3] != version:
        return rnd
    return raw[separator + 1 :]


def test_good_block_gives_its_premaster() -> None:
    good = block()
    assert unpad_premaster(good, K, VERSION, RANDOM) == good[-48:]
    assert unpad_premaster(good, K, VERSION, RANDOM) != RANDOM


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(block(header=b"\x01\x02"), id="first-byte-not-zero"),
        pytest.param(block(header=b"\x00\x01"), id="block-type-1"),
        pytest.param(block(separator=7), id="no-zero-separator"),
        pytest.param(block(ps=b"\x5a" * 100 + b"\x00" + b"\x5a" * 103), id="zero-inside-padding"),
        pytest.param(block(ps=b"\x00" + b"\x5a" * 203), id="zero-first-padding-byte"),
        pytest.param(block(ps=b"\x5a" * 203 + b"\x00"), id="zero-last-padding-byte"),
        pytest.param(block(ps=b"\x5a" * 203, premaster=VERSION + bytes(range(1, 48))), id="premaster-49-bytes"),
        pytest.param(block(ps=b"\x5a" * 205, premaster=VERSION + bytes(range(1, 46))), id="premaster-47-bytes"),
        pytest.param(block(premaster=b"\x03\x01" + bytes(46)), id="wrong-version-major-minor"),
        pytest.param(block(premaster=b"\x02\x03" + bytes(46)), id="wrong-version-first-byte"),
        pytest.param(block()[:-1], id="block-one-short"),
        pytest.param(b"\x00" + block(), id="block-one-long"),
        pytest.param(b"", id="key-error-empty"),
        pytest.param(bytes(K), id="all-zero"),
    ],
)
def test_bad_block_gives_the_random_premaster(raw: bytes) -> None:
    assert unpad_premaster(raw, K, VERSION, RANDOM) == RANDOM


def test_shortest_padding_allowed_is_eight_bytes() -> None:
    k = 2 + 8 + 1 + 48
    good = block(k=k)
    assert unpad_premaster(good, k, VERSION, RANDOM) == good[-48:]
    with pytest.raises(ValueError):
        unpad_premaster(good[:-1], k - 1, VERSION, RANDOM)


def test_caller_bugs_are_value_errors_not_silent() -> None:
    with pytest.raises(ValueError):
        unpad_premaster(block(), K, VERSION, RANDOM[:47])
    with pytest.raises(ValueError):
        unpad_premaster(block(), K, b"\x03", RANDOM)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.one_of(
        st.binary(min_size=K, max_size=K),
        st.builds(
            lambda ps, sep, pm, hdr: hdr + ps + bytes((sep,)) + pm,
            st.binary(min_size=K - 51, max_size=K - 51),
            st.sampled_from([0, 0, 0, 1]),
            st.builds(
                lambda v, rest: v + rest, st.sampled_from([VERSION, b"\x03\x01"]), st.binary(min_size=46, max_size=46)
            ),
            st.sampled_from([b"\x00\x02", b"\x00\x02", b"\x00\x01", b"\x01\x02"]),
        ),
        st.binary(max_size=K + 2),
    )
)
def test_matches_the_obvious_implementation(raw: bytes) -> None:
    assert unpad_premaster(raw, K, VERSION, RANDOM) == reference(raw, K, VERSION, RANDOM)


def test_round_trip_through_a_real_rsa_encryption() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    premaster = VERSION + os.urandom(46)
    ciphertext = private.public_key().encrypt(premaster, padding.PKCS1v15())
    raw = LocalKey(private).decrypt_sync(ciphertext)
    rnd = os.urandom(PREMASTER_LENGTH)
    assert unpad_premaster(raw, 256, VERSION, rnd) == premaster
    # The same ciphertext with a client that claimed another version: implicit rejection.
    assert unpad_premaster(raw, 256, b"\x03\x02", rnd) == rnd
