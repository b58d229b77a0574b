"""Malformed and unexpected input gets the RFC's alert and closes only that connection (Go serverTest style)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from keyless.tls.codec import Writer
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import NEED_DATA, ApplicationData, ConnectionClosed, Event
from keyless.tls.extensions import ExtensionType
from keyless.tls.key_schedule import next_traffic_secret
from keyless.tls.messages import parse_client_hello
from keyless.tls.record import RecordLayer
from keyless.tls.suites import TLS13_SUITES_BY_CODE
from tests.tls.tls13_helpers import client_context, exchange, server_config

DATA = Path(__file__).parent / "data"
PYTHON_HELLO = (DATA / "client_hello_python.bin").read_bytes()


def record(content_type: int, payload: bytes, version: bytes = b"\x03\x01") -> bytes:
    return bytes((content_type,)) + version + len(payload).to_bytes(2, "big") + payload


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes((msg_type,)) + len(body).to_bytes(3, "big") + body


def hello_with(extensions: list[tuple[int, bytes]] | None = None, *, suites: tuple[int, ...] | None = None,
               drop: tuple[int, ...] = (), replace: dict[int, bytes] | None = None) -> bytes:
    hello = parse_client_hello(PYTHON_HELLO)
    exts = [(t, b) for t, b in hello.extensions if t not in drop]
    if replace:
        exts = [(t, replace.get(t, b)) for t, b in exts]
    exts += extensions or []
    w = Writer()
    w.u16(0x0303)
    w.raw(hello.random)
    w.opaque8(hello.legacy_session_id)
    with w.block(2):
        for suite in suites if suites is not None else hello.cipher_suites:
            w.u16(suite)
    w.opaque8(b"\x00")
    with w.block(2):
        for t, b in exts:
            w.u16(t)
            w.opaque16(b)
    return handshake(1, w.getvalue())


def run(data: bytes, conn: TLSServerConnection | None = None, *, chunk: int | None = None) -> list[Event]:
    conn = conn or TLSServerConnection(server_config(enable_tls12=False))
    events: list[Event] = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        conn.receive_data(piece)
        for _ in range(100):
            event = conn.next_event()
            if event is NEED_DATA:
                break
            events.append(event)
    return events


def closing_alert(events: list[Event]) -> int | None:
    assert events, "no events"
    last = events[-1]
    assert isinstance(last, ConnectionClosed), events
    return last.alert_sent


def bad_extensions_length() -> bytes:
    """The extensions block claims one byte more than the message holds."""
    raw = bytearray(PYTHON_HELLO)
    at = 4 + 2 + 32
    at += 1 + raw[at]
    at += 2 + int.from_bytes(raw[at : at + 2], "big")
    at += 1 + raw[at]
    raw[at : at + 2] = (int.from_bytes(raw[at : at + 2], "big") + 1).to_bytes(2, "big")
    return bytes(raw)


ALERT_CASES = [
    ("bad_extensions_length", record(22, bad_extensions_length()), 50),
    ("truncated_body", record(22, b"\x01\x00\x00\x05\x03\x03\x00\x00\x00"), 50),
    ("duplicate_extension", record(22, hello_with([(ExtensionType.server_name, b"\x00\x03\x00\x00\x00")])), 47),
    ("no_supported_versions", record(22, hello_with(drop=(ExtensionType.supported_versions,))), 70),
    ("only_tls12_offered", record(22, hello_with(replace={ExtensionType.supported_versions: b"\x02\x03\x03"})), 70),
    ("no_common_suite", record(22, hello_with(suites=(0x1304, 0x00FF))), 40),
    (
        "no_common_group",
        record(22, hello_with(replace={ExtensionType.supported_groups: b"\x00\x02\x00\x1e",
                                       ExtensionType.key_share: b"\x00\x3c\x00\x1e\x00\x38" + bytes(56)})),
        40,
    ),
    ("no_common_scheme", record(22, hello_with(replace={ExtensionType.signature_algorithms: b"\x00\x02\x04\x01"})), 40),
    ("key_share_without_groups", record(22, hello_with(drop=(ExtensionType.supported_groups,))), 109),
    ("no_signature_algorithms", record(22, hello_with(drop=(ExtensionType.signature_algorithms,))), 109),
    (
        "psk_not_last",
        record(22, hello_with([(ExtensionType.pre_shared_key, b"\x00\x0b\x00\x05hello\x00\x00\x00\x00\x00\x21\x20"
                                + bytes(32)), (ExtensionType.padding, b"")])),
        47,
    ),
    ("bad_x25519_share", record(22, hello_with(replace={ExtensionType.key_share: b"\x00\x06\x00\x1d\x00\x02ab"})), 47),
    ("finished_first", record(22, handshake(20, bytes(32))), 10),
    ("application_data_first", record(23, b"hello"), 10),
    ("alert_garbage", record(21, b"\x02\x28\x00"), 50),
    ("ccs_first", record(20, b"\x01"), 10),
    ("unknown_content_type", record(25, b"\x01"), 10),
    ("oversize_record", b"\x16\x03\x01\x48\x01" + bytes(0x4801), 22),
    ("empty_handshake_record", record(22, b""), 10),
]


@pytest.mark.parametrize(("name", "data", "alert"), ALERT_CASES, ids=[c[0] for c in ALERT_CASES])
def test_bad_input_gets_the_rfc_alert(name: str, data: bytes, alert: int) -> None:
    conn = TLSServerConnection(server_config(enable_tls12=False))
    events = run(data, conn)
    assert closing_alert(events) == alert, (name, events)
    sent = conn.data_to_send()
    assert sent.endswith(bytes((2, alert))), sent[-10:]
    assert conn.next_event() is NEED_DATA  # poisoned: nothing more comes out


@pytest.mark.parametrize(("name", "data", "alert"), ALERT_CASES[:8], ids=[c[0] for c in ALERT_CASES[:8]])
def test_byte_at_a_time_gives_the_same_alert(name: str, data: bytes, alert: int) -> None:
    assert closing_alert(run(data, chunk=1)) == alert


def test_hello_split_across_records_is_accepted() -> None:
    data = record(22, PYTHON_HELLO[:100]) + record(22, PYTHON_HELLO[100:])
    conn = TLSServerConnection(server_config())
    events = run(data, conn)
    assert events and type(events[0]).__name__ == "KeyOperationRequired"


def test_interleaved_record_inside_handshake_message() -> None:
    data = record(22, PYTHON_HELLO[:100]) + record(21, b"\x01\x00") + record(22, PYTHON_HELLO[100:])
    assert closing_alert(run(data)) == 10


def test_eof_during_handshake_closes_without_alert() -> None:
    conn = TLSServerConnection(server_config())
    conn.receive_data(record(22, PYTHON_HELLO)[:50])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    closed = conn.next_event()
    assert isinstance(closed, ConnectionClosed) and closed.alert_sent is None


# ---- post-handshake: forge client records with the client's keys (from its key log) ----------------


def established(tmp_path: Path) -> tuple[object, RecordLayer]:
    """A finished handshake plus a record layer holding the client's application write key."""
    keylog = tmp_path / "keys.log"
    ctx = client_context()
    ctx.keylog_filename = str(keylog)
    ex = exchange(server_config(), ctx)
    ex.handshake()
    secrets = {}
    for line in keylog.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        label, _random, secret = line.split()
        secrets[label] = bytes.fromhex(secret)
    suite = TLS13_SUITES_BY_CODE[0x1301]
    forged = RecordLayer()
    forged.set_write_key_tls13(suite, secrets["CLIENT_TRAFFIC_SECRET_0"])
    return ex, forged


def test_forged_application_data_is_accepted(tmp_path: Path) -> None:
    ex, forged = established(tmp_path)
    forged.write(23, b"forged but valid")
    events = run(forged.data_to_send(), ex.conn)  # type: ignore[attr-defined]
    assert events == [ApplicationData(b"forged but valid")]


def test_bad_record_mac(tmp_path: Path) -> None:
    ex, forged = established(tmp_path)
    forged.write(23, b"tampered")
    data = bytearray(forged.data_to_send())
    data[-1] ^= 1
    assert closing_alert(run(bytes(data), ex.conn)) == 20  # type: ignore[attr-defined]


def test_key_update_flood(tmp_path: Path) -> None:
    ex, forged = established(tmp_path)
    suite = TLS13_SUITES_BY_CODE[0x1301]
    secret = None
    keylog = (tmp_path / "keys.log").read_text().splitlines()
    secret = bytes.fromhex(next(line.split()[2] for line in keylog if line.startswith("CLIENT_TRAFFIC_SECRET_0")))
    out = b""
    for _ in range(40):
        forged.write(22, handshake(24, b"\x00"))
        out += forged.data_to_send()
        secret = next_traffic_secret("sha256", secret)
        forged.set_write_key_tls13(suite, secret)
    assert closing_alert(run(out, ex.conn)) == 10  # type: ignore[attr-defined]


def test_key_updates_with_data_between_are_fine(tmp_path: Path) -> None:
    ex, forged = established(tmp_path)
    suite = TLS13_SUITES_BY_CODE[0x1301]
    keylog = (tmp_path / "keys.log").read_text().splitlines()
    secret = bytes.fromhex(next(line.split()[2] for line in keylog if line.startswith("CLIENT_TRAFFIC_SECRET_0")))
    out = b""
    for i in range(40):
        forged.write(22, handshake(24, b"\x01"))  # update_requested: the server answers with its own
        secret = next_traffic_secret("sha256", secret)
        forged.set_write_key_tls13(suite, secret)
        forged.write(23, b"%d" % i)
        out += forged.data_to_send()
    events = run(out, ex.conn)  # type: ignore[attr-defined]
    assert [e.data for e in events if isinstance(e, ApplicationData)] == [b"%d" % i for i in range(40)]
    ex.server_step()  # type: ignore[attr-defined]
    ex.conn.send(b"still in sync")  # type: ignore[attr-defined]
    ex.server_step()  # type: ignore[attr-defined]
    assert ex.client_read() == b"still in sync"  # type: ignore[attr-defined]


def test_unexpected_handshake_message_after_handshake(tmp_path: Path) -> None:
    ex, forged = established(tmp_path)
    forged.write(22, PYTHON_HELLO)
    assert closing_alert(run(forged.data_to_send(), ex.conn)) == 10  # type: ignore[attr-defined]


def test_wrong_inner_content_type_after_handshake(tmp_path: Path) -> None:
    ex, forged = established(tmp_path)
    forged.write(20, b"\x01")  # an encrypted CCS is never allowed
    assert closing_alert(run(forged.data_to_send(), ex.conn)) == 10  # type: ignore[attr-defined]


def test_client_sees_our_alert(tmp_path: Path) -> None:
    ex, forged = established(tmp_path)
    forged.write(23, b"x")
    data = bytearray(forged.data_to_send())
    data[-1] ^= 1
    run(bytes(data), ex.conn)  # type: ignore[attr-defined]
    ex.to_client.write(ex.conn.data_to_send())  # type: ignore[attr-defined]
    with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC"):
        ex.client.read(10)  # type: ignore[attr-defined]


# ---- API misuse and bounds --------------------------------------------------------------------------


def paused_connection() -> tuple[TLSServerConnection, int]:
    conn = TLSServerConnection(server_config())
    conn.receive_data(record(22, PYTHON_HELLO))
    event = conn.next_event()
    assert type(event).__name__ == "KeyOperationRequired"
    return conn, event.op_id  # type: ignore[attr-defined]


def test_input_while_paused_is_bounded() -> None:
    conn, _ = paused_connection()
    conn.receive_data(record(23, bytes(16000)) * 5)  # 80 KB during the key operation
    closed = conn.next_event()
    assert isinstance(closed, ConnectionClosed) and closed.alert_sent == 10


def test_wrong_op_id_is_a_usage_error() -> None:
    from keyless.tls.alerts import TLSUsageError

    conn, op_id = paused_connection()
    with pytest.raises(TLSUsageError):
        conn.complete_key_operation(op_id + 1, b"sig")
    with pytest.raises(TLSUsageError):
        conn.send(b"too early")


def test_refused_early_data_is_skipped() -> None:
    # A ClientHello offering early_data: undecryptable records that follow are the refused 0-RTT data.
    hello = hello_with([(ExtensionType.early_data, b"")], drop=(ExtensionType.padding,))
    for offered, expect_alert in ((True, None), (False, 20)):
        conn = TLSServerConnection(server_config())
        conn.receive_data(record(22, hello if offered else PYTHON_HELLO))
        event = conn.next_event()
        from keyless.keys.local import LocalKey

        key: LocalKey = event.key  # type: ignore[attr-defined]
        conn.complete_key_operation(event.op_id, key.sign_sync(event.scheme, event.data))  # type: ignore[attr-defined]
        events = run(record(23, bytes(100), b"\x03\x03"), conn)
        if expect_alert is None:
            assert events == [], events
        else:
            assert closing_alert(events) == expect_alert


def test_late_key_answer_after_failure_is_ignored() -> None:
    conn, op_id = paused_connection()
    conn.receive_data(b"")  # EOF while signing
    conn.receive_data(record(23, bytes(70000 // 5)) * 6)
    assert isinstance(conn.next_event(), ConnectionClosed)
    conn.complete_key_operation(op_id, b"late")  # no exception, nothing happens
    assert conn.next_event() is NEED_DATA


# ---- HelloRetryRequest rules (RFC 8446 §4.1.2, §4.1.4) -----------------------------------------------


def retry_pending() -> TLSServerConnection:
    """A connection that answered the Python ClientHello (X25519 share only) with a HelloRetryRequest."""
    conn = TLSServerConnection(server_config(groups=(0x0018,)))
    assert run(record(22, PYTHON_HELLO), conn) == []
    sent = conn.data_to_send()
    assert sent[5] == 2 and bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891") in sent  # HRR random
    return conn


def test_second_hello_without_the_requested_share() -> None:
    assert closing_alert(run(record(22, PYTHON_HELLO), retry_pending())) == 47


def test_second_hello_with_early_data() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    point = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint
    )
    share = (4 + len(point)).to_bytes(2, "big") + b"\x00\x18" + len(point).to_bytes(2, "big") + point
    good = hello_with(replace={ExtensionType.key_share: share})
    assert type(run(record(22, good), retry_pending())[0]).__name__ == "KeyOperationRequired"
    with_early = hello_with([(ExtensionType.early_data, b"")], replace={ExtensionType.key_share: share})
    assert closing_alert(run(record(22, with_early), retry_pending())) == 47


def test_second_hello_changing_the_suite() -> None:
    changed = hello_with(suites=(0x1302,))
    assert closing_alert(run(record(22, changed), retry_pending())) == 47


# ---- the client's second flight, forged under its handshake key ----------------------------------------


def before_client_finished(tmp_path: Path, **overrides: object) -> tuple[TLSServerConnection, RecordLayer, bytes]:
    """The server waits for the client's Finished; returns it, a forger with the client's handshake
    key, and the genuine client flight (which the test may replace)."""
    keylog = tmp_path / "hs.log"
    ctx = client_context()
    ctx.keylog_filename = str(keylog)
    ex = exchange(server_config(**overrides), ctx)  # type: ignore[arg-type]
    try:
        ex.client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    ex.server_step()
    ex.client.do_handshake()
    genuine = ex.to_server.read()
    secret = next(
        bytes.fromhex(line.split()[2])
        for line in keylog.read_text().splitlines()
        if line.startswith("CLIENT_HANDSHAKE_TRAFFIC_SECRET")
    )
    forged = RecordLayer()
    forged.set_write_key_tls13(TLS13_SUITES_BY_CODE[0x1301], secret)
    return ex.conn, forged, genuine


@pytest.mark.parametrize(
    ("message", "alert"),
    [
        (handshake(20, bytes(32)), 51),  # wrong verify_data
        (handshake(20, bytes(31)), 50),  # wrong length
        (handshake(11, b"\x00\x00\x00\x00"), 10),  # Certificate we never asked for
        (handshake(24, b"\x00"), 10),  # KeyUpdate before Finished
        (handshake(1, PYTHON_HELLO[4:]), 10),  # another ClientHello
        (handshake(99, b""), 10),  # unknown message type
    ],
)
def test_bad_client_second_flight(tmp_path: Path, message: bytes, alert: int) -> None:
    conn, forged, _ = before_client_finished(tmp_path)
    forged.write(22, message)
    assert closing_alert(run(record(20, b"\x01", b"\x03\x03") + forged.data_to_send(), conn)) == alert


def test_genuine_flight_after_forger_setup_still_completes(tmp_path: Path) -> None:
    conn, _, genuine = before_client_finished(tmp_path)
    events = run(genuine, conn)
    assert type(events[-1]).__name__ == "HandshakeComplete"


def test_application_data_before_client_finished(tmp_path: Path) -> None:
    conn, forged, _ = before_client_finished(tmp_path)
    forged.write(23, b"too early")
    assert closing_alert(run(forged.data_to_send(), conn)) == 10


def test_second_change_cipher_spec(tmp_path: Path) -> None:
    conn, _, _ = before_client_finished(tmp_path)
    ccs = record(20, b"\x01", b"\x03\x03")
    assert closing_alert(run(ccs + ccs, conn)) == 10


def test_bad_client_certificate_verify(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.tls.tls13_helpers import client_identity, pki

    conn, forged, _ = before_client_finished(tmp_path, client_ca=(pki().ca_cert,))
    cert_pem, _key = client_identity()
    der = x509.load_pem_x509_certificate(cert_pem.read_bytes()).public_bytes(Encoding.DER)
    entry = len(der).to_bytes(3, "big") + der + b"\x00\x00"
    forged.write(22, handshake(11, b"\x00" + len(entry).to_bytes(3, "big") + entry))
    forged.write(22, handshake(15, b"\x04\x03\x00\x08" + bytes(8)))
    assert closing_alert(run(forged.data_to_send(), conn)) == 51


def test_fallback_scsv_is_inappropriate_fallback() -> None:
    tls12_only = hello_with(replace={ExtensionType.supported_versions: b"\x02\x03\x03"},
                            suites=(0xC02B, 0x5600))
    conn = TLSServerConnection(server_config())
    assert closing_alert(run(record(22, tls12_only), conn)) == 86


def test_grease_values_are_ignored() -> None:
    """RFC 8701: browsers sprinkle reserved values everywhere; they must simply be ignored."""
    hello = parse_client_hello(PYTHON_HELLO)
    groups = (0x0A0A, *hello.supported_groups)
    shares = ((0x0A0A, b"\x00"), *(hello.key_shares or ()))
    share_body = b"".join(g.to_bytes(2, "big") + len(k).to_bytes(2, "big") + k for g, k in shares)
    greased = hello_with(
        [(0x1A1A, b""), (0x2A2A, b"\x00")],
        suites=(0x3A3A, *hello.cipher_suites),
        replace={
            ExtensionType.supported_groups: (2 * len(groups)).to_bytes(2, "big")
            + b"".join(g.to_bytes(2, "big") for g in groups),
            ExtensionType.key_share: len(share_body).to_bytes(2, "big") + share_body,
            ExtensionType.supported_versions: b"\x06\x4a\x4a\x03\x04\x03\x03",
        },
    )
    events = run(record(22, greased))
    assert events and type(events[0]).__name__ == "KeyOperationRequired", events
