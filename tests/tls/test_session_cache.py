"""TLS 1.2 session-ID cache: LRU bound, expiry, Redis sharing (sealed entries)."""

from __future__ import annotations

import os

import pytest
import redis

from keyless.tls.session_cache import MemorySessionCache, RedisSessionCache, SessionCache
from keyless.tls.tickets import SessionState, TicketKey, TicketKeyRing
from tests.support.redis_server import free_port
from tests.tls.test_tickets_redis import Clock, redis_port

__all__ = ["redis_port"]  # the module-scoped redis-server fixture, reused


def state(created_at: float, lifetime: int = 3600, secret: bytes = b"m" * 48) -> SessionState:
    return SessionState(version=0x0303, cipher_suite=0xC02B, secret=secret, created_at=created_at, lifetime=lifetime)


def test_memory_cache_lru_bound() -> None:
    clock = Clock(1000.0)
    cache: SessionCache = MemorySessionCache(3, now=clock)
    for i in range(3):
        cache.put(bytes([i]) * 32, state(clock.now))
    assert cache.get(b"\x00" * 32) is not None  # 0 becomes most recently used
    cache.put(b"\x03" * 32, state(clock.now))
    assert cache.get(b"\x01" * 32) is None  # the least recently used went
    assert all(cache.get(bytes([i]) * 32) is not None for i in (0, 2, 3))
    assert isinstance(cache, MemorySessionCache) and len(cache) == 3


def test_memory_cache_expiry_and_remove() -> None:
    clock = Clock(1000.0)
    cache = MemorySessionCache(10, max_lifetime=600, now=clock)
    cache.put(b"a" * 32, state(clock.now, lifetime=100))
    cache.put(b"b" * 32, state(clock.now, lifetime=7200))  # capped by max_lifetime
    clock.now = 1099.0
    assert cache.get(b"a" * 32) is not None
    clock.now = 1100.0
    assert cache.get(b"a" * 32) is None
    clock.now = 1599.0
    assert cache.get(b"b" * 32) is not None
    cache.remove(b"b" * 32)
    assert cache.get(b"b" * 32) is None
    cache.put(b"c" * 32, state(0.0, lifetime=10))  # already expired: not stored
    cache.put(b"", state(clock.now))  # an empty ID means "no session ID": not stored
    cache.put(b"x" * 33, state(clock.now))
    assert len(cache) == 0
    assert "m" * 8 not in repr(cache)


@pytest.fixture
def ring() -> TicketKeyRing:
    return TicketKeyRing([TicketKey.generate()])


def test_redis_cache_shared_and_sealed(redis_port: int, ring: TicketKeyRing) -> None:
    clock = Clock(2_000_000_000.0)
    secret = os.urandom(48)

    def cache() -> RedisSessionCache:
        client = redis.Redis(host="127.0.0.1", port=redis_port)
        return RedisSessionCache(client, ring, prefix="s1:", now=clock)

    a, b = cache(), cache()
    sid = os.urandom(32)
    a.put(sid, state(clock.now, secret=secret))
    assert b.get(sid) == state(clock.now, secret=secret)
    raw = redis.Redis(host="127.0.0.1", port=redis_port).get(b"s1:" + sid)
    assert isinstance(raw, bytes) and secret not in raw  # sealed, not in the clear
    b.remove(sid)
    assert a.get(sid) is None


def test_redis_cache_outage_is_a_miss(ring: TicketKeyRing) -> None:
    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2,
                         retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
    cache = RedisSessionCache(client, ring)
    cache.put(b"x" * 32, state(2_000_000_000.0))
    assert cache.get(b"x" * 32) is None

