"""The TLS 1.2 pseudo-random function and what is derived with it (RFC 5246 §5, §6.3, §7.4.9; RFC 7627).

PRF(secret, label, seed) = P_<hash>(secret, label + seed), where the hash is the cipher suite's PRF hash
(SHA-256, or SHA-384 for the *_SHA384 suites).

Every HMAC of one P_hash uses the same key, so ``KeyedPRF`` runs the HMAC key schedule once and copies the
keyed state per block (OpenSSL's HMAC_CTX_copy): about half the cost of a one-shot ``hmac.digest``, which
re-keys each time. A handshake keys two of them — the premaster (master secret) and the master secret
(key block and both Finished messages) — and makes twelve HMACs with them.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

_hmac_new: Callable[..., Any] = hmac.new
try:
    from _hashlib import hmac_new as _openssl_hmac_new  # OpenSSL's HMAC object, without hmac.HMAC's wrapper

    _hmac_new = _openssl_hmac_new
except ImportError:  # pragma: no cover - CPython without OpenSSL hashes
    pass


MASTER_SECRET_LENGTH = 48
VERIFY_DATA_LENGTH = 12

CLIENT_FINISHED = b"client finished"
SERVER_FINISHED = b"server finished"


class KeyedPRF:
    """PRF with one secret, keyed once: ``prf(label, seed, length)``. Holds key material (no repr of it)."""

    __slots__ = ("_mac",)

    def __init__(self, hash_name: str, secret: bytes) -> None:
        self._mac = _hmac_new(secret, digestmod=hash_name)

    def __repr__(self) -> str:
        return f"<KeyedPRF {self._mac.name}>"

    def __call__(self, label: bytes, seed: bytes, length: int) -> bytes:
        return self.p_hash(label + seed, length)

    def p_hash(self, seed: bytes, length: int) -> bytes:
        """RFC 5246 §5: A(0) = seed, A(i) = HMAC(secret, A(i-1)); output HMAC(secret, A(i) + seed) ..."""
        new_step = self._mac.copy
        out = b""
        a = seed
        while len(out) < length:
            step = new_step()
            step.update(a)
            a = step.digest()
            step = new_step()
            step.update(a + seed)
            out += step.digest()
        return out if len(out) == length else out[:length]


def _keyed(hash_name: str, secret: bytes | KeyedPRF) -> KeyedPRF:
    return secret if isinstance(secret, KeyedPRF) else KeyedPRF(hash_name, secret)


def p_hash(hash_name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    return KeyedPRF(hash_name, secret).p_hash(seed, length)


def prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    return KeyedPRF(hash_name, secret).p_hash(label + seed, length)


def master_secret(hash_name: str, premaster: bytes, client_random: bytes, server_random: bytes) -> bytes:
    """RFC 5246 §8.1 (only for sessions without the extended master secret)."""
    return prf(hash_name, premaster, b"master secret", client_random + server_random, MASTER_SECRET_LENGTH)


def extended_master_secret(hash_name: str, premaster: bytes, session_hash: bytes) -> bytes:
    """RFC 7627 §4: bound to the hash of the handshake up to and including ClientKeyExchange."""
    return prf(hash_name, premaster, b"extended master secret", session_hash, MASTER_SECRET_LENGTH)


def key_block(
    hash_name: str, master: bytes | KeyedPRF, server_random: bytes, client_random: bytes, length: int
) -> bytes:
    """RFC 5246 §6.3: note the seed order, server random first. ``master`` may be already keyed."""
    return _keyed(hash_name, master)(b"key expansion", server_random + client_random, length)


def finished_verify_data(hash_name: str, master: bytes | KeyedPRF, label: bytes, handshake_hash: bytes) -> bytes:
    """RFC 5246 §7.4.9: PRF(master_secret, finished_label, Hash(handshake_messages))[0..11]."""
    return _keyed(hash_name, master)(label, handshake_hash, VERIFY_DATA_LENGTH)


__all__ = [
    "CLIENT_FINISHED",
    "MASTER_SECRET_LENGTH",
    "SERVER_FINISHED",
    "VERIFY_DATA_LENGTH",
    "KeyedPRF",
    "extended_master_secret",
    "finished_verify_data",
    "key_block",
    "master_secret",
    "p_hash",
    "prf",
]
