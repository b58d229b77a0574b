"""The in-flight cap, with the server in-process so the test can hold its key operations.

A key handle that blocks until the test releases it keeps requests in flight; the client (a real
``ssl`` socket) sends more than 1024 of them on one connection. The server must stop at 1024 —
stop reading, not queue more — and answer all of them once the key is released.
"""

from __future__ import annotations

import asyncio
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyless.keys.schemes import KeyKind
from keyless.keys.store import InMemoryKeyStore
from keyless.pki import DemoPKI
from keyless.protocol import Message, Opcode, encode_message
from keyless.server.config import load_config
from keyless.server.service import KeyServer
from tests.support.keyserver import keyserver_config
from tests.support.waiting import wait_until
from tests.support.wire import Peer, connect

SKI = bytes(range(20))


class HeldKey:
    """A key whose every operation waits for ``release``."""

    ski = SKI
    kind = KeyKind.ECDSA
    offload = True
    source = "test"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = 0

    def execute(self, opcode: int, payload: bytes) -> bytes:
        self.started += 1
        self.release.wait(30)
        return b"signed:" + payload


class InProcessServer:
    def __init__(self, pki: DemoPKI, tmp_path: Path, key: HeldKey) -> None:
        import yaml

        path = tmp_path / "inproc.yaml"
        path.write_text(yaml.safe_dump(keyserver_config(pki, rsa_threads=2)))
        self.config = load_config(path, environ={})
        self.key = key
        self.loop = asyncio.new_event_loop()
        self.server: KeyServer | None = None
        ready = threading.Event()

        async def main() -> None:
            self.server = KeyServer(self.config, InMemoryKeyStore([key]))
            await self.server.start()
            ready.set()

        self.thread = threading.Thread(target=self._run, args=(main, ready), daemon=True)
        self.thread.start()
        assert ready.wait(30)

    def _run(self, main: object, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(main())  # type: ignore[operator]
        self.loop.run_forever()

    def connections(self) -> list[object]:
        assert self.server is not None
        return list(self.server.connections)

    def settle(self) -> None:
        """Return once the server's loop has run everything that was ready to run when this was called."""
        for _ in range(3):
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(30)

    def stop(self) -> None:
        self.key.release.set()
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.drain(timeout=5), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def held(server_pki: DemoPKI, tmp_path: Path) -> Iterator[InProcessServer]:
    server = InProcessServer(server_pki, tmp_path, HeldKey())
    yield server
    server.stop()


def test_at_most_1024_in_flight_then_everything_is_answered(server_pki: DemoPKI, held: InProcessServer) -> None:
    total = 1100
    peer = Peer(connect(server_pki, held.server.port if held.server else 0))
    # 1100 frames: the server takes 1024, the rest (76 KB) waits in socket buffers, so this returns
    peer.send(*(Message(i, Opcode.ECDSA_SIGN_SHA256, bytes(32), ski=SKI) for i in range(total)))
    (edge,) = wait_until(held.connections, "the server's connection")
    wait_until(lambda: edge._reading_paused and edge.conn.in_flight >= 1024, "reading paused at 1024")  # type: ignore[attr-defined]
    held.settle()  # whatever was already read and scheduled on the server's loop has now run
    assert edge.conn.in_flight == 1024  # type: ignore[attr-defined]
    assert edge.conn.requests_seen == 1024  # type: ignore[attr-defined]
    assert edge._reading_paused  # type: ignore[attr-defined]
    held.key.release.set()
    replies = peer.receive(total, timeout=30)
    assert sorted(m.id for m in replies) == list(range(total))
    assert all(m.opcode == Opcode.RESPONSE for m in replies)
    assert held.key.started == total
    peer.close()


def test_a_peer_that_does_not_read_replies_stops_being_read(server_pki: DemoPKI, held: InProcessServer) -> None:
    """Write back-pressure: while replies pile up unread, the server stops reading that peer
    (so its memory stays bounded), then answers everything once the peer reads."""
    held.key.release.set()
    peer = Peer(connect(server_pki, held.server.port if held.server else 0))
    batch = b"".join(encode_message(Message(i, Opcode.PING, b"p")) for i in range(100))
    (edge,) = wait_until(held.connections, "the server's connection")

    def paused() -> bool:
        return bool(edge._writing_paused and edge._reading_paused)  # type: ignore[attr-defined]

    # Send until the server has paused both directions, a small batch at a time and only while the socket is
    # writable (free space of at least half what is queued: far more than a batch), so that a send never blocks
    # on a server that paused meanwhile; a slow server only makes this wait longer. Timeouts decide failure only.
    sent_batches = 0
    peer.sock.settimeout(60)
    deadline = time.monotonic() + 120
    while not paused():
        if sent_batches == 1000:  # 100 MB: far more than socket buffers hold
            raise AssertionError("the server kept reading 100 MB without the peer reading a reply")
        assert time.monotonic() < deadline, "the server neither paused nor read on"
        _, writable, _ = select.select([], [peer.sock], [], 0.05)
        if writable:
            peer.sock.sendall(batch)
            sent_batches += 1
    held.settle()
    assert paused()
    assert sent_batches > 10
    replies = peer.receive(sent_batches * 100, timeout=60)
    assert all(m.opcode == Opcode.PONG for m in replies)
    peer.close()
