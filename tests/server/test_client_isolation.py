"""One client's garbage cannot cost another client a single reply (issue 15, "Isolation between clients").

The key server runs in-process (so the test can read every connection's in-flight count) on real
keys, real sockets and real mutual TLS; one client pipelines valid RSA and ECDSA signatures while
another pipelines requests built to fail in every way we can think of — deeply nested request
contexts (tag 0x16) above all, which used to raise RecursionError while the failure was logged and,
on the RSA thread-pool path, abort the delivery of other connections' results. The victim must get
every reply, correct; the attacker one answer per request; every in-flight count must return to
zero; and a drain must finish without timing out. A second test does the same through SIGTERM on a
real key-server process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import selectors
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyless.keys.loader import KeySource, load_keys
from keyless.keys.operations import PrivateKey
from keyless.keys.schemes import KeyKind
from keyless.keys.ski import ski_of
from keyless.keys.store import InMemoryKeyStore
from keyless.pki import DemoPKI
from keyless.protocol import ErrorCode, Message, Opcode, encode_message
from keyless.server.config import load_config
from keyless.server.request_context import MAX_CONTEXT_BYTES, nesting_depth, request_id_of
from keyless.server.service import KeyServer
from tests.support.keyserver import keyserver_config, start_keyserver
from tests.support.verify import payload_for, verify
from tests.support.wire import Peer, connect

NESTED = b"[" * 3000
NESTED_OBJECT = b'{"request_id":' * 3000
DEEP_VALID = b'{"request_id": "r", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}"
CONTEXTS = (NESTED, NESTED_OBJECT, DEEP_VALID, b"{" * 60000, b"\xff\xfe not json", b'{"request_id": 7}',
            b'"just a string"', b'{"request_id": "\x1b[31mred\\u0000"}', b"[1e999999]", b"")


def _key(pki: DemoPKI, name: str) -> tuple[PrivateKey, bytes]:
    key: Any = load_pem_private_key(pki.site_key(name).read_bytes(), None)
    return key, ski_of(key.public_key())


class InProcessServer:
    """A ``KeyServer`` on its own event-loop thread, with the demo PKI's real keys."""

    def __init__(self, pki: DemoPKI, tmp_path: Path, extra_keys: tuple[Any, ...] = (), **overrides: Any) -> None:
        path = tmp_path / f"isolation-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(keyserver_config(pki, **overrides)))
        self.config = load_config(path, environ={})
        store = InMemoryKeyStore([*load_keys([KeySource("dir", pki.keys_dir)]).store, *extra_keys])
        self.loop = asyncio.new_event_loop()
        self.server: KeyServer | None = None
        ready = threading.Event()

        async def start() -> None:
            self.server = KeyServer(self.config, store)
            await self.server.start()
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(30), "in-process key server did not start"
        assert self.server is not None
        self.port: int = self.server.port

    def in_flight(self) -> list[int]:
        """Every open connection's in-flight count, read on the event loop."""
        async def read() -> list[int]:
            assert self.server is not None
            return [edge.conn.in_flight for edge in self.server.connections]

        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(30)

    def drain(self, timeout: float) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.drain(timeout=timeout), self.loop).result(timeout + 30)

    def stop(self) -> None:
        if self.server is not None and self.server.listening:
            self.drain(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def shared(server_pki: DemoPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    server = InProcessServer(server_pki, tmp_path_factory.mktemp("isolation"), rsa_threads=1)
    yield server
    server.stop()


def _wait_until(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Victim:
    """The well-behaved client: valid RSA and ECDSA signatures, each reply verified."""

    def __init__(self, pki: DemoPKI, port: int) -> None:
        self.peer = Peer(connect(pki, port, timeout=60))
        self.keys = {Opcode.RSA_SIGN_SHA256: _key(pki, "rsa-2048"), Opcode.ECDSA_SIGN_SHA256: _key(pki, "ecdsa-p256")}
        self.next_id = 0

    def requests(self, count: int) -> list[tuple[Message, PrivateKey]]:
        out = []
        for _ in range(count):
            opcode = Opcode.RSA_SIGN_SHA256 if self.next_id % 3 else Opcode.ECDSA_SIGN_SHA256
            key, ski = self.keys[opcode]
            out.append((Message(self.next_id, opcode, payload_for(opcode, key), ski=ski), key))
            self.next_id += 1
        return out

    def check(self, sent: list[tuple[Message, PrivateKey]], replies: list[Message]) -> None:
        by_id = {m.id: m for m in replies}
        assert sorted(by_id) == sorted(m.id for m, _ in sent), "the victim's replies do not match its requests"
        for message, key in sent:
            reply = by_id[message.id]
            assert reply.opcode == Opcode.RESPONSE and reply.payload is not None, f"victim {message.id}: {reply}"
            verify(message.opcode or 0, key, message.payload or b"", reply.payload)

    def pipeline(self, sent: list[tuple[Message, PrivateKey]]) -> Pipelined:
        return Pipelined(self.peer, b"".join(encode_message(m) for m, _ in sent), len(sent))


class Pipelined:
    """Send ``data`` and collect ``count`` replies on one connection, from one thread of its own,
    sending and reading as the socket allows (an SSL socket must not be used by two threads at once,
    and sending everything before reading could deadlock against the server's back-pressure)."""

    def __init__(self, peer: Peer, data: bytes, count: int, timeout: float = 120.0) -> None:
        self.peer = peer
        self.timeout = timeout
        self._replies: list[Message] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(data, count), daemon=True)
        self._thread.start()

    def _run(self, data: bytes, count: int) -> None:
        sock, decoder = self.peer.sock, self.peer.decoder
        deadline = time.monotonic() + self.timeout  # decides failure only
        view = memoryview(data)
        sent = 0
        sock.setblocking(False)
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
                while len(self._replies) < count:
                    while isinstance(message := decoder.next_message(), Message):
                        self._replies.append(message)
                    if len(self._replies) >= count:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"got {len(self._replies)} of {count} replies")
                    progressed = False
                    try:
                        chunk = sock.recv(262144)
                        if not chunk:
                            raise ConnectionError(f"connection closed after {len(self._replies)} of {count} replies")
                        decoder.receive_data(chunk)
                        progressed = True
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        pass
                    if sent < len(view):
                        try:
                            sent += sock.send(view[sent : sent + 65536])
                            progressed = True
                        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                            pass
                    if not progressed:
                        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if sent < len(view) else 0)
                        selector.modify(sock, events)
                        selector.select(0.05)
        except BaseException as exc:
            self._error = exc
        finally:
            sock.settimeout(60)

    def replies(self) -> list[Message]:
        self._thread.join(self.timeout + 30)
        if self._error is not None:
            raise self._error
        assert not self._thread.is_alive(), "the pipelined exchange did not end"
        return self._replies


def _failing_requests(pki: DemoPKI, start: int, count: int, *, pool_only: bool = False) -> list[Message]:
    """Requests built to fail, each carrying a hostile request context. The first two shapes fail
    on the RSA thread pool (``pool_only``: only those, the issue's reproduction)."""
    _, rsa_ski = _key(pki, "rsa-2048")
    _, ec_ski = _key(pki, "ecdsa-p256")
    shapes: list[Callable[[int, bytes], Message]] = [
        lambda i, c: Message(i, Opcode.RSA_SIGN_SHA256, b"short digest", ski=rsa_ski, request_context=c),
        lambda i, c: Message(i, Opcode.RSA_DECRYPT, b"\x00" * 17, ski=rsa_ski, request_context=c),
        lambda i, c: Message(i, Opcode.ECDSA_SIGN_SHA256, b"x", ski=ec_ski, request_context=c, sni=b"\x1b\n\x00"),
        lambda i, c: Message(i, Opcode.ECDSA_SIGN_SHA256, bytes(32), ski=bytes(20), request_context=c),
        lambda i, c: Message(i, Opcode.RSA_SIGN_SHA256, bytes(32), request_context=c),
        lambda i, c: Message(i, 0x99, b"?", request_context=c),
        lambda i, c: Message(i, Opcode.ERROR, b"?", request_context=c),
        lambda i, c: Message(i, None, b"?", request_context=c),
        lambda i, c: Message(i, Opcode.CUSTOM, b"?", custom_func_name=b"f", request_context=c),
        lambda i, c: Message(i, Opcode.SEAL, b"?", request_context=c),
        lambda i, c: Message(i, Opcode.RSA_SIGN_SHA256, bytes(32), ski=rsa_ski[:19], request_context=c),
    ]
    if pool_only:
        shapes = shapes[:2]
    contexts = [c for c in CONTEXTS if len(c) < 60000] + [NESTED]
    return [shapes[n % len(shapes)](start + n, contexts[n % len(contexts)]) for n in range(count)]


def test_nested_request_contexts_cannot_cost_another_client_a_reply(server_pki: DemoPKI, tmp_path: Path) -> None:
    server = InProcessServer(server_pki, tmp_path, rsa_threads=1)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    server_log = logging.getLogger("keyless.keyserver")
    level = server_log.level
    server_log.setLevel(logging.INFO)
    server_log.addHandler(handler)
    try:
        victim = Victim(server_pki, server.port)
        for pool_only in (True, False):  # the reproduction first, then every failing shape
            attacker = Peer(connect(server_pki, server.port, timeout=60))
            garbage = _failing_requests(server_pki, 0, 600, pool_only=pool_only)
            sent = victim.requests(600)
            hostile = Pipelined(attacker, b"".join(encode_message(m) for m in garbage), len(garbage))
            victim.check(sent, victim.pipeline(sent).replies())
            replies = hostile.replies()
            assert sorted(m.id for m in replies) == [m.id for m in garbage]
            assert all(m.opcode == Opcode.ERROR for m in replies)
            attacker.close()
        _wait_until(lambda: all(n == 0 for n in server.in_flight()), 30, "every in-flight count to return to zero")
        server.drain(timeout=60)  # finishes quietly only when nothing is left in flight
        messages = [r.getMessage() for r in records]
        assert "drained" in messages
        assert not [m for m in messages if "drain timed out" in m]
        assert not [m for m in messages if m.startswith("internal error")], "a per-request error boundary fired"
        victim.peer.close()
    finally:
        server_log.removeHandler(handler)
        server_log.setLevel(level)
        server.stop()


class BuggyKey:
    """A key backend with a bug: ``execute`` returns something that is not bytes. The reply cannot be
    encoded, so the error escapes our per-request code: exactly what the error boundaries are for."""

    kind = KeyKind.ECDSA
    source = "test"

    def __init__(self, ski: bytes, offload: bool) -> None:
        self.ski = ski
        self.offload = offload

    def execute(self, opcode: int, payload: bytes) -> bytes:
        return 12345  # type: ignore[return-value]


def test_a_bug_answering_one_request_costs_only_that_request(server_pki: DemoPKI, tmp_path: Path) -> None:
    inline, pooled = BuggyKey(b"\x01" * 20, offload=False), BuggyKey(b"\x02" * 20, offload=True)
    server = InProcessServer(server_pki, tmp_path, extra_keys=(inline, pooled), rsa_threads=1)
    try:
        victim = Victim(server_pki, server.port)
        attacker = Peer(connect(server_pki, server.port, timeout=60))
        buggy = [Message(i, Opcode.ECDSA_SIGN_SHA256, bytes(32), ski=(inline, pooled)[i % 2].ski) for i in range(300)]
        sent = victim.requests(300)
        hostile = Pipelined(attacker, b"".join(encode_message(m) for m in buggy), len(buggy))
        victim.check(sent, victim.pipeline(sent).replies())
        replies = hostile.replies()
        assert sorted(m.id for m in replies) == list(range(len(buggy)))
        assert {m.error_code for m in replies} == {ErrorCode.INTERNAL}
        _wait_until(lambda: all(n == 0 for n in server.in_flight()), 30, "in-flight counts to return to zero")
        assert attacker.request(Message(9999, Opcode.PING, b"still here")).opcode == Opcode.PONG
        victim.peer.close()
        attacker.close()
    finally:
        server.stop()


# -- hypothesis: any well-framed garbage, pipelined with a victim's signatures ---------------------

_TAG_VALUES = st.one_of(st.binary(max_size=64), st.sampled_from(CONTEXTS[:3]), st.just(b"[" * 2000))
_GARBAGE = st.builds(
    Message,
    id=st.integers(0, 2**32 - 1),
    opcode=st.one_of(st.none(), st.integers(0, 255), st.sampled_from(list(Opcode))),
    payload=st.one_of(st.none(), st.binary(max_size=600)),
    ski=st.one_of(st.none(), st.binary(min_size=20, max_size=20), st.binary(max_size=30)),
    sni=st.one_of(st.none(), st.binary(max_size=300)),
    client_ip=st.one_of(st.none(), st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16)),
    digest=st.one_of(st.none(), st.binary(max_size=40)),
    custom_func_name=st.one_of(st.none(), st.binary(max_size=20)),
    extra=st.one_of(st.none(), st.binary(max_size=40)),
    span_context=st.one_of(st.none(), _TAG_VALUES),
    request_context=st.one_of(st.none(), _TAG_VALUES),
    compliance_region=st.one_of(st.none(), st.integers(0, 255)),
    unknown=st.lists(st.tuples(st.integers(0x30, 0xFF), st.binary(max_size=32)), max_size=3).map(tuple),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(garbage=st.lists(_GARBAGE, min_size=1, max_size=30), real_keys=st.lists(st.sampled_from(
    ["rsa-2048", "ecdsa-p256", "rsa-4096", "ed25519"]), max_size=10))
def test_any_well_framed_garbage_costs_only_its_own_requests(
    shared: InProcessServer, server_pki: DemoPKI, garbage: list[Message], real_keys: list[str]
) -> None:
    # Aim some of the garbage at real keys, so it reaches the key operations (inline and pooled).
    garbage = [
        dataclasses.replace(m, ski=_key(server_pki, name)[1]) if index < len(real_keys) else m
        for index, (m, name) in enumerate(zip(garbage, real_keys + [""] * len(garbage), strict=False))
    ]
    frames = [frame for frame in map(_encoded_or_none, garbage) if frame is not None]
    victim = Victim(server_pki, shared.port)
    attacker = Peer(connect(server_pki, shared.port, timeout=60))
    try:
        sent = victim.requests(12)
        hostile = Pipelined(attacker, b"".join(frames), len(frames), timeout=60)
        victim.check(sent, victim.pipeline(sent).replies())
        replies = hostile.replies()
        assert len(replies) == len(frames)
        assert all(m.opcode in (Opcode.RESPONSE, Opcode.PONG, Opcode.ERROR) for m in replies)
    finally:
        victim.peer.close()
        attacker.close()
    _wait_until(lambda: all(n == 0 for n in shared.in_flight()), 30, "in-flight counts to return to zero")


def _encoded_or_none(message: Message) -> bytes | None:
    try:
        return encode_message(message)
    except ValueError:  # items too big for one frame: not something a peer can send either
        return None


def test_a_malformed_frame_closes_only_its_own_connection(shared: InProcessServer, server_pki: DemoPKI) -> None:
    """Framing errors (an IP item of 5 bytes, an opcode twice) end the sender's connection after
    answering 0x07; the other client's pipelined signatures are all answered."""
    victim = Victim(server_pki, shared.port)
    attacker = Peer(connect(server_pki, shared.port, timeout=60))
    before = _failing_requests(server_pki, 0, 20)
    bad = Message(20, Opcode.PING, b"x", client_ip=b"12345", request_context=NESTED)
    sent = victim.requests(60)
    attacker.send(*before, bad)
    victim.peer.send(*(m for m, _ in sent))
    victim.check(sent, victim.peer.receive(len(sent), timeout=60))
    replies = attacker.receive(len(before) + 1, timeout=60)
    by_id = {m.id: m for m in replies}
    assert sorted(by_id) == list(range(21)) and by_id[20].error_code == ErrorCode.FORMAT
    assert attacker.closed_by_peer(timeout=30)
    victim.peer.close()
    attacker.close()
    _wait_until(lambda: all(n == 0 for n in shared.in_flight()), 30, "in-flight counts to return to zero")


def test_sigterm_drains_promptly_after_hostile_contexts(server_pki: DemoPKI, tmp_path: Path) -> None:
    """The issue's reproduction end to end: a real key-server process, two clients, SIGTERM. Every
    victim reply arrives and the drain finishes without timing out (the deadline only decides failure)."""
    with start_keyserver(server_pki, tmp_path, rsa_threads=1) as ks:
        victim = Victim(server_pki, ks.port)
        attacker = Peer(connect(server_pki, ks.port, timeout=60))
        garbage = _failing_requests(server_pki, 0, 400, pool_only=True)
        sent = victim.requests(400)
        hostile = Pipelined(attacker, b"".join(encode_message(m) for m in garbage), len(garbage))
        victim.check(sent, victim.pipeline(sent).replies())
        assert len(hostile.replies()) == len(garbage)
        ks.send_signal(signal.SIGTERM)
        assert victim.peer.closed_by_peer(timeout=60) and attacker.closed_by_peer(timeout=60)
        assert ks.proc.wait(90) == 0
        log = ks.log()
        assert "drained" in log and "drain timed out" not in log
        assert "request failed" in log and "Traceback" not in log
        victim.peer.close()
        attacker.close()


# -- the context parser on its own -------------------------------------------------------------------


@pytest.mark.parametrize("context", (*CONTEXTS, b"[" * 100000, b'"' + b"\\" * 5000))
def test_hostile_contexts_are_ignored(context: bytes) -> None:
    assert request_id_of(context) is None


def test_a_plain_request_id_is_read_and_capped() -> None:
    assert request_id_of(b'{"request_id": "abc-123", "trace": {"a": [1, 2]}}') == "abc-123"
    assert request_id_of(b'{"request_id": "' + b"r" * 500 + b'"}') == "r" * 64
    assert request_id_of(b'{"request_id": "' + b"r" * MAX_CONTEXT_BYTES + b'"}') is None  # too big: ignored


@given(st.binary(max_size=200) | st.text(alphabet="[]{}\"\\ ,:1a", max_size=300).map(str.encode))
def test_the_context_reader_never_raises(data: bytes) -> None:
    request_id_of(data)
    assert nesting_depth(data) >= 0


def test_brackets_inside_strings_do_not_count() -> None:
    assert nesting_depth(b'{"a": "[[[[[[[[[[[[[[[[[[[[\\"[[[["}') == 1
    assert request_id_of(b'{"request_id": "[[[[[[[[[[[[[[[[[[[[[[["}') == "[[[[[[[[[[[[[[[[[[[[[[["
