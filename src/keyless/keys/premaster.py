"""Constant-time PKCS#1 v1.5 unpadding of a TLS 1.2 RSA premaster secret, with implicit rejection.

RFC 5246 §7.4.7.1 (and the Bleichenbacher, ROBOT and Marvin attacks that followed it): whether an
encrypted premaster decrypts to a well-formed block must not be observable — not by a different alert,
not by an earlier alert, and not by timing. So the caller draws 48 random bytes BEFORE the private-key
operation, and this function returns either the premaster from the block or those random bytes; both
lead to the same Finished failure when the client did not know the premaster.

Python gives no constant-time guarantee, so the work that touches the decrypted block is pushed into C
routines whose running time depends only on lengths, and no Python-level value derived from it is ever
zero or negative (CPython's int operations take other paths for 0 and negative numbers, measurably):

* the three rules (``00 02`` header; no zero byte in the padding, which must then be at least 8 bytes
  because the ``00`` separator sits at exactly k-49; the separator followed by ClientHello.client_version)
  are one ``hmac.compare_digest`` of a fixed-length string against the expected one, the padding being
  first mapped byte for byte by ``bytes.translate`` (zero → 1, anything else → 0);
* the verdict (a bool) becomes a one-byte selector 1 or 2, expanded by ``translate`` into 48-byte masks;
* the premaster and the random bytes are selected with AND/OR on integers that carry a leading 0x01 byte,
  so every operand and result has the same size whatever the bytes are.

The only things we branch on are lengths: of the modulus, and of what the key returned (a key-server
error is passed as an empty block, which is then checked like any other wrong-length block). Both are
public. ``tests/tls/test_premaster_timing.py`` checks that every block of the modulus' length runs the same
Python instructions; ``bench/premaster_timing.py`` measures the time statistically.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable

from keyless.keys.base import KeyOperationError

PREMASTER_LENGTH = 48
# 0x00 0x02, at least 8 nonzero padding bytes, 0x00, the 48-byte premaster (RFC 8017 §7.2.2).
MIN_MODULUS_LENGTH = 2 + 8 + 1 + PREMASTER_LENGTH

_ZERO_FLAGS = bytes((1,)) + bytes(255)  # translate table: 0x00 -> 0x01, every other byte -> 0x00
# translate tables for the selector byte (1 = reject, 2 = accept): the premaster mask and the random mask.
_KEEP_PREMASTER = bytes(256)[:2] + b"\xff" + bytes(253)
_KEEP_RANDOM = bytes(1) + b"\xff" + bytes(254)
_LEAD = b"\x01"  # a nonzero leading byte keeps every integer below the same size


def unpad_premaster(raw_block: bytes, modulus_len: int, client_version: bytes, random_premaster: bytes) -> bytes:
    """The 48-byte premaster in ``raw_block`` (the raw k-byte RSA result), or ``random_premaster``.

    ``client_version`` is ClientHello.client_version (two bytes), which the first two premaster bytes must
    repeat (RFC 5246 §7.4.7.1). A block of the wrong length (including the empty block a failed key
    operation is passed as) yields ``random_premaster`` through the same computation.
    """
    if len(random_premaster) != PREMASTER_LENGTH or len(client_version) != 2:
        raise ValueError("random_premaster must be 48 bytes and client_version 2 bytes")  # caller bug
    if modulus_len < MIN_MODULUS_LENGTH:
        raise ValueError("modulus too small for a TLS premaster")  # caller bug (public key size)
    length_ok = len(raw_block) == modulus_len
    # Public: a wrong length is checked as an all-zero block (which fails the header rule).
    block = raw_block if length_ok else bytes(modulus_len)

    separator = modulus_len - PREMASTER_LENGTH - 1
    checked = block[:2] + block[2:separator].translate(_ZERO_FLAGS) + block[separator : separator + 3]
    expected = b"\x00\x02" + bytes(separator - 2) + b"\x00" + client_version
    well_formed = hmac.compare_digest(checked, expected) & length_ok

    selector = bytes((1 + well_formed,))
    keep_premaster = int.from_bytes(_LEAD + selector.translate(_KEEP_PREMASTER) * PREMASTER_LENGTH, "big")
    keep_random = int.from_bytes(_LEAD + selector.translate(_KEEP_RANDOM) * PREMASTER_LENGTH, "big")
    premaster = int.from_bytes(_LEAD + block[separator + 1 :], "big")
    rejected = int.from_bytes(_LEAD + random_premaster, "big")
    chosen = (premaster & keep_premaster) | (rejected & keep_random)
    return chosen.to_bytes(1 + PREMASTER_LENGTH, "big")[1:]


async def decrypt_premaster(
    decrypt: Callable[[bytes], Awaitable[bytes]], modulus_len: int, ciphertext: bytes, client_version: bytes
) -> bytes:
    """The TLS 1.2 RSA premaster secret in ``ciphertext``, or a random one (RFC 5246 7.4.7.1), for any key:
    ``decrypt`` is its raw decryption (``AsyncPrivateKey.decrypt``), ``modulus_len`` its modulus in bytes.

    The random premaster is drawn before the key is asked, and a bad padding, a wrong version, a
    wrong-length answer and a failed operation all take the same path through ``unpad_premaster``: no
    error escapes, so nothing distinguishes them to the TLS client. (The TLS engine does the same in its
    own steps, since it asks for the key operation through an event.)
    """
    random_premaster = os.urandom(PREMASTER_LENGTH)
    try:
        raw_block = await decrypt(ciphertext)
    except KeyOperationError:
        raw_block = b""  # checked like any wrong-length block: the random premaster comes out
    return unpad_premaster(raw_block, modulus_len, client_version, random_premaster)


__all__ = ["MIN_MODULUS_LENGTH", "PREMASTER_LENGTH", "decrypt_premaster", "unpad_premaster"]
