"""A TCP relay that delays every chunk by a fixed time in each direction (simulated network latency)."""

from __future__ import annotations

import asyncio
import contextlib

from tests.edge.support import LoopThread


class DelayRelay:
    """Listens on 127.0.0.1 and forwards to ``target``; each direction adds ``one_way_delay`` seconds,
    so a round trip through the relay costs ``2 * one_way_delay`` more. Order is preserved."""

    def __init__(self, loop: LoopThread, target: tuple[str, int], one_way_delay: float) -> None:
        self.loop = loop
        self.target = target
        self.delay = one_way_delay
        self.tasks: set[asyncio.Task[None]] = set()
        self.connections = 0  # accepted so far
        self.server: asyncio.Server = loop.run(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        tasks = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        for task in tasks:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                await queue.put((loop.time() + self.delay, data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.CancelledError):
            sender.cancel()
        finally:
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for task in list(self.tasks):
                task.cancel()

        self.loop.run(stop())
