"""``start_tls_server(admit=...)``: the public per-connection hook (limits, metrics, key context) on real sockets."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from keyless.keys.base import KeyOperationError
from keyless.tls.asyncio_adapter import Admission, start_tls_server
from keyless.tls.config import ServerConfig
from keyless.tls.events import HandshakeComplete, KeyOperationRequired
from tests.support.waiting import async_wait_until
from tests.tls.test_adapter import AwaitedKey, Server, config_with_key, echo, round_trip
from tests.tls.tls13_helpers import HOSTNAME, server_config, site

pytestmark = pytest.mark.timeout(60)

CLIENT_HELLO_START = b"\x16\x03\x01\x00\x10"  # a record header: enough for a server that parses


def test_refused_connection_gets_no_tls_work() -> None:
    asked: list[Any] = []

    def refuse(peername: Any) -> Admission | None:
        asked.append(peername)
        return None

    async def main() -> None:
        async with Server(server_config(), admit=refuse) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(CLIENT_HELLO_START)
            try:
                assert await asyncio.wait_for(reader.read(), 30) == b""  # closed, not a single byte (no alert)
            except ConnectionResetError:
                pass  # aborted: a reset is as good
            writer.close()
            assert server.events == []  # the engine never saw a byte
        assert len(asked) == 1 and asked[0] == writer.get_extra_info("sockname")

    asyncio.run(main())


def test_admission_watches_one_connection_and_picks_its_key() -> None:
    failing = AwaitedKey(site("ecdsa-p256")[0].key, fail=True)  # type: ignore[arg-type]
    working = AwaitedKey(site("ecdsa-p256")[0].key)  # type: ignore[arg-type]
    seen: list[object] = []
    closed: list[Any] = []
    peers: list[Any] = []

    def admit(peername: Any) -> Admission:
        peers.append(peername)

        def key_for(event: KeyOperationRequired) -> object:
            assert event.key is failing  # the certificate callback's key, as configured
            assert event.server_name == HOSTNAME  # the client's SNI travels with the operation
            return working

        return Admission(on_event=seen.append, on_close=lambda: closed.append(peername), key_for_operation=key_for)

    async def main() -> None:
        async with Server(config_with_key(failing), admit=admit) as server:
            got, writer = await round_trip(server, b"through the admitted key")
            assert got == b"through the admitted key"
            local = writer.get_extra_info("sockname")
            writer.close()
            await writer.wait_closed()
            await async_wait_until(lambda: closed, 'closed')
        assert peers == [local]
        assert closed == peers  # exactly once, for that connection
        assert working.calls == 1 and failing.calls == 0
        kinds = [type(e) for e in seen]
        assert KeyOperationRequired in kinds and HandshakeComplete in kinds
        assert [type(e) for e in server.events] == kinds  # the server-wide on_event saw the same

    asyncio.run(main())


def test_failing_key_for_operation_fails_only_that_handshake() -> None:
    def admit(peername: Any) -> Admission:
        def key_for(event: KeyOperationRequired) -> object:
            raise KeyOperationError("no context for you")

        return Admission(key_for_operation=key_for)

    async def main() -> None:
        async with Server(server_config(), admit=admit) as server:
            with pytest.raises(ssl.SSLError, match=r"HANDSHAKE_FAILURE|handshake failure"):
                await server.connect()

    asyncio.run(main())


def test_admission_handshake_timeout_overrides_the_servers() -> None:
    async def main() -> None:
        admit = lambda peername: Admission(handshake_timeout=0.2)  # noqa: E731
        async with Server(server_config(), handshake_timeout=60, admit=admit) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(CLIENT_HELLO_START)  # then nothing
            assert await asyncio.wait_for(reader.read(), 30) == b""
            writer.close()

    asyncio.run(main())


def test_config_may_be_a_function_asked_per_connection() -> None:
    configs: list[ServerConfig] = []

    def provider() -> ServerConfig:
        configs.append(server_config())
        return configs[-1]

    async def main() -> None:
        server = await start_tls_server(echo, "127.0.0.1", 0, provider)
        try:
            wrapper = Server(server_config())
            wrapper.port = server.sockets[0].getsockname()[1]
            for _ in range(2):
                got, writer = await round_trip(wrapper, b"again")
                assert got == b"again"
                writer.close()
        finally:
            server.close()
            await server.wait_closed()
        assert len(configs) == 2

    asyncio.run(main())
