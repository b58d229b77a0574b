"""Issue 12 §1 item 6: TLS 1.2 answers a client's record_size_limit (RFC 8449) in its ServerHello and keeps
to the client's limit — checked on the wire with hand-built hellos and end to end with tlslite-ng, which
enforces the limit it announced on every record it receives."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from keyless.tls.extensions import ExtensionType as Ext
from tests.interop.tls13_server_driver import EngineServer
from tests.tls.conformance_client import RawClient, records, server_hello_extensions, tls12_hello
from tests.tls.tls13_helpers import HOSTNAME, server_config


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with EngineServer(server_config(record_size_limit=1024)) as server:
        yield server.port


def tls12_server_hello_extensions(port: int, limit: bytes | None) -> dict[int, bytes]:
    hello = tls12_hello()
    if limit is not None:
        hello = hello.with_extension(Ext.record_size_limit, limit)
    with RawClient(port) as client:
        client.send(records(22, hello.message()))
        message = client.read_message()
    assert message.msg_type == 2
    return server_hello_extensions(message)


@pytest.mark.parametrize(("offered", "answered"), [
    (b"\x00\x40", b"\x04\x00"),  # the client's 64: we still answer our own limit (1024)
    (b"\x01\x00", b"\x04\x00"),
    (b"\x40\x01", b"\x04\x00"),  # 2^14 + 1 is the TLS 1.3 maximum; a TLS 1.2 limit is at most 2^14
    (None, None),  # not offered: not answered
])
def test_tls12_server_hello_answers_record_size_limit(port: int, offered: bytes | None,
                                                      answered: bytes | None) -> None:
    assert tls12_server_hello_extensions(port, offered).get(Ext.record_size_limit) == answered


def test_tls12_default_limit_is_two_to_the_fourteen() -> None:
    with EngineServer(server_config()) as server:
        extensions = tls12_server_hello_extensions(server.port, b"\x40\x01")
    assert extensions.get(Ext.record_size_limit) == b"\x40\x00"


TLSLITE_TLS12_CLIENT = r"""
import socket, sys
from tlslite.api import TLSConnection, HandshakeSettings
settings = HandshakeSettings()
settings.minVersion = (3, 3)
settings.maxVersion = (3, 3)
settings.record_size_limit = 256
conn = TLSConnection(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
conn.handshakeClientCert(serverName=sys.argv[2], settings=settings)
payload = b"x" * 3000 + b"\n"
conn.write(payload)
got = b""
while len(got) < len(payload):
    got += conn.read(max=10000)
print(got == payload, conn.version, conn._recordLayer.send_record_limit, conn._recordLayer.recv_record_limit)
conn.close()
"""


def test_tlslite_ng_tls12_record_size_limit_is_echoed_and_kept(port: int) -> None:
    proc = subprocess.run([sys.executable, "-c", TLSLITE_TLS12_CLIENT, str(port), HOSTNAME],
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    # tlslite-ng sends at most our 1024 and accepts at most its 256 from us (TLS 1.2: no type byte).
    assert proc.stdout.split() == [b"True", b"(3,", b"3)", b"1024", b"256"], proc.stdout
