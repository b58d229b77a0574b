"""The byte streams the proxies run on: a TLS stream from the engine's adapter, or a plain TCP stream.

The proxies only need ``read``/``write``/``close``, so the same code runs over ``TLSStream`` in
production and over plain asyncio streams in unit tests.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class ByteStream(Protocol):
    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes``; ``b""`` at end of stream."""
        ...

    async def write(self, data: bytes) -> None:
        """Queue ``data`` and wait until the transport's buffer is below its high-water mark."""
        ...

    async def close(self) -> None: ...


class SocketStream:
    """A ``ByteStream`` over an asyncio (reader, writer) pair."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float) -> SocketStream:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self.reader.read(max_bytes)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def write_eof(self) -> None:
        if self.writer.can_write_eof() and not self.writer.is_closing():
            self.writer.write_eof()

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        try:
            await self.writer.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass

    @property
    def usable(self) -> bool:
        """False once the peer has closed or the transport is going away (a stale keep-alive connection)."""
        return not (self.writer.is_closing() or self.reader.at_eof() or self.reader.exception() is not None)


class StreamStats:
    """Bytes moved on one client connection, for the metrics."""

    __slots__ = ("bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0


__all__ = ["ByteStream", "SocketStream", "StreamStats"]
