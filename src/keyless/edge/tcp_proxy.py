"""TCP mode: a byte pipe from the decrypted client stream to the origin, optionally led by a PROXY v2 header.

The PROXY protocol version 2 header (haproxy's "PROXY protocol" specification, section 2.2) tells the
origin the client's real address, which it would otherwise see as the edge's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
from dataclasses import KW_ONLY, dataclass, field

from keyless.edge.metrics import ProxyObserver
from keyless.edge.streams import ByteStream, SendDeadline, SocketStream

log = logging.getLogger("keyless.edge.tcp")

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_VERSION_2_PROXY = 0x21  # version 2, command PROXY
_VERSION_2_LOCAL = 0x20  # version 2, command LOCAL (no address: the origin uses the real connection's)
_AF_INET_STREAM = 0x11
_AF_INET6_STREAM = 0x21
READ_SIZE = 65536


def proxy_v2_header(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """The binary PROXY v2 header for a TCP connection from ``source`` to ``destination``.

    Without both addresses, or with mixed address families, a LOCAL header is sent: the spec's answer
    for "no usable address", which the origin must accept.
    """
    if source is not None and destination is not None:
        try:
            src = ipaddress.ip_address(source[0])
            dst = ipaddress.ip_address(destination[0])
        except ValueError:
            src = dst = None  # type: ignore[assignment]
        if src is not None and dst is not None:
            if isinstance(src, ipaddress.IPv6Address) and src.ipv4_mapped is not None:
                src = src.ipv4_mapped
            if isinstance(dst, ipaddress.IPv6Address) and dst.ipv4_mapped is not None:
                dst = dst.ipv4_mapped
            if src.version == dst.version == 4:
                body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
                return PROXY_V2_SIGNATURE + struct.pack("!BBH", _VERSION_2_PROXY, _AF_INET_STREAM, len(body)) + body
            if src.version == dst.version == 6:
                body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
                return PROXY_V2_SIGNATURE + struct.pack("!BBH", _VERSION_2_PROXY, _AF_INET6_STREAM, len(body)) + body
    return PROXY_V2_SIGNATURE + struct.pack("!BBH", _VERSION_2_LOCAL, 0x00, 0)


@dataclass(eq=False)
class TCPProxy:
    """Pipes each decrypted client stream to ``origin_host:origin_port`` (a fresh connection per client)."""

    origin_host: str
    origin_port: int
    _: KW_ONLY
    proxy_protocol: bool = False
    connect_timeout: float = 5.0
    idle_timeout: float = 300.0
    send_timeout: float = 60.0
    observer: ProxyObserver = field(default_factory=ProxyObserver)

    async def serve(
        self, client: ByteStream, peer: tuple[str, int] | None, local: tuple[str, int] | None = None
    ) -> None:
        # Every write that waits for drain has a deadline (the client's, the origin's), so a peer that
        # stops reading cannot hold the connection slot and the origin connection indefinitely.
        client = SendDeadline(client, self.send_timeout)
        try:
            origin = await SocketStream.connect(self.origin_host, self.origin_port, self.connect_timeout,
                                                self.send_timeout)
        except (OSError, TimeoutError) as exc:
            self.observer.origin_error("connect_timeout" if isinstance(exc, TimeoutError) else "connect")
            log.warning("origin %s:%d unreachable: %r", self.origin_host, self.origin_port, exc)
            await client.close()
            return
        moved = [0, 0]  # bytes read from the client, from the origin
        loop = asyncio.get_running_loop()
        last_activity = loop.time()
        try:
            if self.proxy_protocol:
                await origin.write(proxy_v2_header(peer, local))

            async def pump(source: ByteStream, sink: ByteStream, count: int) -> None:
                nonlocal last_activity
                while data := await source.read(READ_SIZE):
                    moved[count] += len(data)
                    last_activity = loop.time()
                    await sink.write(data)

            async def upstream() -> None:
                await pump(client, origin, 0)
                await origin.write_eof()

            async def downstream() -> None:
                await pump(origin, client, 1)

            async def idle_watchdog() -> None:
                while True:
                    remaining = last_activity + self.idle_timeout - loop.time()
                    if remaining <= 0:
                        return
                    await asyncio.sleep(remaining)

            up = asyncio.ensure_future(upstream())
            down = asyncio.ensure_future(downstream())
            idle = asyncio.ensure_future(idle_watchdog())
            tasks = {up, down, idle}
            try:
                # The origin's end (or an idle timeout, or a broken client) ends the session; the client's
                # clean end only half-closes toward the origin, which may still be answering.
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if done == {up} and up.exception() is None:
                    await asyncio.wait({down, idle}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        except (OSError, TimeoutError):
            pass
        finally:
            await origin.close()
            self.observer.transferred(moved[0], moved[1])
            await client.close()


__all__ = ["PROXY_V2_SIGNATURE", "TCPProxy", "proxy_v2_header"]
