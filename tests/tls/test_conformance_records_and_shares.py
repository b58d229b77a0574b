"""Issue 12 §1 items 1, 2 and 4, tlsfuzzer style: hand-built ClientHellos over a real socket to a real server,
the answer asserted by name.

1. TLS 1.3 ignores legacy_record_version on every record after the initial ClientHello (RFC 8446 §5.1);
   TLS 1.2 keeps requiring 0x0303 once negotiated (RFC 5246, as OpenSSL and Go).
2. Every key share is read (bounded by the extension length), and a HelloRetryRequest never asks for a
   group the client already sent a share for (§4.1.4).
4. Key shares are judged against supported_groups and their group's encoding (§4.2.8); shares of groups we
   do not implement are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyless.tls.extensions import ExtensionType as Ext
from tests.interop.tls13_server_driver import EngineServer
from tests.tls.conformance_client import (
    P256,
    P384,
    X25519,
    Hello,
    KeyShares,
    RawClient,
    Tls13Handshake,
    key_share,
    outcome,
    record,
    records,
    tls12_hello,
    tls13_hello,
    u16_list,
)
from tests.tls.tls13_helpers import server_config

KEYS = KeyShares()
UNKNOWN_GROUPS = tuple(range(0x2000, 0x2000 + 2000))  # not assigned to anything we implement
SECP224R1, SECP521R1, X448, FFDHE2048 = 0x0015, 0x0019, 0x001E, 0x0100


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with EngineServer(server_config()) as server:
        yield server.port


def hello_with_shares(shares: list[tuple[int, bytes]], groups: tuple[int, ...]) -> Hello:
    return (
        tls13_hello(KEYS)
        .with_extension(Ext.supported_groups, u16_list(groups))
        .with_extension(Ext.key_share, key_share(shares))
    )


# ---- item 1: legacy_record_version ---------------------------------------------------------------------

RECORD_VERSIONS = [b"\x03\x01", b"\x03\x00", b"\x00\x00", b"\xff\xff", b"\x03\x04", b"\x02\x00"]


@pytest.mark.parametrize("version", RECORD_VERSIONS, ids=lambda v: v.hex())
@pytest.mark.parametrize("where", ["ccs", "finished", "application_data"])
def test_tls13_ignores_the_record_version_after_the_first_client_hello(port: int, version: bytes,
                                                                      where: str) -> None:
    with RawClient(port) as client:
        hs = Tls13Handshake(client, KEYS)
        hs.send_hello(tls13_hello(KEYS))
        hs.read_server_hello()
        hs.read_server_flight()
        if where == "ccs":  # a middlebox-compatibility CCS as some middleboxes rewrite it
            client.send(record(20, b"\x01", version))
        hs.send_finished(version=version if where == "finished" else b"\x03\x03")
        echoed = hs.echo(b"ping\n", version=version if where == "application_data" else b"\x03\x03")
    assert echoed == b"ping\n"


@pytest.mark.parametrize("version", RECORD_VERSIONS, ids=lambda v: v.hex())
def test_tls13_second_client_hello_record_version_is_ignored(port: int, version: bytes) -> None:
    first = tls13_hello(KEYS).with_extension(Ext.key_share, key_share([]))
    second = tls13_hello(KEYS)
    with RawClient(port) as client:
        hs = Tls13Handshake(client, KEYS)
        hs.send_hello(first)
        retry, group, _ = hs.read_server_hello()
        assert retry and group == X25519
        client.send(record(20, b"\x01", version))
        hs.send_hello(second, version=version)
        assert hs.read_server_hello()[0] is False
        hs.read_server_flight()
        hs.send_finished()
        assert hs.echo(b"ping\n") == b"ping\n"


def test_first_record_still_has_to_look_like_tls(port: int) -> None:
    assert outcome(port, tls13_hello(KEYS), version=b"\x02\x00") == "unexpected_message"


@pytest.mark.parametrize(("version", "expected"), [
    (b"\x03\x03", "illegal_parameter"),  # read, and its all-zero x25519 point refused
    (b"\x03\x01", "protocol_version"),
    (b"\x03\x04", "protocol_version"),
    (b"\x00\x00", "protocol_version"),
], ids=lambda v: v.hex() if isinstance(v, bytes) else v)
def test_tls12_records_after_the_hello_carry_tls12(port: int, version: bytes, expected: str) -> None:
    """Neighbour: in TLS 1.2 the record version is the negotiated one (RFC 5246 §6.2.1, Appendix E.1)."""
    with RawClient(port) as client:
        client.send(records(22, tls12_hello().message()))
        while client.read_message().msg_type != 14:  # up to ServerHelloDone
            pass
        client.send(record(22, b"\x10\x00\x00\x21\x20" + bytes(32), version))  # ClientKeyExchange
        assert client.alert() == expected


# ---- item 2: all key shares are read; HelloRetryRequest only for a group not offered ---------------------

@pytest.mark.parametrize("before", [8, 9, 20, 500, 2000])
def test_a_share_after_many_others_is_found(port: int, before: int) -> None:
    unknown = UNKNOWN_GROUPS[:before]
    shares = [(g, b"\x01") for g in unknown] + [(X25519, KEYS.public(X25519))]
    assert outcome(port, hello_with_shares(shares, (*unknown, X25519, P256))) == "ServerHello"


def test_a_40_kib_key_share_extension_is_read_whole(port: int) -> None:
    # 8,000 five-byte shares for groups listed in supported_groups (16 KiB more), then ours.
    groups = tuple(range(0x3000, 0x3000 + 8000))
    shares = [(g, b"\x01") for g in groups] + [(P256, KEYS.public(P256))]
    hello = hello_with_shares(shares, (*groups, P256))
    assert outcome(port, hello) == "ServerHello"


@pytest.mark.parametrize("before", [8, 9, 100])
def test_hello_retry_request_is_never_for_an_offered_group(port: int, before: int) -> None:
    """Shares for P-256 after many unknown ones: the server must use it, not ask for x25519 or P-256."""
    unknown = UNKNOWN_GROUPS[:before]
    shares = [(g, b"\x01") for g in unknown] + [(P256, KEYS.public(P256))]
    with RawClient(port) as client:
        hs = Tls13Handshake(client, KEYS)
        hs.send_hello(hello_with_shares(shares, (*unknown, X25519, P256)))
        retry, group, _ = hs.read_server_hello()
    assert not retry and group == P256


@pytest.mark.parametrize("before", [0, 8, 9, 100])
def test_hello_retry_request_names_a_group_without_a_share(port: int, before: int) -> None:
    unknown = UNKNOWN_GROUPS[:before]
    shares = [(g, b"\x01") for g in unknown]
    with RawClient(port) as client:
        hs = Tls13Handshake(client, KEYS)
        hs.send_hello(hello_with_shares(shares, (*unknown, P256)))
        retry, group, _ = hs.read_server_hello()
    assert retry and group == P256 and group not in dict(shares)


@pytest.mark.parametrize("before", [0, 8, 9, 100])
def test_late_share_for_a_group_not_in_supported_groups(port: int, before: int) -> None:
    unknown = UNKNOWN_GROUPS[:before]
    shares = [(g, b"\x01") for g in unknown] + [(X25519, KEYS.public(X25519)), (0x7777, b"\x01")]
    assert outcome(port, hello_with_shares(shares, (*unknown, X25519))) == "illegal_parameter"


@pytest.mark.parametrize("before", [0, 8, 9, 100])
def test_late_duplicate_share_is_illegal_parameter(port: int, before: int) -> None:
    unknown = UNKNOWN_GROUPS[:before]
    shares = [(X25519, KEYS.public(X25519))] + [(g, b"\x01") for g in unknown] + [(X25519, KEYS.public(X25519))]
    assert outcome(port, hello_with_shares(shares, (*unknown, X25519))) == "illegal_parameter"


# ---- item 4: key share validation --------------------------------------------------------------------------

GOOD_X25519 = (X25519, KEYS.public(X25519))
GOOD_P256 = (P256, KEYS.public(P256))
NOT_ON_CURVE = b"\x04" + bytes(31) + b"\x01" + bytes(31) + b"\x01"


@pytest.mark.parametrize(("shares", "groups", "expected"), [
    # wrong length or encoding for a group we implement, whether or not it is the share we would use
    ([(X25519, bytes(31))], (X25519,), "illegal_parameter"),
    ([(X25519, bytes(33))], (X25519,), "illegal_parameter"),
    ([(X25519, bytes(32))], (X25519,), "illegal_parameter"),  # all-zero: a low-order point, zero secret
    ([(P256, KEYS.public(P256)[:-1])], (P256,), "illegal_parameter"),
    ([(P256, b"\x02" + KEYS.public(P256)[1:33])], (P256,), "illegal_parameter"),  # compressed point
    ([(P256, b"\x05" + KEYS.public(P256)[1:])], (P256,), "illegal_parameter"),
    ([(P256, NOT_ON_CURVE)], (P256,), "illegal_parameter"),
    ([(P384, bytes(96))], (P384,), "illegal_parameter"),
    ([GOOD_X25519, (P256, bytes(64))], (X25519, P256), "illegal_parameter"),
    ([GOOD_X25519, (P384, b"\x04" + bytes(95))], (X25519, P384), "illegal_parameter"),
    # a share for a group the client does not list in supported_groups
    ([GOOD_X25519], (P256,), "illegal_parameter"),
    ([GOOD_X25519, (0x1234, b"\x01")], (X25519,), "illegal_parameter"),
    ([GOOD_P256, GOOD_X25519], (P256,), "illegal_parameter"),
    # groups listed but not implemented here: their shares are skipped, whatever they hold
    ([(SECP224R1, b"\x04" + bytes(56)), GOOD_X25519], (SECP224R1, X25519), "ServerHello"),
    ([(FFDHE2048, bytes(256)), GOOD_P256], (FFDHE2048, P256), "ServerHello"),
    ([(X448, bytes(10)), GOOD_X25519], (X448, X25519), "ServerHello"),
    ([(SECP521R1, b"\x04\x01"), GOOD_X25519], (SECP521R1, X25519), "ServerHello"),
    ([(X448, bytes(56)), (SECP521R1, bytes(133))], (X448, SECP521R1, P384), "HelloRetryRequest"),
    # framing of the extension itself
    ([(X25519, b"")], (X25519,), "decode_error"),
])
def test_key_share_validation(port: int, shares: list[tuple[int, bytes]], groups: tuple[int, ...],
                              expected: str) -> None:
    assert outcome(port, hello_with_shares(shares, groups)) == expected


def test_key_share_without_supported_groups_is_missing_extension(port: int) -> None:
    assert outcome(port, tls13_hello(KEYS).without(Ext.supported_groups)) == "missing_extension"


def test_truncated_key_share_is_decode_error(port: int) -> None:
    body = key_share([GOOD_X25519])[:-1]
    assert outcome(port, tls13_hello(KEYS).with_extension(Ext.key_share, body)) == "decode_error"

