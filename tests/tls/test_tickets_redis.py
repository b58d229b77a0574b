"""Ticket keys shared through a real redis-server on 127.0.0.1 (started by the test on a free port)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import redis

from keyless.tls.tickets import RedisTicketKeyStore, SessionState, TicketKeyRing
from tests.support.redis_server import redis_server
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    with redis_server() as port:
        yield port


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def state(now: float) -> SessionState:
    return SessionState(version=0x0304, cipher_suite=0x1301, secret=b"s" * 32, created_at=now, lifetime=7200)


def ring(port: int, clock: Clock, prefix: str) -> TicketKeyRing:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)  # failure only
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


class HangingUp:
    """A "Redis" that accepts each connection and closes it at once, recording who connected, in order."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.peers: list[tuple[str, int]] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return
            self.peers.append(peer)
            conn.close()

    def connections_so_far(self) -> int:
        """Connections made before this call: a marker connection is accepted after all of them (in order)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as marker:
            name = marker.getsockname()
            wait_until(lambda: name in self.peers, "the marker connection to be accepted")
        return self.peers.index(name)

    def close(self) -> None:
        self.listener.close()


def test_redis_outage_keeps_current_keys() -> None:
    clock = Clock(1_800_000_000.0)
    redis_down = HangingUp()
    try:
        lonely = TicketKeyRing(RedisTicketKeyStore.from_url(f"redis://127.0.0.1:{redis_down.port}/0"), now=clock)
        # Fails fast: one attempt, no retry loop (redis-py's default would try again, with backoff).
        assert redis_down.connections_so_far() == 1
    finally:
        redis_down.close()
    ticket = lonely.seal(state(clock.now))  # falls back to a process-local key, handshakes still work
    assert lonely.open(ticket) == state(clock.now)
