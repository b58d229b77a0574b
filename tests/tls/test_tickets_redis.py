"""Ticket keys shared through a real redis-server on 127.0.0.1 (started by the test on a free port)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from keyless.tls.tickets import RedisTicketKeyStore, SessionState, TicketKeyRing
from tests.conftest import require_tool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    server = require_tool("redis-server", "redis-server")
    for _attempt in range(3):  # the port may be taken between picking and binding
        port = free_port()
        proc = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        else:
            proc.kill()
            proc.wait()
            continue
        if proc.poll() is None:
            try:
                yield port
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            return
    pytest.fail("could not start redis-server")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def state(now: float) -> SessionState:
    return SessionState(version=0x0304, cipher_suite=0x1301, secret=b"s" * 32, created_at=now, lifetime=7200)


def ring(port: int, clock: Clock, prefix: str) -> TicketKeyRing:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    store = RedisTicketKeyStore(client, prefix=prefix, rotation_interval=3600, ticket_lifetime=7200)
    return TicketKeyRing(store, now=clock, refresh_interval=60)


def test_background_refresh_only(redis_port: int) -> None:
    clock = Clock(1_800_000_000.0)
    store = RedisTicketKeyStore.from_url(f"redis://127.0.0.1:{redis_port}/0", prefix="t4:")
    quiet = TicketKeyRing(store, now=clock)
    first = quiet.key_names
    clock.now += 3600
    quiet.seal(state(clock.now))
    assert quiet.key_names == first and quiet.refresh_due  # nothing inline
    quiet.refresh()
    assert quiet.key_names[0] == first[1] and not quiet.refresh_due


def test_two_rings_share_keys(redis_port: int) -> None:
    clock = Clock(1_800_000_000.0)
    a = ring(redis_port, clock, "t1:")
    b = ring(redis_port, clock, "t1:")
    assert a.key_names == b.key_names and len(a.key_names) == 2  # current + pre-published next
    ticket = a.seal(state(clock.now))
    assert b.open(ticket) == state(clock.now)
    assert b.seal(state(clock.now))[:16] == ticket[:16]


def test_rotation_is_agreed_without_coordination(redis_port: int) -> None:
    clock = Clock(1_800_000_000.0)
    a = ring(redis_port, clock, "t2:")
    b = ring(redis_port, clock, "t2:")
    old = a.seal(state(clock.now))
    clock.now += 3600  # next slot: both switch to the key published one slot early
    a.refresh()
    b.refresh()
    new_a = a.seal(state(clock.now))
    new_b = b.seal(state(clock.now))
    assert new_a[:16] == new_b[:16] != old[:16]
    assert b.open(new_a) is not None and a.open(new_b) is not None
    assert a.open(old) is not None and b.open(old) is not None
    clock.now += 3 * 3600
    a.refresh()
    assert a.open(old) is None  # past the retention window


def test_redis_outage_keeps_current_keys() -> None:
    clock = Clock(1_800_000_000.0)
    started = time.monotonic()
    lonely = TicketKeyRing(RedisTicketKeyStore.from_url(f"redis://127.0.0.1:{free_port()}/0"), now=clock)
    assert time.monotonic() - started < 2  # fails fast, no retry loop
    ticket = lonely.seal(state(clock.now))  # falls back to a process-local key, handshakes still work
    assert lonely.open(ticket) == state(clock.now)
