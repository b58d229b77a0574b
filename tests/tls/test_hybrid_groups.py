"""Hybrid ECDHE-MLKEM key shares (draft-ietf-tls-ecdhe-mlkem), tlsfuzzer style: hand-built ClientHellos over a
real socket to a real server, the answer asserted by name.

Preference (a hybrid group whenever its share is there), the opt-in HelloRetryRequest for a hybrid group,
and every framing rule: a share one byte short or long, an encapsulation key failing FIPS 203's modulus
check, a bad ECDH part, a hybrid share for a group not in supported_groups — each illegal_parameter.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyless.tls.config import ServerConfig
from keyless.tls.extensions import ExtensionType as Ext
from keyless.tls.suites import DEFAULT_TLS13_GROUPS
from tests.interop.tls13_server_driver import EngineServer
from tests.tls.conformance_client import (
    P256,
    P384,
    X25519,
    Hello,
    RawClient,
    ServerAlert,
    Tls13Handshake,
    key_share,
    outcome,
    records,
    tls12_hello,
    tls13_hello,
    u16_list,
)
from tests.tls.hybrid_client import (
    CLIENT_SHARE_LENGTH,
    HYBRIDS,
    LAYOUT,
    SECP256R1MLKEM768,
    SECP384R1MLKEM1024,
    SERVER_SHARE_LENGTH,
    X25519MLKEM768,
    HybridKeyShares,
    with_coefficient,
)
from tests.tls.tls13_helpers import server_config

KEYS = HybridKeyShares()
ALL_GROUPS = (X25519MLKEM768, SECP256R1MLKEM768, SECP384R1MLKEM1024, X25519, P256, P384)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with EngineServer(server_config()) as server:
        yield server.port


def hello(shares: list[tuple[int, bytes]] | tuple[int, ...], groups: tuple[int, ...] = ALL_GROUPS) -> Hello:
    entries = [(group, KEYS.public(group)) for group in shares] if isinstance(shares, tuple) else shares
    return (
        tls13_hello(KEYS)
        .with_extension(Ext.supported_groups, u16_list(groups))
        .with_extension(Ext.key_share, key_share(entries))
    )


def handshake(port: int, first: Hello, second: Hello | None = None) -> tuple[list[str], int]:
    """Run a whole handshake (answering one HelloRetryRequest with ``second``): what the server answered
    each hello with, and the group whose shares completed it (the echo proves both sides' secrets agree)."""
    answers: list[str] = []
    with RawClient(port) as client:
        hs = Tls13Handshake(client, KEYS)
        hs.send_hello(first)
        retry, group, exts = hs.read_server_hello()
        if retry:
            answers.append(f"HelloRetryRequest({group:#06x})")
            assert second is not None, "unexpected HelloRetryRequest"
            hs.send_hello(second, version=b"\x03\x03")
            retry, group, exts = hs.read_server_hello()
            assert not retry
        share_length = int.from_bytes(exts[Ext.key_share][2:4], "big")
        answers.append(f"ServerHello({group:#06x}, {share_length})")
        hs.read_server_flight()
        hs.send_finished()
        assert hs.echo(b"ping\n") == b"ping\n"
    return answers, group


# ---- every hybrid group, and preference ----------------------------------------------------------------


@pytest.mark.parametrize("group", HYBRIDS, ids=lambda g: f"{g:#06x}")
def test_each_hybrid_group_completes_with_the_drafts_share_sizes(port: int, group: int) -> None:
    answers, chosen = handshake(port, hello((group,)))
    assert chosen == group
    assert answers == [f"ServerHello({group:#06x}, {SERVER_SHARE_LENGTH[group]})"]


def test_a_hybrid_share_is_preferred_to_a_classical_one_sent_with_it(port: int) -> None:
    # Chromium's shape: X25519MLKEM768 and X25519 shares (classical first here: our order decides, not theirs).
    assert handshake(port, hello((X25519, X25519MLKEM768)))[1] == X25519MLKEM768
    assert handshake(port, hello((P256, SECP384R1MLKEM1024)))[1] == SECP384R1MLKEM1024


def test_default_preference_is_x25519mlkem768_first() -> None:
    assert DEFAULT_TLS13_GROUPS[0] == X25519MLKEM768
    assert ServerConfig(certificate_callback=lambda _: None).ecdhe_groups == (X25519, P256, P384)


def test_a_classical_share_is_taken_without_a_retry_by_default(port: int) -> None:
    # The client supports X25519MLKEM768 but sent only an X25519 share: no round trip spent on it.
    assert handshake(port, hello((X25519,)))[0] == ["ServerHello(0x001d, 32)"]


def test_hybrid_hello_retry_asks_for_the_hybrid_group_the_client_supports() -> None:
    first = hello((X25519,))
    second = hello((X25519MLKEM768,))
    with EngineServer(server_config(hybrid_hello_retry=True)) as server:
        answers, group = handshake(server.port, first, second)
    assert answers == ["HelloRetryRequest(0x11ec)", "ServerHello(0x11ec, 1120)"]
    assert group == X25519MLKEM768


def test_hybrid_hello_retry_never_asks_when_a_hybrid_share_was_sent() -> None:
    # SecP256r1MLKEM768's share is there: it is taken although we prefer X25519MLKEM768, which the client
    # supports — post-quantum either way, and no round trip.
    with EngineServer(server_config(hybrid_hello_retry=True)) as server:
        answers, group = handshake(server.port, hello((SECP256R1MLKEM768, X25519)))
    assert group == SECP256R1MLKEM768 and len(answers) == 1


def test_hybrid_hello_retry_never_asks_for_a_group_the_client_sent_or_we_like_less() -> None:
    # Our order puts x25519 before the hybrid group: the x25519 share the client sent is the answer.
    config = server_config(hybrid_hello_retry=True, groups=(X25519, X25519MLKEM768))
    with EngineServer(config) as server:
        assert handshake(server.port, hello((X25519,)))[0] == ["ServerHello(0x001d, 32)"]


def test_hybrid_hello_retry_needs_the_client_to_support_the_group() -> None:
    with EngineServer(server_config(hybrid_hello_retry=True)) as server:
        answers, _ = handshake(server.port, hello((X25519,), groups=(X25519, P256)))
    assert answers == ["ServerHello(0x001d, 32)"]


def test_a_listener_without_hybrid_groups_takes_the_classical_share() -> None:
    with EngineServer(server_config(groups=(X25519, P256))) as server:
        assert handshake(server.port, hello((X25519MLKEM768, X25519)))[1] == X25519


def test_tls12_never_negotiates_a_hybrid_group(port: int) -> None:
    only_hybrid = tls12_hello().with_extension(Ext.supported_groups, u16_list(HYBRIDS))
    assert outcome(port, only_hybrid) == "handshake_failure"  # no ECDHE curve in common
    # (P-256 stays: in TLS 1.2 it also admits the ECDSA P-256 certificate, RFC 8422 §5.1.)
    with_x25519 = tls12_hello().with_extension(Ext.supported_groups, u16_list((X25519MLKEM768, X25519, P256)))
    with RawClient(port) as client:
        client.send(records(22, with_x25519.message()))
        assert client.read_message().msg_type == 2  # ServerHello
        assert client.read_message().msg_type == 11  # Certificate
        server_key_exchange = client.read_message()
        assert server_key_exchange.msg_type == 12
        assert server_key_exchange.body[:3] == b"\x03\x00\x1d"  # named_curve x25519


# ---- illegal_parameter ---------------------------------------------------------------------------------


@pytest.mark.parametrize("group", HYBRIDS, ids=lambda g: f"{g:#06x}")
@pytest.mark.parametrize("change", ["one byte short", "one byte long", "empty ECDH half"])
def test_a_hybrid_share_of_the_wrong_length_is_illegal_parameter(port: int, group: int, change: str) -> None:
    share = KEYS.public(group)
    assert len(share) == CLIENT_SHARE_LENGTH[group]
    kem_first, ecdh_length, _, _ = LAYOUT[group]
    bad = {
        "one byte short": share[:-1],
        "one byte long": share + b"\x00",
        "empty ECDH half": share[:-ecdh_length] if kem_first else share[ecdh_length:],
    }[change]
    assert outcome(port, hello([(group, bad)])) == "illegal_parameter"


def test_a_bad_share_is_refused_even_beside_a_good_one(port: int) -> None:
    # §4.2.8: every share is checked, not only the one the server uses.
    bad = KEYS.public(SECP256R1MLKEM768)[:-1]
    assert outcome(port, hello([(X25519MLKEM768, KEYS.public(X25519MLKEM768)), (SECP256R1MLKEM768, bad)])) == (
        "illegal_parameter"
    )


@pytest.mark.parametrize("group", HYBRIDS, ids=lambda g: f"{g:#06x}")
@pytest.mark.parametrize("coefficient", [0, 255, "last"])
def test_an_encapsulation_key_failing_the_modulus_check_is_illegal_parameter(
    port: int, group: int, coefficient: int | str
) -> None:
    kem_first, _, ek_length, _ = LAYOUT[group]
    ek = KEYS.encapsulation_key(group)
    index = (ek_length - 32) * 2 // 3 - 1 if coefficient == "last" else int(coefficient)  # 32: rho follows t
    bad_ek = with_coefficient(ek, index, 3329)  # q itself: the smallest value FIPS 203 §7.2 refuses
    ecdh = KEYS.ecdh_public(group)
    share = bad_ek + ecdh if kem_first else ecdh + bad_ek
    assert outcome(port, hello([(group, share)])) == "illegal_parameter"
    # The same key with the coefficient at q - 1 passes: the check is the modulus, not the edit.
    good_ek = with_coefficient(ek, index, 3328)
    share = good_ek + ecdh if kem_first else ecdh + good_ek
    assert outcome(port, hello([(group, share)])) == "ServerHello"


@pytest.mark.parametrize("group", [SECP256R1MLKEM768, SECP384R1MLKEM1024], ids=lambda g: f"{g:#06x}")
def test_a_nist_half_that_is_not_an_uncompressed_point_is_illegal_parameter(port: int, group: int) -> None:
    share = bytearray(KEYS.public(group))
    share[0] = 0x02  # a compressed-point prefix: TLS 1.3 allows uncompressed points only
    assert outcome(port, hello([(group, bytes(share))])) == "illegal_parameter"
    share[0] = 0x04
    share[1] ^= 0xFF  # not on the curve any more
    assert outcome(port, hello([(group, bytes(share))])) == "illegal_parameter"


def test_an_all_zero_x25519_half_is_illegal_parameter(port: int) -> None:
    share = KEYS.encapsulation_key(X25519MLKEM768) + bytes(32)  # a low-order point: all-zero shared secret
    assert outcome(port, hello([(X25519MLKEM768, share)])) == "illegal_parameter"


@pytest.mark.parametrize("group", HYBRIDS, ids=lambda g: f"{g:#06x}")
def test_a_hybrid_share_for_a_group_not_in_supported_groups_is_illegal_parameter(port: int, group: int) -> None:
    others = tuple(g for g in ALL_GROUPS if g != group)
    assert outcome(port, hello((group, X25519), groups=others)) == "illegal_parameter"


def test_a_server_share_always_has_the_drafts_length(port: int) -> None:
    # Sanity of the helper's own table against what the server sent (also checked by every handshake above).
    for group in HYBRIDS:
        with RawClient(port) as client:
            hs = Tls13Handshake(client, KEYS)
            hs.send_hello(hello((group,)))
            try:
                _, chosen, exts = hs.read_server_hello()
            except ServerAlert as alert:  # pragma: no cover - the failure message
                pytest.fail(f"server refused {group:#06x}: {alert.name}")
            assert chosen == group
            assert len(exts[Ext.key_share]) == 4 + SERVER_SHARE_LENGTH[group]


# ---- configuration ---------------------------------------------------------------------------------------


def test_server_config_accepts_hybrid_groups_and_refuses_unknown_or_repeated_ones() -> None:
    ServerConfig(certificate_callback=lambda _: None, groups=(X25519MLKEM768, X25519))
    with pytest.raises(ValueError, match="unsupported or repeated groups"):
        ServerConfig(certificate_callback=lambda _: None, groups=(0x0200,))
    with pytest.raises(ValueError, match="unsupported or repeated groups"):
        ServerConfig(certificate_callback=lambda _: None, groups=(X25519, X25519))
