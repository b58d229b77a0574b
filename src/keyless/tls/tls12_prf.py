"""The TLS 1.2 pseudo-random function and what is derived with it (RFC 5246 §5, §6.3, §7.4.9; RFC 7627).

PRF(secret, label, seed) = P_<hash>(secret, label + seed), where the hash is the cipher suite's PRF hash
(SHA-256, or SHA-384 for the *_SHA384 suites). ``hmac.digest`` (OpenSSL's one-shot HMAC) is the fastest
HMAC reachable from Python.
"""

from __future__ import annotations

import hmac

MASTER_SECRET_LENGTH = 48
VERIFY_DATA_LENGTH = 12

CLIENT_FINISHED = b"client finished"
SERVER_FINISHED = b"server finished"


def p_hash(hash_name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    """RFC 5246 §5: A(0) = seed, A(i) = HMAC(secret, A(i-1)); output HMAC(secret, A(i) + seed) ..."""
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)  # one-shot HMAC in C: no Python HMAC objects
        out += hmac.digest(secret, a + seed, hash_name)
    return bytes(out[:length])


def prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    return p_hash(hash_name, secret, label + seed, length)


def master_secret(hash_name: str, premaster: bytes, client_random: bytes, server_random: bytes) -> bytes:
    """RFC 5246 §8.1 (only for sessions without the extended master secret)."""
    return prf(hash_name, premaster, b"master secret", client_random + server_random, MASTER_SECRET_LENGTH)


def extended_master_secret(hash_name: str, premaster: bytes, session_hash: bytes) -> bytes:
    """RFC 7627 §4: bound to the hash of the handshake up to and including ClientKeyExchange."""
    return prf(hash_name, premaster, b"extended master secret", session_hash, MASTER_SECRET_LENGTH)


def key_block(hash_name: str, master: bytes, server_random: bytes, client_random: bytes, length: int) -> bytes:
    """RFC 5246 §6.3: note the seed order, server random first."""
    return prf(hash_name, master, b"key expansion", server_random + client_random, length)


def finished_verify_data(hash_name: str, master: bytes, label: bytes, handshake_hash: bytes) -> bytes:
    """RFC 5246 §7.4.9: PRF(master_secret, finished_label, Hash(handshake_messages))[0..11]."""
    return prf(hash_name, master, label, handshake_hash, VERIFY_DATA_LENGTH)


__all__ = [
    "CLIENT_FINISHED",
    "MASTER_SECRET_LENGTH",
    "SERVER_FINISHED",
    "VERIFY_DATA_LENGTH",
    "extended_master_secret",
    "finished_verify_data",
    "key_block",
    "master_secret",
    "p_hash",
    "prf",
]
