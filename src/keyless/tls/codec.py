"""Bounds-checked reading and length-prefixed writing of TLS structures (RFC 8446 §3).

Every read is checked; running short raises ``TLSAlert(decode_error)``. A length-prefixed vector is
returned as a sub-``Reader`` the caller must consume exactly (``expect_end``), like Go's cryptobyte.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from keyless.tls.alerts import AlertDescription, TLSAlert


def _truncated() -> TLSAlert:
    return TLSAlert(AlertDescription.decode_error, "truncated")


class Reader:
    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    @property
    def position(self) -> int:
        return self._pos

    def at_end(self) -> bool:
        return self._pos >= self._end

    def expect_end(self, what: str = "structure") -> None:
        if self._pos != self._end:
            raise TLSAlert(AlertDescription.decode_error, f"trailing bytes in {what}")

    # The readers below inline the bounds check rather than sharing a helper: a ClientHello makes ~150 of
    # these calls, and one Python call less each is a measurable part of a handshake.

    def _take(self, n: int) -> int:
        start = self._pos
        if n > self._end - start:
            raise _truncated()
        self._pos = start + n
        return start

    def u8(self) -> int:
        pos = self._pos
        if pos >= self._end:
            raise _truncated()
        self._pos = pos + 1
        return self._data[pos]

    def u16(self) -> int:
        pos = self._pos
        if pos + 2 > self._end:
            raise _truncated()
        self._pos = pos + 2
        data = self._data
        return (data[pos] << 8) | data[pos + 1]

    def u24(self) -> int:
        start = self._take(3)
        d = self._data
        return (d[start] << 16) | (d[start + 1] << 8) | d[start + 2]

    def u32(self) -> int:
        start = self._take(4)
        return int.from_bytes(self._data[start : start + 4], "big")

    def read(self, n: int) -> bytes:
        start = self._pos
        if n > self._end - start:
            raise _truncated()
        stop = self._pos = start + n
        return self._data[start:stop]

    def rest(self) -> bytes:
        start = self._pos
        self._pos = self._end
        return self._data[start : self._end]

    def sub(self, n: int) -> Reader:
        start = self._take(n)
        return Reader(self._data, start, start + n)

    def vec8(self) -> Reader:
        return self.sub(self.u8())

    def vec16(self) -> Reader:
        pos = self._pos
        start = pos + 2
        if start > self._end:
            raise _truncated()
        data = self._data
        stop = start + ((data[pos] << 8) | data[pos + 1])
        if stop > self._end:
            raise _truncated()
        self._pos = stop
        return Reader(data, start, stop)

    def vec24(self) -> Reader:
        return self.sub(self.u24())

    def opaque8(self) -> bytes:
        pos = self._pos
        if pos >= self._end:
            raise _truncated()
        data = self._data
        stop = pos + 1 + data[pos]
        if stop > self._end:
            raise _truncated()
        self._pos = stop
        return data[pos + 1 : stop]

    def opaque16(self) -> bytes:
        pos = self._pos
        start = pos + 2
        if start > self._end:
            raise _truncated()
        data = self._data
        stop = start + ((data[pos] << 8) | data[pos + 1])
        if stop > self._end:
            raise _truncated()
        self._pos = stop
        return data[start:stop]

    def opaque24(self) -> bytes:
        return self.read(self.u24())

    def u16_list(self, what: str, *, min_items: int = 1) -> tuple[int, ...]:
        """A `uint16 list<2..2^16-2>`: even length, at least ``min_items`` entries."""
        n = self.u16()
        if n % 2 or n < 2 * min_items:
            raise TLSAlert(AlertDescription.decode_error, f"bad {what} list length")
        start = self._pos
        if n > self._end - start:
            raise _truncated()
        self._pos = start + n
        return _u16_struct(n >> 1).unpack_from(self._data, start)


def read_certificate_list(entries: Reader, *, extensions: bool) -> tuple[bytes, ...]:
    """The DER certificates of a ``certificate_list`` (each ``opaque ASN.1Cert<1..2^24-1>``), with the
    per-certificate extensions of TLS 1.3 (RFC 8446 §4.4.2; we ask for none, so they are skipped) or
    without (RFC 5246 §7.4.2)."""
    chain: list[bytes] = []
    while not entries.at_end():
        der = entries.opaque24()
        if not der:
            raise TLSAlert(AlertDescription.decode_error, "empty certificate entry")
        if extensions:
            entries.vec16()
        chain.append(der)
    return tuple(chain)


@lru_cache(maxsize=64)
def _u16_struct(count: int) -> struct.Struct:
    return struct.Struct(f">{count}H")


def unpack_u16s(raw: bytes) -> tuple[int, ...]:
    return tuple(_u16_struct(len(raw) // 2).unpack(raw))


def take_joined(parts: list[bytes]) -> bytes:
    """All of ``parts`` as one ``bytes`` (the one part itself when there is one: no copy), emptying the list."""
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    parts.clear()
    return data


class Writer:
    """Append-only builder; ``with w.block(2):`` writes a 2-byte length prefix for what is written inside."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def u8(self, v: int) -> None:
        self._buf.append(v)

    def u16(self, v: int) -> None:
        self._buf += v.to_bytes(2, "big")

    def u24(self, v: int) -> None:
        self._buf += v.to_bytes(3, "big")

    def u32(self, v: int) -> None:
        self._buf += v.to_bytes(4, "big")

    def raw(self, data: bytes) -> None:
        self._buf += data

    def opaque8(self, data: bytes) -> None:
        self._buf.append(len(data))
        self._buf += data

    def opaque16(self, data: bytes) -> None:
        self._buf += len(data).to_bytes(2, "big")
        self._buf += data

    def opaque24(self, data: bytes) -> None:
        self._buf += len(data).to_bytes(3, "big")
        self._buf += data

    @contextmanager
    def block(self, prefix_len: int) -> Iterator[None]:
        at = len(self._buf)
        self._buf += bytes(prefix_len)
        yield
        length = len(self._buf) - at - prefix_len
        if length >= 1 << (8 * prefix_len):
            raise ValueError("length block overflow")  # our own output only: a programming error
        self._buf[at : at + prefix_len] = length.to_bytes(prefix_len, "big")

    def getvalue(self) -> bytes:
        return bytes(self._buf)


_HANDSHAKE_HEADER = struct.Struct(">I")  # msg_type (1 byte) and uint24 length, packed as one uint32


def handshake_message(msg_type: int, body: bytes) -> bytes:
    """Frame a handshake body: type (1) + uint24 length + body."""
    if len(body) >= 1 << 24:
        raise ValueError("handshake message body over 2^24 - 1 bytes")  # our own output only
    return _HANDSHAKE_HEADER.pack((msg_type << 24) | len(body)) + body
