"""The asyncio adapter on real 127.0.0.1 sockets, with Python's ssl (OpenSSL) as the client."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from keyless.keys.base import KeyOperationError
from keyless.keys.local import LocalKey
from keyless.keys.schemes import SignatureScheme
from keyless.tls.asyncio_adapter import TLSStream, refresh_ticket_keys, start_tls_server
from keyless.tls.config import CertifiedKey, ServerConfig, static_certificate
from keyless.tls.events import ConnectionClosed, HandshakeComplete, KeyOperationRequired
from keyless.tls.tickets import RotatingKeySource, TicketKeyRing
from tests.conftest import require_tool
from tests.support.waiting import async_wait_until
from tests.tls.tls13_helpers import HOSTNAME, client_context, pki, server_config, site

pytestmark = pytest.mark.timeout(60)


class AwaitedKey:
    """A key answered asynchronously, like a remote key (no ``sign_sync``): the adapter must await it."""

    def __init__(self, inner: LocalKey, delay: float = 0.01, fail: bool = False, hang: bool = False) -> None:
        self.inner, self.delay, self.fail, self.hang = inner, delay, fail, hang
        self.calls = 0

    @property
    def public_key(self) -> Any:
        return self.inner.public_key

    @property
    def ski(self) -> bytes:
        return self.inner.ski

    @property
    def signature_schemes(self) -> frozenset[SignatureScheme]:
        return self.inner.signature_schemes

    blocking = None  # only awaited, like a remote key

    def with_context(self, **context: str | None) -> AwaitedKey:
        return self

    async def sign(self, scheme: SignatureScheme, message: bytes) -> bytes:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        await asyncio.sleep(self.delay)
        if self.fail:
            raise KeyOperationError("key server said no")
        return self.inner.sign_sync(scheme, message)

    async def decrypt(self, ciphertext: bytes) -> bytes:
        raise KeyOperationError("not used")


def config_with_key(key: object, kind: str = "ecdsa-p256", **overrides: Any) -> ServerConfig:
    chain = site(kind)[0].chain
    return ServerConfig(certificate_callback=static_certificate(CertifiedKey(chain=chain, key=key)), **overrides)


async def echo(stream: TLSStream) -> None:
    while data := await stream.read():
        await stream.write(data)


class Server:
    def __init__(self, config: ServerConfig, handler: Callable[[TLSStream], Awaitable[None]] = echo,
                 **options: Any) -> None:
        self.config, self.handler, self.options = config, handler, options
        self.events: list[object] = []

    async def __aenter__(self) -> Server:
        self.server = await start_tls_server(self.handler, "127.0.0.1", 0, self.config,
                                             on_event=self.events.append, **self.options)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def connect(self, ctx: ssl.SSLContext | None = None, **kw: Any) -> tuple[asyncio.StreamReader,
                                                                                     asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=ctx or client_context(),
                                             server_hostname=HOSTNAME, **kw)


async def round_trip(server: Server, payload: bytes, **kw: Any) -> tuple[bytes, asyncio.StreamWriter]:
    reader, writer = await server.connect(**kw)
    writer.write(payload)
    await writer.drain()
    got = await reader.readexactly(len(payload))
    return got, writer


def test_echo_with_local_key() -> None:
    seen: list[tuple[Any, Any]] = []

    async def echo_noting_addresses(stream: TLSStream) -> None:
        seen.append((stream.peername, stream.sockname))
        await echo(stream)

    async def main() -> None:
        async with Server(server_config(), echo_noting_addresses) as server:
            got, writer = await round_trip(server, b"hello keyless")
            assert got == b"hello keyless"
            assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
            writer.close()
            await writer.wait_closed()
        assert len(server.of(KeyOperationRequired)) == 1
        (done,) = server.of(HandshakeComplete)
        assert done.version == 0x0304 and done.sni == HOSTNAME and not done.resumed
        assert seen and seen[0][0][0] == "127.0.0.1" and seen[0][1] == ("127.0.0.1", server.port)

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["rsa-2048", "ed25519"])
def test_other_local_keys(kind: str) -> None:
    async def main() -> None:
        async with Server(server_config(kind)) as server:
            got, writer = await round_trip(server, b"x" * 100)
            assert got == b"x" * 100
            writer.close()

    asyncio.run(main())


def test_awaited_key_is_used_once_per_full_handshake() -> None:
    key = AwaitedKey(site("ecdsa-p256")[0].key)  # type: ignore[arg-type]

    async def main() -> None:
        async with Server(config_with_key(key)) as server:
            for _ in range(3):
                got, writer = await round_trip(server, b"ping")
                assert got == b"ping"
                writer.close()
        assert key.calls == 3 and len(server.of(KeyOperationRequired)) == 3

    asyncio.run(main())


def test_failed_key_operation_sends_handshake_failure() -> None:
    key = AwaitedKey(site("ecdsa-p256")[0].key, fail=True)  # type: ignore[arg-type]

    async def main() -> None:
        async with Server(config_with_key(key)) as server:
            with pytest.raises(ssl.SSLError, match=r"HANDSHAKE_FAILURE|handshake failure"):
                await server.connect()
        (closed,) = server.of(ConnectionClosed)
        assert closed.alert_sent == 40

    asyncio.run(main())


def test_key_operation_timeout_sends_handshake_failure() -> None:
    key = AwaitedKey(site("ecdsa-p256")[0].key, hang=True)  # type: ignore[arg-type]

    async def main() -> None:
        async with Server(config_with_key(key), handshake_timeout=0.3) as server:
            with pytest.raises(ssl.SSLError, match=r"HANDSHAKE_FAILURE|handshake failure"):
                await server.connect()
        assert server.of(ConnectionClosed)[0].alert_sent == 40

    asyncio.run(main())


def test_stalled_client_is_dropped_at_the_handshake_deadline() -> None:
    async def main() -> None:
        async with Server(server_config(), handshake_timeout=0.2) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"\x16\x03\x01\x00\x10")  # a record header, then nothing
            assert await asyncio.wait_for(reader.read(), 30) == b""
            writer.close()

    asyncio.run(main())


def test_non_tls_client_gets_an_alert_and_close() -> None:
    async def main() -> None:
        async with Server(server_config()) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 30)
            assert answer == b"\x15\x03\x03\x00\x02\x02\x0a"  # fatal unexpected_message, then EOF
            writer.close()

    asyncio.run(main())


def test_close_notify_reaches_the_handler() -> None:
    seen: list[bytes] = []

    async def handler(stream: TLSStream) -> None:
        while data := await stream.read():
            seen.append(data)
        seen.append(b"<eof>")

    async def main() -> None:
        async with Server(server_config(), handler) as server:
            _reader, writer = await server.connect()
            writer.write(b"bye")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            await async_wait_until(lambda: seen and seen[-1] == b"<eof>", 'seen and seen[-1] == b"<eof>"')
        assert b"".join(seen) == b"bye<eof>"

    asyncio.run(main())


def test_bulk_transfer_with_a_slow_reader_is_bounded() -> None:
    total = 4 * 1024 * 1024
    peak: list[int] = []

    async def slow_sink(stream: TLSStream) -> None:
        # The client keeps sending while nobody reads: the adapter must pause the socket.
        await async_wait_until(lambda: stream._protocol._reading_paused, "the adapter to pause reading")
        peak.append(stream._protocol._buffered)
        received = 0
        while received < total:
            data = await stream.read(1 << 20)
            if not data:
                break
            received += len(data)
        await stream.write(received.to_bytes(8, "big"))

    async def main() -> None:
        async with Server(server_config(), slow_sink, read_buffer_limit=64 * 1024) as server:
            reader, writer = await server.connect()
            chunk = bytes(65536)
            for _ in range(total // len(chunk)):
                writer.write(chunk)
                await writer.drain()
            assert int.from_bytes(await reader.readexactly(8), "big") == total
            writer.close()
        assert peak and peak[0] <= 64 * 1024 + 512 * 1024  # limit plus at most a couple of socket reads

    asyncio.run(main())


def test_resumption_makes_no_key_operation() -> None:
    ring = TicketKeyRing.rotating()

    # Python's asyncio cannot pass a session to open_connection; use a blocking client in a thread.
    def blocking_client(port: int) -> list[bool]:
        ctx = client_context()
        reused: list[bool] = []
        session = None
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(
                raw, server_hostname=HOSTNAME, session=session
            ) as tls:
                tls.sendall(b"ping")
                assert tls.recv(4) == b"ping"
                reused.append(bool(tls.session_reused))
                session = tls.session
        return reused

    async def resume() -> None:
        async with Server(server_config(ticket_keys=ring)) as server:
            reused = await asyncio.to_thread(blocking_client, server.port)
        assert reused == [False, True]
        assert len(server.of(KeyOperationRequired)) == 1
        assert [e.resumed for e in server.of(HandshakeComplete)] == [False, True]

    asyncio.run(resume())


def test_handler_exception_closes_only_that_connection() -> None:
    async def broken(stream: TLSStream) -> None:
        raise RuntimeError("application bug")

    async def main() -> None:
        async with Server(server_config(), broken) as server:
            for _ in range(2):
                reader, writer = await server.connect()
                assert await asyncio.wait_for(reader.read(), 30) == b""  # close_notify, then EOF
                writer.close()

    asyncio.run(main())


def test_uvloop_echo_awaited_key_and_bulk() -> None:
    uvloop = pytest.importorskip("uvloop")
    key = AwaitedKey(site("ecdsa-p256")[0].key)  # type: ignore[arg-type]

    async def main() -> None:
        async with Server(server_config()) as server:
            got, writer = await round_trip(server, b"u" * 300_000)
            assert got == b"u" * 300_000
            writer.close()
        async with Server(config_with_key(key)) as server:
            got, writer = await round_trip(server, b"remote-like")
            assert got == b"remote-like"
            writer.close()
        assert key.calls == 1

    uvloop.run(main())


def tls12_rsa_client() -> ssl.SSLContext:
    ctx = client_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES128-GCM-SHA256")
    return ctx


class HangingDecryptKey(AwaitedKey):
    async def decrypt(self, ciphertext: bytes) -> bytes:
        self.calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_rsa_key_exchange_with_local_key_runs_in_a_thread() -> None:
    async def main() -> None:
        config = server_config("rsa-2048", enable_rsa_key_exchange=True)
        async with Server(config) as server:
            got, writer = await round_trip(server, b"rsa kx", ctx=tls12_rsa_client())
            assert got == b"rsa kx"
            assert writer.get_extra_info("ssl_object").cipher()[0] == "AES128-GCM-SHA256"
            writer.close()
        (request,) = server.of(KeyOperationRequired)
        assert request.kind == "decrypt"

    asyncio.run(main())


def test_decrypt_timeout_fails_at_finished_and_closes() -> None:
    key = HangingDecryptKey(site("rsa-2048")[0].key)  # type: ignore[arg-type]

    async def main() -> None:
        config = config_with_key(key, "rsa-2048", enable_rsa_key_exchange=True)
        async with Server(config, handshake_timeout=0.3) as server:
            with pytest.raises((ssl.SSLError, ConnectionError)):  # within the handshake timeout; 60 s: a hang
                await asyncio.wait_for(server.connect(tls12_rsa_client()), 60)
            await async_wait_until(lambda: server.of(ConnectionClosed), 'server.of(ConnectionClosed)')
        assert key.calls == 1
        (closed,) = server.of(ConnectionClosed)
        # Implicit rejection: no key error shows; the random premaster makes the client's Finished fail.
        assert closed.alert_sent in (20, 51), closed

    asyncio.run(main())


def test_large_write_and_coalesced_reads() -> None:
    blob = os.urandom(1_000_003)
    reads: list[int] = []

    async def handler(stream: TLSStream) -> None:
        await stream.write(blob)  # sliced into 64 KiB pieces on the way out
        # Several records arrived before the first read: it must hand them over at once.
        await async_wait_until(lambda: stream._protocol._buffered > 16384, "two records buffered")
        while data := await stream.read(200_000):
            reads.append(len(data))

    async def main() -> None:
        async with Server(server_config(), handler) as server:
            reader, writer = await server.connect()
            assert await reader.readexactly(len(blob)) == blob
            writer.write(bytes(500_000))
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            await async_wait_until(lambda: sum(reads) == 500_000, 'sum(reads) == 500_000')
        assert sum(reads) == 500_000
        assert max(reads) > 16384  # several records handed over in one read
        assert all(n <= 200_000 for n in reads)

    asyncio.run(main())


def test_handler_may_answer_after_the_peers_close_notify() -> None:
    async def answer_at_eof(stream: TLSStream) -> None:
        request = b""
        while data := await stream.read():
            request += data
        await stream.write(b"answer to " + request)

    def client(port: int) -> bytes:
        """OpenSSL driven by hand over a socket, so it can send close_notify and keep reading."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_context().wrap_bio(incoming, outgoing, server_hostname=HOSTNAME)
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.settimeout(30)  # failure only

            def pump(step: Callable[[], Any]) -> Any:
                for _ in range(50):
                    try:
                        return step()
                    except ssl.SSLWantReadError:
                        raw.sendall(outgoing.read())
                        data = raw.recv(65536)
                        if not data:
                            incoming.write_eof()
                        incoming.write(data)
                raise AssertionError("no progress")

            pump(tls.do_handshake)
            tls.write(b"question")
            raw.sendall(outgoing.read())
            try:
                tls.unwrap()  # queues our close_notify; the server's answer and close_notify come after
            except ssl.SSLWantReadError:
                pass
            raw.sendall(outgoing.read())
            answer = b""
            while True:
                try:
                    answer += pump(lambda: tls.read(65536))
                except ssl.SSLZeroReturnError:
                    return answer

    async def main() -> None:
        async with Server(server_config(), answer_at_eof) as server:
            assert await asyncio.to_thread(client, server.port) == b"answer to question"

    asyncio.run(main())


def test_openssl_s_client_through_the_adapter() -> None:
    openssl = require_tool("openssl", "openssl")

    async def echo_prefixed(stream: TLSStream) -> None:
        while data := await stream.read():
            await stream.write(b"echo:" + data)

    async def main() -> None:
        async with Server(server_config(), echo_prefixed) as server:
            proc = await asyncio.create_subprocess_exec(
                openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername", HOSTNAME,
                "-CAfile", str(pki().ca_pem), "-verify_return_error", "-quiet",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(b"hello from openssl\n")
                await proc.stdin.drain()
                line = await asyncio.wait_for(proc.stdout.readline(), 30)
                assert line == b"echo:hello from openssl\n"
            finally:
                proc.terminate()
                await proc.wait()
        (done,) = server.of(HandshakeComplete)
        assert done.version == 0x0304 and done.group == "x25519"

    asyncio.run(main())


def test_refresh_ticket_keys_runs_in_the_background() -> None:
    now = [36000.0]
    ring = TicketKeyRing(RotatingKeySource(rotation_interval=3600), now=lambda: now[0])
    first = ring.key_names[0]

    async def main() -> None:
        task = asyncio.create_task(refresh_ticket_keys(ring, interval=0.01))
        now[0] += 3600
        await async_wait_until(lambda: ring.key_names[0] != first, 'ring.key_names[0] != first')
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert ring.key_names[0] != first and first in ring.key_names
