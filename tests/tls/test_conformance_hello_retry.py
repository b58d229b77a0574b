"""Issue 12 §1 item 3: the ClientHello after a HelloRetryRequest must be the first one again, with only the
changes RFC 8446 §4.1.2 allows; every other change is illegal_parameter. Hand-built hellos over a real
socket to a real server; the key server name and certificate are fixed by the first hello."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from keyless.tls.events import HandshakeComplete, KeyOperationRequired
from keyless.tls.extensions import ExtensionType as Ext
from tests.interop.tls13_server_driver import EngineServer
from tests.tls.conformance_client import (
    P256,
    SIGALGS,
    X25519,
    Hello,
    KeyShares,
    RawClient,
    ServerAlert,
    Tls13Handshake,
    alpn,
    key_share,
    sni,
    tls13_hello,
    u16_list,
    versions,
)
from tests.tls.tls13_helpers import server_config

KEYS = KeyShares()


@pytest.fixture(scope="module")
def server() -> Iterator[EngineServer]:
    with EngineServer(server_config(alpn_protocols=("h2", "http/1.1"))) as running:
        yield running


def first_hello() -> Hello:
    """No usable share: the server must retry with x25519."""
    return (
        tls13_hello(KEYS)
        .with_extension(Ext.key_share, key_share([]))
        .with_extension(Ext.application_layer_protocol_negotiation, alpn(b"h2", b"http/1.1"))
        .with_extension(Ext.padding, bytes(100))
    )


def answer(hello: Hello) -> Hello:
    return hello.with_extension(Ext.key_share, key_share([(X25519, KEYS.public(X25519))]))


def retry(port: int, first: Hello, second: Hello) -> str:
    """"ok" if the handshake completes, else the alert the server sent."""
    with RawClient(port) as client:
        hs = Tls13Handshake(client, KEYS)
        try:
            hs.send_hello(first)
            was_retry, group, _ = hs.read_server_hello()
            assert was_retry and group == X25519
            hs.send_hello(second)
            assert hs.read_server_hello()[0] is False
            hs.read_server_flight()
            hs.send_finished()
            return "ok" if hs.echo(b"ping\n") == b"ping\n" else "wrong echo"
        except ServerAlert as alert:
            return alert.name


def swap_first_two(hello: Hello) -> Hello:
    exts = list(hello.extensions)
    exts[0], exts[1] = exts[1], exts[0]
    return replace(hello, extensions=exts)


ALLOWED: dict[str, Callable[[Hello], Hello]] = {
    "unchanged": lambda h: h,
    "padding changed": lambda h: h.with_extension(Ext.padding, bytes(300)),
    "padding removed": lambda h: h.without(Ext.padding),
}

FORBIDDEN: dict[str, Callable[[Hello], Hello]] = {
    "cipher suites reordered": lambda h: replace(h, suites=(0x1302, 0x1301, 0x1303)),
    "cipher suite removed": lambda h: replace(h, suites=(0x1301, 0x1302)),
    "cipher suite added": lambda h: replace(h, suites=(*h.suites, 0x00FF)),
    "random": lambda h: replace(h, random=bytes(32)),
    "session id": lambda h: replace(h, session_id=b"\x01" * 32),
    "session id emptied": lambda h: replace(h, session_id=b""),
    "compression": lambda h: replace(h, compression=b"\x01\x00"),
    "supported_versions": lambda h: h.with_extension(Ext.supported_versions, versions(0x0304, 0x0303)),
    "SNI changed": lambda h: h.with_extension(Ext.server_name, sni(b"other.test")),
    "SNI case changed": lambda h: h.with_extension(Ext.server_name, sni(b"KEYLESS.test")),
    "SNI removed": lambda h: h.without(Ext.server_name),
    "signature_algorithms": lambda h: h.with_extension(Ext.signature_algorithms, u16_list(SIGALGS[:2])),
    "supported_groups": lambda h: h.with_extension(Ext.supported_groups, u16_list((X25519, P256))),
    "ALPN changed": lambda h: h.with_extension(Ext.application_layer_protocol_negotiation, alpn(b"http/1.1")),
    "ALPN removed": lambda h: h.without(Ext.application_layer_protocol_negotiation),
    "psk_key_exchange_modes removed": lambda h: h.without(Ext.psk_key_exchange_modes),
    "status_request added": lambda h: h.with_extension(Ext.status_request, b"\x01\x00\x00\x00\x00"),
    "unknown extension added": lambda h: h.with_extension(0x4242, b"hi"),
    "record_size_limit added": lambda h: h.with_extension(Ext.record_size_limit, b"\x40\x00"),
    "cookie added": lambda h: h.with_extension(Ext.cookie, b"\x00\x04abcd"),
    "early_data added": lambda h: h.with_extension(Ext.early_data, b""),
    "extension order": swap_first_two,
    "two key shares": lambda h: h.with_extension(
        Ext.key_share, key_share([(X25519, KEYS.public(X25519)), (P256, KEYS.public(P256))])),
    "share for another group": lambda h: h.with_extension(Ext.key_share, key_share([(P256, KEYS.public(P256))])),
    "no key share": lambda h: h.with_extension(Ext.key_share, key_share([])),
}


@pytest.mark.parametrize("change", ALLOWED)
def test_allowed_changes_complete_the_handshake(server: EngineServer, change: str) -> None:
    first = first_hello()
    assert retry(server.port, first, ALLOWED[change](answer(first))) == "ok"


def test_early_data_may_be_removed(server: EngineServer) -> None:
    first = first_hello().with_extension(Ext.early_data, b"")
    assert retry(server.port, first, answer(first).without(Ext.early_data)) == "ok"


@pytest.mark.parametrize("change", FORBIDDEN)
def test_any_other_change_is_illegal_parameter(server: EngineServer, change: str) -> None:
    first = first_hello()
    assert retry(server.port, first, FORBIDDEN[change](answer(first))) == "illegal_parameter"


def test_an_sni_change_never_reaches_the_key_server(server: EngineServer) -> None:
    """Whatever the second hello says, no key operation is asked for a name other than the first's."""
    before = len(server.connections)
    first = first_hello()
    assert retry(server.port, first, answer(first).with_extension(Ext.server_name, sni(b"other.test"))) \
        == "illegal_parameter"
    assert retry(server.port, first, answer(first)) == "ok"
    served = server.connections[before:]
    operations = [e for c in served for e in c.events if isinstance(e, KeyOperationRequired)]
    completed = [e for c in served for e in c.events if isinstance(e, HandshakeComplete)]
    assert [op.server_name for op in operations] == ["keyless.test"]
    assert [c.sni for c in completed] == ["keyless.test"]
