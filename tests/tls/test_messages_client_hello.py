"""ClientHello parsing against hellos captured from real clients, and strictness on malformed ones."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.codec import Reader, Writer
from keyless.tls.extensions import ExtensionType
from keyless.tls.messages import parse_client_hello

DATA = Path(__file__).parent / "data"
CAPTURED = sorted(DATA.glob("client_hello_*.bin"))


def rebuild(raw: bytes, extensions: list[tuple[int, bytes]] | None = None, **fields: bytes) -> bytes:
    """Re-serialise a ClientHello from its parts (optionally replacing the extension list)."""
    hello = parse_client_hello(raw)
    w = Writer()
    w.u16(hello.legacy_version)
    w.raw(hello.random)
    w.opaque8(fields.get("session_id", hello.legacy_session_id))
    with w.block(2):
        for suite in hello.cipher_suites:
            w.u16(suite)
    w.opaque8(fields.get("compression", hello.compression_methods))
    with w.block(2):
        for ext_type, body in extensions if extensions is not None else hello.extensions:
            w.u16(ext_type)
            w.opaque16(body)
    body = w.getvalue()
    return b"\x01" + len(body).to_bytes(3, "big") + body


def alert_of(raw: bytes) -> AlertDescription:
    with pytest.raises(TLSAlert) as info:
        parse_client_hello(raw).check_extensions_for(0x0304)  # as a TLS 1.3 server reads it
    return info.value.description


def test_captured_hellos_exist() -> None:
    assert len(CAPTURED) >= 5


@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.stem)
def test_parse_captured_and_reserialise_byte_equal(path: Path) -> None:
    raw = path.read_bytes()
    hello = parse_client_hello(raw)
    assert hello.raw == raw
    assert hello.supported_versions is not None and 0x0304 in hello.supported_versions
    assert hello.key_shares
    assert hello.signature_algorithms
    assert 0x1301 in hello.cipher_suites
    assert rebuild(raw) == raw


def test_openssl_hello_fields() -> None:
    hello = parse_client_hello((DATA / "client_hello_openssl.bin").read_bytes())
    assert hello.server_name == "keyless.test"
    assert hello.alpn_protocols == (b"h2", b"http/1.1")
    assert len(hello.legacy_session_id) == 32  # middlebox compatibility mode
    assert 0x001D in dict(hello.key_shares or ())


@pytest.mark.parametrize("path", CAPTURED, ids=lambda p: p.stem)
def test_every_strict_prefix_is_a_decode_error(path: Path) -> None:
    raw = path.read_bytes()
    for cut in range(len(raw)):
        with pytest.raises(TLSAlert):
            parse_client_hello(raw[:cut])


def test_trailing_byte_is_a_decode_error() -> None:
    raw = (DATA / "client_hello_python.bin").read_bytes()
    body = raw[4:] + b"\x00"
    assert alert_of(b"\x01" + len(body).to_bytes(3, "big") + body) == AlertDescription.decode_error


def test_duplicate_extension_is_illegal_parameter() -> None:
    raw = (DATA / "client_hello_openssl.bin").read_bytes()
    exts = list(parse_client_hello(raw).extensions)
    sni = next(e for e in exts if e[0] == ExtensionType.server_name)
    assert alert_of(rebuild(raw, [*exts, sni])) == AlertDescription.illegal_parameter


def test_pre_shared_key_not_last_is_illegal_parameter() -> None:
    raw = (DATA / "client_hello_openssl.bin").read_bytes()
    exts = list(parse_client_hello(raw).extensions)
    psk = (ExtensionType.pre_shared_key, b"\x00\x0b\x00\x05hello\x00\x00\x00\x00\x00\x21\x20" + bytes(32))
    assert parse_client_hello(rebuild(raw, [*exts, psk])).pre_shared_key is not None
    assert alert_of(rebuild(raw, [psk, *exts])) == AlertDescription.illegal_parameter


@pytest.mark.parametrize(
    ("ext_type", "body"),
    [
        (ExtensionType.supported_versions, b"\x03\x03\x04\x03"),  # odd length
        (ExtensionType.supported_groups, b"\x00\x00"),  # empty list
        (ExtensionType.signature_algorithms, b"\x00\x02\x04"),  # truncated
        (ExtensionType.key_share, b"\x00\x04\x00\x1d\x00\x00"),  # empty key_exchange
        (ExtensionType.server_name, b"\x00\x05\x00\x00\x02a."),  # trailing dot
        (ExtensionType.application_layer_protocol_negotiation, b"\x00\x01\x00"),  # empty name
        (ExtensionType.psk_key_exchange_modes, b"\x00"),
        (ExtensionType.early_data, b"\x00"),
        (ExtensionType.record_size_limit, b"\x00\x10"),
    ],
)
def test_malformed_extension_bodies_are_refused(ext_type: int, body: bytes) -> None:
    raw = (DATA / "client_hello_python.bin").read_bytes()
    exts = [e for e in parse_client_hello(raw).extensions if e[0] != ext_type]
    exts.insert(0, (ext_type, body))
    assert alert_of(rebuild(raw, exts)) in (AlertDescription.decode_error, AlertDescription.illegal_parameter)


def test_session_id_longer_than_32_is_refused() -> None:
    raw = (DATA / "client_hello_python.bin").read_bytes()
    assert alert_of(rebuild(raw, session_id=bytes(33))) == AlertDescription.decode_error


def test_random_bytes_only_raise_tls_alerts() -> None:
    rng = random.Random(4)
    for _ in range(3000):
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        try:
            parse_client_hello(b"\x01" + len(blob).to_bytes(3, "big") + blob)
        except TLSAlert:
            pass


def test_mutated_hellos_only_raise_tls_alerts() -> None:
    rng = random.Random(8446)
    for path in CAPTURED:
        raw = bytearray(path.read_bytes())
        for _ in range(600):
            mutated = bytearray(raw)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(4, len(mutated))] = rng.getrandbits(8)
            try:
                parse_client_hello(bytes(mutated))
            except TLSAlert:
                pass


def test_reader_sub_must_be_consumed() -> None:
    r = Reader(b"\x00\x02\xab\xcd\xef")
    sub = r.vec16()
    assert sub.u8() == 0xAB
    with pytest.raises(TLSAlert):
        sub.expect_end()
    with pytest.raises(TLSAlert):
        r.expect_end()
    assert r.u8() == 0xEF
    r.expect_end()


def test_rfc8448_simple_1rtt_client_hello() -> None:
    """The ClientHello of RFC 8448 §3 (the RFC's own trace)."""
    hello = parse_client_hello((DATA / "client_hello_rfc8448.bin").read_bytes())
    assert hello.server_name == "server"
    assert hello.cipher_suites == (0x1301, 0x1303, 0x1302)
    assert hello.supported_versions == (0x0304,)
    assert hello.record_size_limit == 0x4001
    assert hello.psk_modes == (1,)
    assert hello.key_shares is not None and hello.key_shares[0][1].hex().startswith("99381de560e4bd43")
