"""Issue 12 §1 items 5 and 7: the alert every ClientHello, extension and handshake-message problem earns
(RFC 8446 §6.2, RFC 5246 §7.2.2: decode_error = cannot be parsed, illegal_parameter = parsed but not
acceptable), legal extremes accepted, and extensions of the other protocol version ignored.

Hand-built messages over a real socket to a real server, tlsfuzzer style, for TLS 1.3 and TLS 1.2 alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from keyless.tls.extensions import ExtensionType as Ext
from tests.interop.tls13_server_driver import EngineServer
from tests.tls.conformance_client import (
    Hello,
    KeyShares,
    RawClient,
    ServerAlert,
    Tls13Handshake,
    alpn,
    outcome,
    record,
    sni,
    tls12_hello,
    tls13_hello,
    u16_list,
)
from tests.tls.tls13_helpers import server_config

KEYS = KeyShares()
VERSIONS = {"tls13": lambda: tls13_hello(KEYS), "tls12": tls12_hello}


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with EngineServer(server_config()) as server:
        yield server.port


def extensions_length(hello: Hello) -> int:
    return sum(4 + len(body) for _, body in hello.extensions)


def padded_to_the_limit(hello: Hello) -> Hello:
    """A padding extension that fills the extensions block to its 65,535-byte maximum."""
    return hello.with_extension(Ext.padding, bytes(65535 - extensions_length(hello) - 4))


def most_signature_schemes(hello: Hello) -> Hello:
    """32,715 schemes (as many as fit beside the other extensions), duplicates and unknown values included."""
    room = (65535 - extensions_length(hello.without(Ext.signature_algorithms)) - 4 - 2) // 2
    schemes = [0xFE00 + (i % 200) for i in range(room - 2)] + [0x0403, 0x0403]
    assert len(schemes) >= 32715
    return hello.with_extension(Ext.signature_algorithms, u16_list(schemes))


def two_host_names(hello: Hello) -> Hello:
    entries = b"\x00\x00\x04a.bc" + b"\x00\x00\x04d.ef"
    return hello.with_extension(Ext.server_name, len(entries).to_bytes(2, "big") + entries)


def raw_sni(value: bytes) -> Callable[[Hello], Hello]:
    return lambda h: h.with_extension(Ext.server_name, value)


def ext(ext_type: int, body: bytes) -> Callable[[Hello], Hello]:
    return lambda h: h.with_extension(ext_type, body)


# (name, change to the hello, expected answer) — the same for TLS 1.3 and TLS 1.2.
HELLO_CASES: list[tuple[str, Callable[[Hello], Hello], str]] = [
    ("padding 16 KiB", ext(Ext.padding, bytes(16384)), "ServerHello"),
    ("padding fills 64 KiB", padded_to_the_limit, "ServerHello"),
    ("32,715 signature schemes", most_signature_schemes, "ServerHello"),
    # server_name: values that parse but are no host name → illegal_parameter; broken framing → decode_error
    ("SNI control character", ext(Ext.server_name, sni(b"keyless\x01.test")), "illegal_parameter"),
    ("SNI NUL", ext(Ext.server_name, sni(b"keyless\x00.test")), "illegal_parameter"),
    ("SNI DEL", ext(Ext.server_name, sni(b"\x7fkeyless.test")), "illegal_parameter"),
    ("SNI space", ext(Ext.server_name, sni(b"keyless test")), "illegal_parameter"),
    ("SNI non-ASCII", ext(Ext.server_name, sni("café.test".encode())), "illegal_parameter"),
    ("SNI trailing dot", ext(Ext.server_name, sni(b"keyless.test.")), "illegal_parameter"),
    ("SNI two host names", two_host_names, "illegal_parameter"),
    ("SNI empty host name", ext(Ext.server_name, sni(b"")), "decode_error"),
    ("SNI empty list", raw_sni(b"\x00\x00"), "decode_error"),
    ("SNI name overruns", raw_sni(b"\x00\x05\x00\x00\x09abc"), "decode_error"),
    ("SNI list shorter than extension", raw_sni(b"\x00\x01\x00\x00\x01a"), "decode_error"),
    ("SNI of an unknown name type only", raw_sni(b"\x00\x04\x01\x00\x01a"), "ServerHello"),
    # other extensions shared by both versions
    ("supported_groups empty", ext(Ext.supported_groups, b"\x00\x00"), "decode_error"),
    ("supported_groups odd", ext(Ext.supported_groups, b"\x00\x03\x00\x1d\x00"), "decode_error"),
    ("signature_algorithms empty", ext(Ext.signature_algorithms, b"\x00\x00"), "decode_error"),
    ("signature_algorithms odd", ext(Ext.signature_algorithms, b"\x00\x01\x04"), "decode_error"),
    ("signature_algorithms unknown only", ext(Ext.signature_algorithms, u16_list((0xFE01,))), "handshake_failure"),
    ("ALPN empty list", ext(Ext.application_layer_protocol_negotiation, b"\x00\x00"), "decode_error"),
    ("ALPN empty name", ext(Ext.application_layer_protocol_negotiation, b"\x00\x01\x00"), "decode_error"),
    ("ALPN overrun", ext(Ext.application_layer_protocol_negotiation, b"\x00\x03\x05ab"), "decode_error"),
    ("ALPN valid", ext(Ext.application_layer_protocol_negotiation, alpn(b"h2")), "ServerHello"),
    ("record_size_limit 63", ext(Ext.record_size_limit, b"\x00\x3f"), "illegal_parameter"),
    ("record_size_limit one byte", ext(Ext.record_size_limit, b"\x40"), "decode_error"),
    ("record_size_limit 64", ext(Ext.record_size_limit, b"\x00\x40"), "ServerHello"),
    ("supported_versions odd", ext(Ext.supported_versions, b"\x03\x03\x04\x03"), "decode_error"),
    ("status_request truncated", ext(Ext.status_request, b"\x01\x00"), "decode_error"),
    # the hello's own fields
    ("session id of 33 bytes", lambda h: replace(h, session_id=bytes(33)), "decode_error"),
    ("no compression methods", lambda h: replace(h, compression=b""), "decode_error"),
    ("duplicate extension", lambda h: replace(h, extensions=[*h.extensions, h.extensions[0]]), "illegal_parameter"),
    ("unknown extension", ext(0x7A7A, b"anything"), "ServerHello"),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "change", "expected"), HELLO_CASES, ids=[c[0] for c in HELLO_CASES])
def test_client_hello_alerts(port: int, version: str, name: str, change: Callable[[Hello], Hello],
                             expected: str) -> None:
    assert outcome(port, change(VERSIONS[version]())) == expected


# ---- framing of the hello itself (both versions) ----------------------------------------------------------

def raw_with_body(body: bytes) -> bytes:
    return b"\x01" + len(body).to_bytes(3, "big") + body


@pytest.mark.parametrize(("name", "mangle", "expected"), [
    ("odd cipher_suites", lambda b: b[:67] + b"\x00\x03\x13\x01\x13" + b[67 + 2 + int.from_bytes(b[67:69], "big"):],
     "decode_error"),
    ("extensions block one byte long", lambda b: b + b"\x00", "decode_error"),
    ("extensions block one byte short", lambda b: b[:-1], "decode_error"),
])
def test_client_hello_framing(port: int, name: str, mangle: Callable[[bytes], bytes], expected: str) -> None:
    body = tls13_hello(KEYS).message()[4:]  # cipher_suites at 2 + 32 + 1 + 32
    assert outcome(port, raw_with_body(mangle(body))) == expected


@pytest.mark.parametrize(("length", "expected"), [
    (0x21000, "decode_error"),  # longer than any ClientHello can be (131,396): refused from its header
    (0xFFFFFF, "decode_error"),
])
def test_client_hello_longer_than_its_structure(port: int, length: int, expected: str) -> None:
    with RawClient(port) as client:
        client.send(record(22, b"\x01" + length.to_bytes(3, "big") + bytes(100), b"\x03\x01"))
        assert client.alert() == expected


@pytest.mark.parametrize(("first_message", "expected"), [
    (b"\x02\x00\x00\x00", "unexpected_message"),  # ServerHello from a client
    (b"\x63\x00\x00\x00", "unexpected_message"),  # unassigned type
    (b"\x14\x00\x00\x20" + bytes(32), "unexpected_message"),  # Finished before any hello
    (b"\x63\xff\xff\xff", "unexpected_message"),  # refused from the header, not buffered
])
def test_first_message_is_a_client_hello(port: int, first_message: bytes, expected: str) -> None:
    with RawClient(port) as client:
        client.send(record(22, first_message, b"\x03\x01"))
        assert client.alert() == expected


# ---- item 7: extensions of the other version --------------------------------------------------------------

TLS12_ONLY_MALFORMED = [
    ("extended_master_secret with a body", Ext.extended_master_secret, b"\x00"),
    ("ec_point_formats empty body", Ext.ec_point_formats, b""),
    ("ec_point_formats empty list", Ext.ec_point_formats, b"\x00"),
    ("ec_point_formats overrun", Ext.ec_point_formats, b"\x05\x00"),
    ("renegotiation_info empty body", Ext.renegotiation_info, b""),
    ("renegotiation_info overrun", Ext.renegotiation_info, b"\x05"),
]


@pytest.mark.parametrize(("name", "ext_type", "body"), TLS12_ONLY_MALFORMED, ids=[c[0] for c in TLS12_ONLY_MALFORMED])
def test_tls12_only_extensions_are_ignored_in_tls13(port: int, name: str, ext_type: int, body: bytes) -> None:
    hello = tls13_hello(KEYS).with_extension(ext_type, body)
    assert outcome(port, hello) == "ServerHello"


@pytest.mark.parametrize(("name", "ext_type", "body"), TLS12_ONLY_MALFORMED, ids=[c[0] for c in TLS12_ONLY_MALFORMED])
def test_tls12_only_extensions_still_count_in_tls12(port: int, name: str, ext_type: int, body: bytes) -> None:
    assert outcome(port, tls12_hello().with_extension(ext_type, body)) == "decode_error"


@pytest.mark.parametrize(("name", "ext_type", "body"), [
    ("encrypt_then_mac with a body", Ext.encrypt_then_mac, b"\x01"),
    ("session_ticket garbage", Ext.session_ticket, b"\xff" * 40),
    ("heartbeat garbage", Ext.heartbeat, b"\x07\x07"),
])
@pytest.mark.parametrize("version", VERSIONS)
def test_extensions_we_do_not_use_are_ignored(port: int, version: str, name: str, ext_type: int,
                                              body: bytes) -> None:
    assert outcome(port, VERSIONS[version]().with_extension(ext_type, body)) == "ServerHello"


TLS13_ONLY_MALFORMED = [
    ("key_share overrun", Ext.key_share, b"\x00\x10\x00\x1d"),
    ("psk_key_exchange_modes empty", Ext.psk_key_exchange_modes, b"\x00"),
    ("early_data with a body", Ext.early_data, b"\x00"),
    ("cookie empty", Ext.cookie, b"\x00\x00"),
    ("post_handshake_auth with a body", Ext.post_handshake_auth, b"\x01"),
]


@pytest.mark.parametrize(("name", "ext_type", "body"), TLS13_ONLY_MALFORMED, ids=[c[0] for c in TLS13_ONLY_MALFORMED])
def test_tls13_only_extensions_count_in_tls13(port: int, name: str, ext_type: int, body: bytes) -> None:
    assert outcome(port, tls13_hello(KEYS).with_extension(ext_type, body)) == "decode_error"


@pytest.mark.parametrize(("name", "ext_type", "body"), TLS13_ONLY_MALFORMED, ids=[c[0] for c in TLS13_ONLY_MALFORMED])
def test_tls13_only_extensions_are_ignored_in_tls12(port: int, name: str, ext_type: int, body: bytes) -> None:
    assert outcome(port, tls12_hello().with_extension(ext_type, body)) == "ServerHello"


@pytest.mark.parametrize(("name", "body", "expected"), [
    ("no identities", b"\x00\x00\x00\x21\x20" + bytes(32), "decode_error"),
    ("no binders", b"\x00\x0b\x00\x05hello\x00\x00\x00\x00\x00\x00", "decode_error"),
    ("more binders than identities",
     b"\x00\x0b\x00\x05hello\x00\x00\x00\x00\x00\x42" + (b"\x20" + bytes(32)) * 2, "illegal_parameter"),
    ("binder of 31 bytes", b"\x00\x0b\x00\x05hello\x00\x00\x00\x00\x00\x20\x1f" + bytes(31), "decode_error"),
])
def test_pre_shared_key_framing(port: int, name: str, body: bytes, expected: str) -> None:
    assert outcome(port, tls13_hello(KEYS).with_extension(Ext.pre_shared_key, body)) == expected


# ---- handshake messages after the hello (TLS 1.3) ---------------------------------------------------------

def after_server_flight(port: int, send: Callable[[Tls13Handshake], None]) -> str:
    with RawClient(port) as client:
        hs = Tls13Handshake(client, KEYS)
        try:
            hs.send_hello(tls13_hello(KEYS))
            hs.read_server_hello()
            hs.read_server_flight()
            send(hs)
            while True:
                client.read_message()
        except ServerAlert as alert:
            return alert.name


def finished_of(length: int) -> Callable[[Tls13Handshake], None]:
    return lambda hs: hs.send_finished(b"\x14" + length.to_bytes(3, "big") + bytes(length))


def header_only(msg_type: int, length: int) -> Callable[[Tls13Handshake], None]:
    """Only the 4-byte header: the server must answer without waiting for the body."""
    return lambda hs: hs.send_finished(bytes((msg_type,)) + length.to_bytes(3, "big"))


@pytest.mark.parametrize(("name", "send", "expected"), [
    ("Finished of 31 bytes", finished_of(31), "decode_error"),
    ("Finished of 33 bytes", finished_of(33), "decode_error"),
    ("Finished of 0 bytes", finished_of(0), "decode_error"),
    ("Finished of 48 bytes under SHA-256", finished_of(48), "decode_error"),
    ("Finished of 49 bytes, header only", header_only(20, 49), "decode_error"),
    ("Finished of 128 KiB, header only", header_only(20, 128 * 1024), "decode_error"),
    ("Finished of 16 MiB, header only", header_only(20, 0xFFFFFF), "decode_error"),
    ("Finished of the right length, wrong value", finished_of(32), "decrypt_error"),
    ("KeyUpdate of 2 bytes, header only", header_only(24, 2), "decode_error"),
    ("KeyUpdate before Finished", lambda hs: hs.send_finished(b"\x18\x00\x00\x01\x00"),
     "unexpected_message"),
    ("Certificate nobody asked for", lambda hs: hs.send_finished(b"\x0b\x00\x00\x04\x00\x00\x00\x00"),
     "unexpected_message"),
    ("CertificateVerify of 70 KiB, header only", header_only(15, 70 * 1024), "decode_error"),
    ("Certificate of 300 KiB, header only", header_only(11, 300 * 1024), "illegal_parameter"),
    ("EndOfEarlyData with a body, header only", header_only(5, 1), "decode_error"),
    ("ServerHello from the client", lambda hs: hs.send_finished(b"\x02\x00\x00\x00"),
     "unexpected_message"),
    ("NewSessionTicket from the client, header only", header_only(4, 100), "unexpected_message"),
])
def test_handshake_message_alerts(port: int, name: str, send: Callable[[Tls13Handshake], None],
                                  expected: str) -> None:
    assert after_server_flight(port, send) == expected


@pytest.mark.parametrize(("message", "expected"), [
    (b"\x18\x00\x00\x02\x00\x00", "decode_error"),
    (b"\x18\x00\x00\x01\x02", "illegal_parameter"),
    (b"\x18\x00\x00\x00", "decode_error"),
])
def test_key_update_alerts(port: int, message: bytes, expected: str) -> None:
    def after_finished(hs: Tls13Handshake) -> None:
        hs.send_finished()
        hs.client.send_protected(22, message)

    assert after_server_flight(port, after_finished) == expected

