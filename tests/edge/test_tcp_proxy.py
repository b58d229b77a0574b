"""TCP mode: the byte pipe and the PROXY protocol v2 header."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct

from keyless.edge.streams import SocketStream
from keyless.edge.tcp_proxy import PROXY_V2_SIGNATURE, TCPProxy, proxy_v2_header


def parse_proxy_v2(data: bytes) -> tuple[int, int, bytes]:
    """Parse per the haproxy spec §2.2: signature, ver/cmd, family, length, addresses."""
    if data[:12] != PROXY_V2_SIGNATURE:
        raise ValueError("no signature")
    ver_cmd, family, length = struct.unpack("!BBH", data[12:16])
    return ver_cmd, family, data[16 : 16 + length]


def test_proxy_v2_header_ipv4() -> None:
    header = proxy_v2_header(("192.0.2.7", 51000), ("198.51.100.1", 443))
    ver_cmd, family, body = parse_proxy_v2(header)
    assert (ver_cmd, family, len(header)) == (0x21, 0x11, 16 + 12)
    assert ipaddress.ip_address(body[0:4]) == ipaddress.ip_address("192.0.2.7")
    assert ipaddress.ip_address(body[4:8]) == ipaddress.ip_address("198.51.100.1")
    assert struct.unpack("!HH", body[8:12]) == (51000, 443)


def test_proxy_v2_header_ipv6_mapped_and_local() -> None:
    ver_cmd, family, body = parse_proxy_v2(proxy_v2_header(("2001:db8::1", 1), ("2001:db8::2", 2)))
    assert (ver_cmd, family, len(body)) == (0x21, 0x21, 36)
    _, family, _ = parse_proxy_v2(proxy_v2_header(("::ffff:10.0.0.1", 1), ("10.0.0.2", 2)))
    assert family == 0x11
    assert parse_proxy_v2(proxy_v2_header(None, None)) == (0x20, 0x00, b"")
    assert parse_proxy_v2(proxy_v2_header(("10.0.0.1", 1), ("2001:db8::2", 2)))[0] == 0x20


def test_tcp_pipe_with_proxy_header_end_to_end() -> None:
    async def scenario() -> None:
        received = bytearray()
        origin_done = asyncio.Event()

        async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                received.extend(data)
            writer.write(b"bye " * 10000)  # answers after the client half-closed
            await writer.drain()
            writer.close()
            origin_done.set()

        origin_server = await asyncio.start_server(origin, "127.0.0.1", 0)
        origin_port = origin_server.sockets[0].getsockname()[1]
        proxy = TCPProxy("127.0.0.1", origin_port, proxy_protocol=True)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = SocketStream(reader, writer)
            await proxy.serve(stream, writer.get_extra_info("peername"), writer.get_extra_info("sockname"))
            await stream.close()

        edge = await asyncio.start_server(handle, "127.0.0.1", 0)
        edge_port = edge.sockets[0].getsockname()[1]

        def client() -> tuple[bytes, int]:
            with socket.create_connection(("127.0.0.1", edge_port), timeout=30) as sock:
                sock.sendall(b"hello origin")
                sock.shutdown(socket.SHUT_WR)
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                return b"".join(chunks), sock.getsockname()[1]

        answer, client_port = await asyncio.to_thread(client)
        await asyncio.wait_for(origin_done.wait(), 10)
        ver_cmd, family, body = parse_proxy_v2(bytes(received))
        assert (ver_cmd, family) == (0x21, 0x11)
        assert struct.unpack("!HH", body[8:12]) == (client_port, edge_port)
        assert bytes(received[16 + 12 :]) == b"hello origin"
        assert answer == b"bye " * 10000
        edge.close()
        origin_server.close()

    asyncio.run(scenario())
