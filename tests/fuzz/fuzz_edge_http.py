"""The edge's HTTP/1.1 side and the PROXY v2 header it emits.

``edge_http``: client bytes into the real ``HTTPProxy`` session (h11 plus our head checks, hop-by-hop
stripping, forwarding headers, chunked and Content-Length bodies, 100-continue, keep-alive, pipelining),
delivered in fuzzer-sized reads over an in-memory stream, with an in-memory origin that parses what the
proxy forwards with its own h11 server and answers in one of several shapes (Content-Length, chunked,
close-delimited, 1xx first, 204, a broken head). Invariants: ``serve`` returns (never raises); what reaches
the origin is valid HTTP/1.1 without hop-by-hop fields or client-supplied forwarding headers; the edge's
own answers to the client are well-formed.

``proxy_v2``: the edge parses no PROXY header (it only sends one to a ``tcp`` origin), so this checks the
emitter: for any pair of addresses the header is a valid PROXY v2 header (spec section 2.2) that says
what was given, or a LOCAL header when it cannot.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct

import h11

from keyless.edge.http_proxy import FORWARDING_HEADERS, HOP_BY_HOP, HTTPProxy, OriginConnection, ProxySettings
from keyless.edge.tcp_proxy import PROXY_V2_SIGNATURE, proxy_v2_header
from tests.fuzz.harness import Finding, Target, check, chunks

ORIGIN_REPLIES = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclose-delimited",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nbroken",
    b"",  # the origin hangs up without answering: 502
)


class ClientStream:
    """The client side: reads hand out the fuzz input in pieces, then EOF; writes are collected."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.written = bytearray()

    async def read(self, max_bytes: int = 65536) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        self.pieces.clear()


class OriginStream:
    """An origin that parses requests with h11 (so a malformed forwarded request is a finding) and answers
    each complete request with ``reply``."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.conn = h11.Connection(h11.SERVER)
        self.outbox = bytearray()
        self.closed = False
        self.requests: list[h11.Request] = []

    async def read(self, max_bytes: int = 65536) -> bytes:
        data, self.outbox = bytes(self.outbox[:max_bytes]), self.outbox[max_bytes:]
        return data

    async def write(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    break
                if isinstance(event, h11.Request):
                    self._check_forwarded(event)
                elif isinstance(event, h11.EndOfMessage):
                    self.outbox += self.reply
                    if not self.reply:
                        self.closed = True
        except h11.RemoteProtocolError as exc:
            raise Finding(f"the edge forwarded invalid HTTP to the origin: {exc}") from exc

    def _check_forwarded(self, request: h11.Request) -> None:
        names = [name for name, _ in request.headers]
        stripped = HOP_BY_HOP - {b"transfer-encoding"}  # the edge re-frames bodies as chunked itself
        check(not stripped.intersection(names), f"hop-by-hop header forwarded: {names}")
        check(names.count(b"x-forwarded-for") == 1 and names.count(b"forwarded") == 1,
              "forwarding headers not replaced exactly once")
        check(sum(1 for n in names if n in FORWARDING_HEADERS) == 3, "client forwarding headers passed through")
        self.requests.append(request)

    async def close(self) -> None:
        self.closed = True

    async def write_eof(self) -> None:
        self.closed = True

    @property
    def usable(self) -> bool:
        return not self.closed


def _proxy(reply: bytes) -> HTTPProxy:
    proxy = HTTPProxy(ProxySettings(origin_host="origin.test", origin_port=80, max_header_size=2048,
                                    idle_timeout=30.0, response_timeout=30.0))

    async def connect() -> OriginConnection:
        return OriginConnection(OriginStream(reply), proxy.settings.max_header_size)  # type: ignore[arg-type]

    proxy.pool.connect = connect  # type: ignore[method-assign]  # the pool's keep-alive logic stays real
    return proxy


_LOOP: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP


async def _serve(reply: bytes, pieces: list[bytes], peer: tuple[str, int]) -> bytes:
    proxy = _proxy(reply)
    client = ClientStream(pieces)
    await proxy.serve(client, peer, "keyless.test")  # type: ignore[arg-type]
    await proxy.close()
    return bytes(client.written)


def _methods(client_bytes: bytes) -> list[bytes]:
    """The methods of the requests the client sent, in order, as an HTTP/1.1 server reads them."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(client_bytes)
    methods: list[bytes] = []
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                methods.append(bytes(event.method))
            elif isinstance(event, h11.EndOfMessage):
                conn.send(h11.Response(status_code=204, headers=[]))
                conn.send(h11.EndOfMessage())
                conn.start_next_cycle()
            elif event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                break
    except (h11.RemoteProtocolError, h11.LocalProtocolError):
        pass
    return methods


def _check_client_bytes(client_bytes: bytes, written: bytes) -> None:
    """What the edge sent the client parses as HTTP/1.1 responses to the client's requests (a response to HEAD
    has no body whatever its framing headers say), followed at most by the edge's own 400/431/502/504."""
    methods = _methods(client_bytes) or [b"GET"]
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(written)
    conn.receive_data(b"")
    try:
        for method in [*methods, b"GET"]:  # one more: the edge's own error answer to a request h11 refused
            conn.send(h11.Request(method=method, target="/", headers=[("host", "a")]))
            conn.send(h11.EndOfMessage())
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    return
                if isinstance(event, h11.EndOfMessage):
                    break
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
            if not conn.trailing_data[0]:
                return  # every byte the edge sent is accounted for (it may then close: that is allowed)
    except h11.RemoteProtocolError as exc:
        raise Finding(f"the edge sent the client invalid HTTP: {exc}; {written[:200]!r}") from exc
    except h11.LocalProtocolError:
        return


def http_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    reply = ORIGIN_REPLIES[data[0] % len(ORIGIN_REPLIES)]
    peer = ("2001:db8::1", 443) if data[0] & 0x80 else ("192.0.2.1", 443)
    pieces = list(chunks(data[2:], data[1]))
    written = _loop().run_until_complete(asyncio.wait_for(_serve(reply, pieces, peer), 60))
    if written:
        _check_client_bytes(data[2:], written)


# ---- PROXY v2 ---------------------------------------------------------------------------------------


def _parse_proxy_v2(header: bytes) -> tuple[str, tuple[str, int, str, int] | None]:
    """A strict reader of the spec's binary format: ("LOCAL", None) or ("PROXY", (src, sport, dst, dport))."""
    check(header[:12] == PROXY_V2_SIGNATURE, "bad signature")
    version_command, family, length = struct.unpack("!BBH", header[12:16])
    check(len(header) == 16 + length, "length does not match the address block")
    check(version_command >> 4 == 2, "version is not 2")
    if version_command & 0xF == 0:
        check(family == 0 and length == 0, "LOCAL with an address")
        return "LOCAL", None
    check(version_command & 0xF == 1, "unknown command")
    body = header[16:]
    if family == 0x11:
        check(length == 12, "TCP4 block is 12 bytes")
        src, dst, sport, dport = body[:4], body[4:8], *struct.unpack("!HH", body[8:12])
    else:
        check(family == 0x21 and length == 36, "only TCP4 (0x11) or TCP6 (0x21)")
        src, dst, sport, dport = body[:16], body[16:32], *struct.unpack("!HH", body[32:36])
    return "PROXY", (str(ipaddress.ip_address(src)), sport, str(ipaddress.ip_address(dst)), dport)


def _address(data: bytes) -> tuple[str, int] | None:
    if not data:
        return None
    kind, rest = data[0] % 4, data[1:]
    port = int.from_bytes(rest[:2], "big") if len(rest) >= 2 else 0
    if kind == 0:
        return str(ipaddress.IPv4Address(rest[2:6].ljust(4, b"\0"))), port
    if kind == 1:
        return str(ipaddress.IPv6Address(rest[2:18].ljust(16, b"\0"))), port
    if kind == 2:
        return rest[2:].decode("latin-1"), port  # not an address: a host name, garbage
    return None


def proxy_v2_one_input(data: bytes) -> None:
    half = len(data) // 2
    source, destination = _address(data[:half]), _address(data[half:])
    _command, addresses = _parse_proxy_v2(proxy_v2_header(source, destination))
    if addresses is None:
        return
    check(source is not None and destination is not None, "PROXY without both addresses")
    assert source is not None and destination is not None

    def plain(address: str) -> str:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ip)

    check(addresses == (plain(source[0]), source[1], plain(destination[0]), destination[1]),
          f"header says {addresses}, connection was {source} -> {destination}")


TARGETS = [
    Target("edge_http", http_one_input, "edge_http",
           "edge HTTP/1.1 proxy session: heads, chunked/length bodies, keep-alive, origin replies", max_len=4096),
    Target("proxy_v2", proxy_v2_one_input, "edge_http", "PROXY v2 header emitter vs a strict parser", max_len=64),
]
