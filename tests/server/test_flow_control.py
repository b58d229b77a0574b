"""The in-flight cap, with the server in-process so the test can hold its key operations.

A key handle that blocks until the test releases it keeps requests in flight; the client (a real
``ssl`` socket) sends more than 1024 of them on one connection. The server must stop at 1024 —
stop reading, not queue more — and answer all of them once the key is released.
"""

from __future__ import annotations

import asyncio
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
        assert ready.wait(10)

    def _run(self, main: object, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(main())  # type: ignore[operator]
        self.loop.run_forever()

    def connections(self) -> list[object]:
        assert self.server is not None
        return list(self.server.connections)

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
    (edge,) = _wait_for(lambda: held.connections(), 10)
    deadline = time.monotonic() + 20
    while edge.conn.in_flight < 1024 and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    time.sleep(0.3)  # give it every chance to read further
    assert edge.conn.in_flight == 1024  # type: ignore[attr-defined]
    assert edge.conn.requests_seen == 1024  # type: ignore[attr-defined]
    assert edge._reading_paused  # type: ignore[attr-defined]
    held.key.release.set()
    replies = peer.receive(total, timeout=30)
    assert sorted(m.id for m in replies) == list(range(total))
    assert all(m.opcode == Opcode.RESPONSE for m in replies)
    assert held.key.started == total
    peer.close()


def _wait_for(probe: object, timeout: float) -> list[object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()  # type: ignore[operator]
        if found:
            return list(found)
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_a_peer_that_does_not_read_replies_stops_being_read(server_pki: DemoPKI, held: InProcessServer) -> None:
    """Write back-pressure: while replies pile up unread, the server stops reading that peer
    (so its memory stays bounded), then answers everything once the peer reads."""
    held.key.release.set()
    peer = Peer(connect(server_pki, held.server.port if held.server else 0))
    batch = b"".join(encode_message(Message(i, Opcode.PING, b"p")) for i in range(100))
    sent_batches = 0
    peer.sock.settimeout(2.0)
    try:
        for _ in range(1000):  # up to 100 MB: far more than socket buffers hold
            peer.sock.sendall(batch)
            sent_batches += 1
        raise AssertionError("the server kept reading 100 MB without the peer reading a reply")
    except TimeoutError:
        pass  # the server stopped reading us (the last batch may be partly sent)
    (edge,) = held.connections()
    assert edge._writing_paused and edge._reading_paused  # type: ignore[attr-defined]
    assert sent_batches > 10
    replies = peer.receive(sent_batches * 100, timeout=60)
    assert all(m.opcode == Opcode.PONG for m in replies)
    peer.close()
