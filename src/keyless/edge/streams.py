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


class SendTimeout(TimeoutError):
    """A write did not drain within the send timeout: the peer stopped reading. The stream is aborted."""


class SocketStream:
    """A ``ByteStream`` over an asyncio (reader, writer) pair. With ``send_timeout``, a write that
    cannot drain in time, or a close that cannot flush in time, aborts the connection (``SendTimeout``)."""

    __slots__ = ("reader", "send_timeout", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 send_timeout: float | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.send_timeout = send_timeout

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float, send_timeout: float | None = None) -> SocketStream:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, send_timeout)

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self.reader.read(max_bytes)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        if self.send_timeout is None:
            await self.writer.drain()
            return
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.writer.drain()
        except TimeoutError:
            self.abort()
            raise SendTimeout(f"peer read nothing for {self.send_timeout:g}s") from None

    async def write_eof(self) -> None:
        if self.writer.can_write_eof() and not self.writer.is_closing():
            self.writer.write_eof()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        try:
            async with asyncio.timeout(self.send_timeout):  # None: wait as long as the flush takes
                await self.writer.wait_closed()
        except TimeoutError:
            self.abort()  # unsent bytes the peer will not read: drop them
        except (OSError, asyncio.CancelledError):
            pass

    @property
    def usable(self) -> bool:
        """False once the peer has closed or the transport is going away (a stale keep-alive connection)."""
        return not (self.writer.is_closing() or self.reader.at_eof() or self.reader.exception() is not None)


class SendDeadline:
    """A client stream whose every write must drain within ``send_timeout`` seconds, like nginx's
    ``send_timeout``: a client that stops reading (a slow-read attack, or a phone gone out of range)
    would otherwise hold its connection slot and an origin connection for as long as it likes, since
    a write waits on drain() with no deadline and ``idle_timeout`` bounds only reads. On expiry the
    connection is aborted (its unsent bytes dropped, its slot freed) and ``SendTimeout`` raised, an
    ``OSError`` the proxies already treat as "the client is gone". Closing is bounded the same way: a
    close waits for the send buffer to flush, which a peer that does not read never lets happen.

    The deadline is per write: the peer must take what one write leaves above the transport's
    high-water mark within ``send_timeout`` (nginx measures between two successful socket writes;
    with the default 60 s either way only a client reading under about 1 KB/s is cut)."""

    __slots__ = ("inner", "send_timeout", "timed_out")

    def __init__(self, inner: ByteStream, send_timeout: float) -> None:
        self.inner = inner
        self.send_timeout = send_timeout
        self.timed_out = False

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.read(max_bytes)

    async def write(self, data: bytes) -> None:
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.inner.write(data)
        except TimeoutError:
            self.abort()
            raise SendTimeout(f"client read nothing for {self.send_timeout:g}s") from None

    async def close(self) -> None:
        if self.timed_out:
            return
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.inner.close()
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the connection now (every stream we run on can; one that cannot is left to close)."""
        self.timed_out = True
        abort = getattr(self.inner, "abort", None)
        if abort is not None:
            abort()


class StreamStats:
    """Bytes moved on one client connection, for the metrics."""

    __slots__ = ("bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0


__all__ = ["ByteStream", "SendDeadline", "SendTimeout", "SocketStream", "StreamStats"]
