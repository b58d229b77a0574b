"""Load, pipelining and failover against real key-server processes: 10,000 ops over 2 connections,
SIGKILL of one of two servers under load, SIGSTOP (timeouts and load moving), restart and probe-in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from keyless.client import KeylessClient, OperationTimeout, RemoteKey, make_ssl_context
from keyless.keys.schemes import SignatureScheme
from keyless.pki import DemoPKI
from tests.support.keyserver import KeyServerProcess, start_keyserver
from tests.support.waiting import async_wait_until

SCHEME = SignatureScheme.ECDSA_SECP256R1_SHA256


def p256(pki: DemoPKI) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.site_cert("ecdsa-p256").read_bytes())


def make_client(pki: DemoPKI, ports: list[int], **options: object) -> KeylessClient:
    context = make_ssl_context(pki.edge_cert, pki.edge_key, pki.ca)
    return KeylessClient([f"127.0.0.1:{p}" for p in ports], context, server_name="localhost",
                         **options)  # type: ignore[arg-type]


def check(public: ec.EllipticCurvePublicKey, message: bytes, signature: bytes) -> None:
    public.verify(signature, message, ec.ECDSA(hashes.SHA256()))


def test_10000_concurrent_operations_over_two_connections(client_pki: DemoPKI, keyserver: KeyServerProcess) -> None:
    cert = p256(client_pki)
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    messages = [b"message %d" % i for i in range(10_000)]

    async def main() -> tuple[list[bytes], list[int]]:
        # The last of 10,000 pipelined requests waits for the 9,999 before it: a timeout fit for one request
        # would decide the normal path on a loaded machine; here it only decides failure.
        async with make_client(client_pki, [keyserver.port], connections_per_server=2, health_interval=0,
                               timeout=120) as client:
            key = client.remote_key(cert)
            signatures = await asyncio.gather(*(key.sign(SCHEME, m) for m in messages))
            (endpoint,) = client.endpoints
            sent = [c.requests_sent for c in endpoint._open]
            writes = sum(c.writes for c in endpoint._open)
            return signatures, sent, writes

    before = keyserver.sign_count()
    signatures, sent, writes = asyncio.run(main())
    assert writes <= 4  # the burst left in one write per connection (coalesced), not 10,000
    assert keyserver.sign_count() - before == 10_000
    assert len(sent) == 2 and sum(sent) == 10_000 and min(sent) > 1000  # both connections carried load
    for message, signature in zip(messages, signatures, strict=True):
        check(public, message, signature)  # each answer matched its own request


class Load:
    """Closed-loop load: ``workers`` tasks signing back to back; records every outcome."""

    def __init__(self, key: RemoteKey, public: ec.EllipticCurvePublicKey, workers: int) -> None:
        self.key = key
        self.public = public
        self.workers = workers
        self.done = 0
        self.failures: list[BaseException] = []
        self.running = True

    async def worker(self, index: int) -> None:
        n = 0
        while self.running:
            message = b"w%d-%d" % (index, n)
            n += 1
            try:
                signature = await self.key.sign(SCHEME, message)
            except Exception as exc:
                self.failures.append(exc)
                continue
            check(self.public, message, signature)
            self.done += 1

    async def run_until(self, event: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self.worker(i)) for i in range(self.workers)]
        await event.wait()
        self.running = False
        await asyncio.gather(*tasks)


def test_sigkill_under_load_loses_nothing_and_the_server_comes_back(client_pki: DemoPKI, tmp_path: Path) -> None:
    cert = p256(client_pki)
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    a = start_keyserver(client_pki, tmp_path)
    b = start_keyserver(client_pki, tmp_path)
    restarted: KeyServerProcess | None = None
    try:
        async def main() -> tuple[Load, int]:
            nonlocal restarted
            async with make_client(client_pki, [a.port, b.port], health_interval=0.2, timeout=30.0) as client:
                load = Load(client.remote_key(cert), public, workers=40)
                stop = asyncio.Event()
                runner = asyncio.create_task(load.run_until(stop))
                try:
                    a_endpoint = next(e for e in client.endpoints if e.port == a.port)
                    await async_wait_until(lambda: a_endpoint.completed > 50 or load.failures, "A to carry load")
                    done_before_kill = load.done
                    a.proc.send_signal(signal.SIGKILL)
                    a.proc.wait(30)
                    await async_wait_until(lambda: load.done > done_before_kill + 100 or load.failures,
                                           "load to continue on B")
                    await async_wait_until(lambda: not a_endpoint.healthy, "A to be marked down")
                    restarted = await asyncio.to_thread(start_keyserver, client_pki, tmp_path, port=a.port)
                    await async_wait_until(lambda: a_endpoint.healthy, "the restarted server to be probed back in")
                    completed_at_restart = a_endpoint.completed
                    await async_wait_until(lambda: a_endpoint.completed > completed_at_restart + 50 or load.failures,
                                           "new load to reach the restarted server")
                finally:
                    stop.set()
                    await runner
                return load, a_endpoint.completed

        load, _ = asyncio.run(main())
        assert load.failures == []
        assert restarted is not None
        assert restarted.sign_count() > 50  # new load reached the restarted server
    finally:
        a.kill()
        b.stop()
        if restarted is not None:
            restarted.stop()


def test_sigstop_times_out_within_the_deadline_and_load_moves(client_pki: DemoPKI, tmp_path: Path) -> None:
    cert = p256(client_pki)
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    a = start_keyserver(client_pki, tmp_path)
    b = start_keyserver(client_pki, tmp_path)
    try:
        async def main() -> None:
            loop = asyncio.get_running_loop()
            # A frozen server is found by its requests' timeout and by health pings (5 s each): generous for a
            # loaded machine, where a live server must never look frozen.
            async with make_client(client_pki, [a.port, b.port], health_interval=0.2, health_timeout=5.0,
                                   timeout=5.0) as client:
                key = client.remote_key(cert)
                await asyncio.gather(*(key.sign(SCHEME, b"warm %d" % i) for i in range(200)))
                a_endpoint, b_endpoint = sorted(client.endpoints, key=lambda e: e.port != a.port)
                assert a_endpoint.completed > 0 and b_endpoint.completed > 0
                os.kill(a.proc.pid, signal.SIGSTOP)
                try:
                    # A burst while A is frozen: the calls that hit A time out (5 s) and are retried on B, all
                    # within their deadline (generous: only a call that waits for A past it fails).
                    start = loop.time()
                    deadline = start + 30

                    async def one(i: int) -> float:
                        message = b"burst %d" % i
                        signature = await key.sign(SCHEME, message, deadline=deadline)
                        check(public, message, signature)
                        return loop.time() - start

                    outcomes = await asyncio.gather(*(one(i) for i in range(200)), return_exceptions=True)
                    for outcome in outcomes:
                        assert isinstance(outcome, float | OperationTimeout), outcome
                    # The ones that hit A timed out and were retried on B within the deadline.
                    assert all(isinstance(o, float) for o in outcomes)
                    await async_wait_until(lambda: not a_endpoint.healthy, "A to be marked down")
                    # New load goes to B only.
                    a_before, b_before = a_endpoint.completed, b_endpoint.completed
                    await asyncio.gather(*(key.sign(SCHEME, b"after %d" % i) for i in range(300)))
                    assert a_endpoint.completed == a_before
                    assert b_endpoint.completed >= b_before + 300
                    # With a single frozen server, a call fails with OperationTimeout at its deadline.
                    async with make_client(client_pki, [a.port], health_interval=0, timeout=0.4) as lone:
                        lone_key = lone.remote_key(cert)
                        t0 = loop.time()
                        with pytest.raises(OperationTimeout):
                            await asyncio.wait_for(lone_key.sign(SCHEME, b"frozen"), 60)  # 60 s: a hang
                        assert loop.time() - t0 >= 0.35  # not before its timeout; how much after is not asserted
                finally:
                    os.kill(a.proc.pid, signal.SIGCONT)
                # Thawed: the health check brings A back and it takes load again.
                await async_wait_until(lambda: a_endpoint.healthy, "A to be probed back in")
                a_before = a_endpoint.completed
                await asyncio.gather(*(key.sign(SCHEME, b"thawed %d" % i) for i in range(300)))
                assert a_endpoint.completed > a_before

        asyncio.run(main())
    finally:
        a.stop()
        b.stop()


@contextlib.contextmanager
def two_keyservers_on_one_port(pki: DemoPKI, tmp_path: Path) -> Iterator[tuple[KeyServerProcess, KeyServerProcess]]:
    """Real key servers on 127.0.0.1 and 127.0.0.2, same port (skips where 127.0.0.2 cannot be bound)."""
    first = start_keyserver(pki, tmp_path)
    try:
        second = start_keyserver(pki, tmp_path, listen="127.0.0.2", port=first.port)
    except RuntimeError as exc:
        first.stop()
        pytest.skip(f"cannot bind 127.0.0.2 here: {exc}")
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def test_a_name_resolving_to_two_addresses_gives_two_servers(client_pki: DemoPKI, tmp_path: Path) -> None:
    """Two real key servers on 127.0.0.1 and 127.0.0.2, same port, behind one name (the resolver is
    injected: this machine's /etc/hosts maps localhost to one address only)."""
    cert = p256(client_pki)
    with two_keyservers_on_one_port(client_pki, tmp_path) as (first, second):
        async def resolver(host: str, port: int) -> list[str]:
            assert (host, port) == ("keyservers.test", first.port)
            return ["127.0.0.1", "127.0.0.2", "127.0.0.1"]

        async def main() -> list[tuple[str, int]]:
            context = make_ssl_context(client_pki.edge_cert, client_pki.edge_key, client_pki.ca)
            async with KeylessClient([f"keyservers.test:{first.port}"], context, server_name="localhost",
                                     health_interval=0, resolver=resolver) as client:
                key = client.remote_key(cert)
                for _ in range(10):
                    await asyncio.gather(*(key.sign(SCHEME, b"m%d" % i) for i in range(50)))
                return [(e.host, e.completed) for e in client.endpoints]

        endpoints = asyncio.run(main())
        assert [host for host, _ in endpoints] == ["127.0.0.1", "127.0.0.2"]
        assert all(completed > 0 for _, completed in endpoints)
        assert first.sign_count() + second.sign_count() == 500
        assert first.sign_count() > 0 and second.sign_count() > 0


def test_names_are_resolved_again(client_pki: DemoPKI, tmp_path: Path) -> None:
    """The name's addresses change: the new one joins, the old one leaves (after draining)."""
    cert = p256(client_pki)
    answers = {"now": ["127.0.0.1"]}

    resolutions = [0]

    async def resolver(host: str, port: int) -> list[str]:
        resolutions[0] += 1
        if answers["now"] == ["fail"]:
            raise OSError("temporary failure in name resolution")
        return answers["now"]

    with two_keyservers_on_one_port(client_pki, tmp_path) as (first, second):
        async def main() -> None:
            context = make_ssl_context(client_pki.edge_cert, client_pki.edge_key, client_pki.ca)
            async with KeylessClient([f"keyservers.test:{first.port}"], context, server_name="localhost",
                                     health_interval=0.05, resolve_interval=0.1, timeout=5.0,
                                     resolver=resolver) as client:
                key = client.remote_key(cert)
                await asyncio.gather(*(key.sign(SCHEME, b"a%d" % i) for i in range(100)))
                (old,) = client.endpoints
                answers["now"] = ["fail"]  # a DNS hiccup keeps what we have
                failing_since = resolutions[0]
                await async_wait_until(lambda: resolutions[0] >= failing_since + 3, "three failed resolutions")
                assert client.endpoints == [old]
                answers["now"] = ["127.0.0.2"]
                await async_wait_until(lambda: [e.host for e in client.endpoints] == ["127.0.0.2"], "the new address")
                await asyncio.gather(*(key.sign(SCHEME, b"b%d" % i) for i in range(100)))
                # After the drain period (one timeout) the old pool is closed.
                await async_wait_until(lambda: old.stats().connections == 0, "the old pool to close")

        before = first.sign_count()
        asyncio.run(main())
        assert first.sign_count() - before == 100
        assert second.sign_count() == 100
