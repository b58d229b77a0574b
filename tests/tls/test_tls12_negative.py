"""TLS 1.2 negative tests, Go serverTest style: a raw client does something wrong, the server answers with the
RFC's alert (and only that connection ends)."""

from __future__ import annotations

from typing import Any

import pytest

from keyless.tls.alerts import AlertDescription as A
from keyless.tls.codec import handshake_message
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import NEED_DATA, AlertReceived, ApplicationData, HandshakeComplete
from keyless.tls.session_cache import MemorySessionCache
from keyless.tls.tickets import TicketKey, TicketKeyRing
from tests.tls.tls12_helpers import server_config
from tests.tls.tls12_raw_client import ECDHE_ECDSA_AES128, RawClient12, alert_of


def client(config: Any = None, **kwargs: Any) -> RawClient12:
    return RawClient12(TLSServerConnection(config or server_config("ecdsa-p256")), **kwargs)


def hello_only(c: RawClient12, hello: bytes | None = None) -> Any:
    c.send_handshake(hello if hello is not None else c.client_hello())
    c.pump()
    return alert_of(c)


def to_client_key_exchange(c: RawClient12) -> None:
    c.send_handshake(c.client_hello())
    c.pump()
    assert c.suite is not None and alert_of(c) is None


# ---- ClientHello ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "extra", "mutate", "alert"),
    [
        pytest.param({"ems": False}, b"", None, A.handshake_failure, id="no-extended-master-secret"),
        pytest.param({"suites": (0xC013, 0x002F, 0x000A)}, b"", None, A.handshake_failure, id="only-cbc-and-3des"),
        pytest.param({"suites": (0xC02B, 0x5600)}, b"", None, A.inappropriate_fallback, id="fallback-scsv"),
        pytest.param({"groups": (0x0019,)}, b"", None, A.handshake_failure, id="no-common-group"),
        pytest.param({"sigalgs": (0x0201, 0x0203)}, b"", None, A.handshake_failure, id="sha1-only-not-allowed"),
        pytest.param({"version": 0x0302}, b"", None, A.protocol_version, id="tls11-only"),
        pytest.param({}, b"\x00\x17\x00\x00", None, A.illegal_parameter, id="duplicate-ems-extension"),
        pytest.param(
            {"renegotiation_info": b"\x07" * 12}, b"", None, A.handshake_failure, id="non-empty-renegotiation-info"
        ),
        pytest.param(
            {},
            b"",
            lambda h: h.replace(b"\x00\x0b\x00\x02\x01\x00", b"\x00\x0b\x00\x02\x01\x01"),
            A.illegal_parameter,
            id="no-uncompressed-points",
        ),
        pytest.param({}, b"", lambda h: handshake_message(1, h[4:-3]), A.decode_error, id="truncated"),
        pytest.param({}, b"", lambda h: handshake_message(1, h[4:40]), A.decode_error, id="truncated-in-session-id"),
    ],
)
def test_bad_client_hello(kwargs: dict[str, Any], extra: bytes, mutate: Any, alert: A) -> None:
    c = client(**kwargs)
    hello = c.client_hello(extra)
    if mutate is not None:
        mutated = mutate(hello)
        assert mutated != hello
        hello = mutated
    assert hello_only(c, hello) == alert


def test_null_compression_required() -> None:
    c = client()
    hello = c.client_hello()
    # compression_methods follows the cipher suites: <1> 0x00 → <1> 0x01
    index = hello.index(b"\x01\x00", 4 + 2 + 32 + 1 + 2 + 2 * len(c.suites))
    hello = hello[:index] + b"\x01\x01" + hello[index + 2 :]
    assert hello_only(c, hello) == A.illegal_parameter


def test_sha1_allowed_only_when_configured_and_nothing_else_offered() -> None:
    c = client(server_config("ecdsa-p256", tls12_allow_sha1_signatures=True), sigalgs=(0x0203, 0x0201))
    c.full_handshake()
    assert c.key_operations[0].scheme is not None and c.key_operations[0].scheme.name == "ECDSA_SHA1"


def test_ems_optional_when_configured() -> None:
    c = client(server_config("ecdsa-p256", require_extended_master_secret=False), ems=False)
    c.full_handshake()
    assert any(isinstance(e, HandshakeComplete) for e in c.events)


# ---- the client's second flight ---------------------------------------------------------------------------


def test_truncated_client_key_exchange() -> None:
    c = client()
    to_client_key_exchange(c)
    c.send_handshake(handshake_message(16, b"\x20" + bytes(16)))
    c.pump()
    assert alert_of(c) == A.decode_error


def test_empty_client_key_exchange_point() -> None:
    c = client()
    to_client_key_exchange(c)
    c.send_handshake(handshake_message(16, b"\x00"))
    c.pump()
    assert alert_of(c) == A.decode_error


def test_wrong_size_ecdh_point() -> None:
    c = client()
    to_client_key_exchange(c)
    c.send_handshake(handshake_message(16, b"\x10" + bytes(range(1, 17))))
    c.pump()
    assert alert_of(c) == A.illegal_parameter


@pytest.mark.parametrize(
    ("message", "alert"),
    [
        (handshake_message(20, bytes(12)), A.unexpected_message),  # Finished before ClientKeyExchange
        (handshake_message(11, b"\x00\x00\x00"), A.unexpected_message),  # Certificate we did not ask for
        (handshake_message(15, b"\x04\x03\x00\x00"), A.unexpected_message),  # CertificateVerify
        (handshake_message(0, b""), A.unexpected_message),  # HelloRequest comes from servers only
    ],
)
def test_out_of_order_message(message: bytes, alert: A) -> None:
    c = client()
    to_client_key_exchange(c)
    c.send_handshake(message)
    c.pump()
    assert alert_of(c) == alert


def test_second_client_hello_during_handshake() -> None:
    c = client()
    to_client_key_exchange(c)
    c.send_handshake(c.client_hello())
    c.pump()
    assert alert_of(c) == A.unexpected_message


def test_change_cipher_spec_before_key_exchange() -> None:
    c = client()
    to_client_key_exchange(c)
    c.send_record(20, b"\x01")
    c.pump()
    assert alert_of(c) == A.unexpected_message


def test_finished_without_change_cipher_spec() -> None:
    c = client()
    to_client_key_exchange(c)
    c.derive(c.ecdhe_key_exchange())
    c.finished()
    c.pump()
    assert alert_of(c) == A.unexpected_message


def test_bad_finished_is_decrypt_error() -> None:
    c = client()
    to_client_key_exchange(c)
    c.derive(c.ecdhe_key_exchange())
    c.change_cipher_spec()
    c.finished(bytes(12))
    flight = c.pump()
    assert alert_of(c) == A.decrypt_error and flight.alerts == [(2, A.decrypt_error)]


def test_finished_of_the_wrong_length() -> None:
    c = client()
    to_client_key_exchange(c)
    c.derive(c.ecdhe_key_exchange())
    c.change_cipher_spec()
    c.send_handshake(handshake_message(20, bytes(32)))
    c.pump()
    assert alert_of(c) == A.decode_error


def test_application_data_before_finished() -> None:
    c = client()
    to_client_key_exchange(c)
    c.derive(c.ecdhe_key_exchange())
    c.change_cipher_spec()
    c.application_data(b"too early")
    c.pump()
    assert alert_of(c) == A.unexpected_message


# ---- after the handshake ------------------------------------------------------------------------------


def test_renegotiation_is_refused_with_a_warning() -> None:
    c = client()
    c.full_handshake()
    c.send_handshake(c.client_hello(), hash_it=False)
    flight = c.pump()
    assert flight.alerts == [(1, 100)] and alert_of(c) is None  # warning no_renegotiation, still open
    c.application_data(b"still here")
    c.pump()
    assert [e.data for e in c.events if isinstance(e, ApplicationData)] == [b"still here"]
    for _ in range(3):
        c.send_handshake(c.client_hello(), hash_it=False)
        c.pump()
    assert alert_of(c) == A.unexpected_message


def test_unexpected_change_cipher_spec_after_handshake() -> None:
    c = client()
    c.full_handshake()
    c.send_record(20, b"\x01")
    c.pump()
    assert alert_of(c) == A.unexpected_message


def test_peer_warning_alert_is_reported_and_tolerated() -> None:
    c = client()
    c.full_handshake()
    c.send_record(21, b"\x01\x5a")  # warning user_canceled... any warning in 1.2
    c.application_data(b"after warning")
    c.pump()
    assert any(isinstance(e, AlertReceived) for e in c.events)
    assert [e.data for e in c.events if isinstance(e, ApplicationData)] == [b"after warning"]


# ---- resumption and the extended master secret (RFC 7627 §5.3) ------------------------------------------


def _first_session(config: Any, *, ems: bool, ticket: bool) -> RawClient12:
    first = client(config, ems=ems, ticket=b"" if ticket else None)
    first.full_handshake()
    return first


def test_raw_ticket_resumption() -> None:
    config = server_config("ecdsa-p256", ticket_keys=TicketKeyRing([TicketKey.generate()]))
    first = _first_session(config, ems=True, ticket=True)
    assert first.new_ticket
    second = client(config, ticket=first.new_ticket, session_id=b"\x42" * 32)
    second.master = first.master
    second.send_handshake(second.client_hello())
    flight = second.pump()
    assert flight.types() == [2, 20] and flight.ccs == 1 and second.server_session_id == b"\x42" * 32
    assert second.check_server_finished(flight)
    second.change_cipher_spec()
    second.finished()
    second.pump()
    info = [e for e in second.events if isinstance(e, HandshakeComplete)]
    assert info and info[0].resumed and info[0].key_operations == 0 and not second.key_operations


def test_session_with_ems_offered_without_ems_aborts() -> None:
    config = server_config("ecdsa-p256", require_extended_master_secret=False, session_cache=MemorySessionCache())
    first = _first_session(config, ems=True, ticket=False)
    assert first.server_session_id
    second = client(config, ems=False, session_id=first.server_session_id)
    assert hello_only(second) == A.handshake_failure


def test_ticket_with_ems_offered_without_ems_aborts() -> None:
    config = server_config(
        "ecdsa-p256", require_extended_master_secret=False, ticket_keys=TicketKeyRing([TicketKey.generate()])
    )
    first = _first_session(config, ems=True, ticket=True)
    second = client(config, ems=False, ticket=first.new_ticket)
    assert hello_only(second) == A.handshake_failure


def test_session_without_ems_offered_with_ems_is_a_full_handshake() -> None:
    config = server_config("ecdsa-p256", require_extended_master_secret=False, session_cache=MemorySessionCache())
    first = _first_session(config, ems=False, ticket=False)
    second = client(config, ems=True, session_id=first.server_session_id)
    second.full_handshake()
    info = [e for e in second.events if isinstance(e, HandshakeComplete)]
    assert info and not info[0].resumed and info[0].key_operations == 1


def test_session_for_a_suite_the_client_no_longer_offers_is_not_resumed() -> None:
    config = server_config("rsa-2048", session_cache=MemorySessionCache())
    first = client(config, suites=(0xC030,))
    first.full_handshake()
    second = client(config, suites=(0xC02F,), session_id=first.server_session_id)
    second.full_handshake()
    info = [e for e in second.events if isinstance(e, HandshakeComplete)]
    assert info and not info[0].resumed and info[0].cipher_suite.endswith("AES_128_GCM_SHA256")


def test_garbage_ticket_means_full_handshake() -> None:
    config = server_config("ecdsa-p256", ticket_keys=TicketKeyRing([TicketKey.generate()]))
    c = client(config, ticket=b"\x01" * 100)
    c.full_handshake()
    info = [e for e in c.events if isinstance(e, HandshakeComplete)]
    assert info and not info[0].resumed and c.new_ticket


def test_byte_at_a_time_handshake() -> None:
    c = client()
    hello = c.client_hello()
    record = b"\x16\x03\x03" + len(hello).to_bytes(2, "big") + hello
    for i in range(len(record) - 1):
        c.send_raw(record[i : i + 1])
        assert c.conn.next_event() is NEED_DATA and not c.conn.data_to_send()
    c.send_raw(record[-1:])
    c.transcript += hello
    flight = c.pump()  # the last byte completes the hello: the whole first flight follows
    assert flight.types() == [2, 11, 12, 14] and c.suite is not None and c.suite.code == ECDHE_ECDSA_AES128


def test_ecdsa_certificate_curve_must_be_offered() -> None:
    # P-256 certificate, client offers only P-384: RFC 8422 §5.1 rules the ECDSA suites out.
    assert hello_only(client(groups=(0x0018,))) == A.handshake_failure
    c = client(groups=(0x0018, 0x0017))
    assert hello_only(c) is None
    assert c.ske_params[1:3] == b"\x00\x17"  # our preference among the client's groups: P-256 before P-384


@pytest.mark.parametrize(
    ("kind", "suite", "offered", "chosen"),
    [
        ("rsa-2048", 0xC02F, (0x0401,), "RSA_PKCS1_SHA256"),
        ("rsa-2048", 0xC02F, (0x0601, 0x0501), "RSA_PKCS1_SHA384"),  # our order among what is offered
        ("rsa-2048", 0xC02F, (0x0401, 0x0805), "RSA_PSS_RSAE_SHA384"),
        ("ecdsa-p256", 0xC02B, (0x0503,), "ECDSA_SECP384R1_SHA384"),  # TLS 1.2: any hash with any curve
        ("ecdsa-p256", 0xC02B, (0x0503, 0x0403), "ECDSA_SECP256R1_SHA256"),  # but the curve's own hash first
    ],
)
def test_server_key_exchange_scheme_follows_the_client(kind: str, suite: int, offered: tuple[int, ...],
                                                       chosen: str) -> None:
    c = client(server_config(kind), suites=(suite,), sigalgs=offered)
    c.full_handshake()
    assert [op.scheme.name for op in c.key_operations if op.scheme is not None] == [chosen]


def test_ticket_for_another_server_name_is_not_resumed() -> None:
    config = server_config("ecdsa-p256", ticket_keys=TicketKeyRing([TicketKey.generate()]))
    first = _first_session(config, ems=True, ticket=True)
    assert first.new_ticket
    same = client(config, ticket=first.new_ticket, session_id=b"\x01" * 32)
    same.master = first.master
    same.send_handshake(same.client_hello())
    assert same.pump().types() == [2, 20]  # control: the same name resumes
    other = client(config, ticket=first.new_ticket, session_id=b"\x01" * 32, sni="other.keyless.test")
    other.send_handshake(other.client_hello())
    assert other.pump().types() == [2, 11, 12, 14] and other.server_session_id != b"\x01" * 32
