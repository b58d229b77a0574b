"""The key server as a real process, driven by Python ``ssl`` clients and the protocol codec."""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from keyless.keys.operations import OPERATIONS, PrivateKey, kind_of
from keyless.keys.ski import ski_of
from keyless.pki import DemoPKI
from keyless.protocol import ErrorCode, Message, Opcode, encode_message
from tests.conftest import require_tool
from tests.server.conftest import EXTRA_KEYS
from tests.support.keyserver import KeyServerProcess, start_keyserver
from tests.support.verify import payload_for, verify
from tests.support.waiting import wait_until
from tests.support.wire import Peer, client_context, connect

KEY_NAMES = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519", *EXTRA_KEYS)


@pytest.fixture(scope="module")
def keyserver(server_pki: DemoPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyServerProcess]:
    with start_keyserver(server_pki, tmp_path_factory.mktemp("ks")) as ks:
        yield ks


def site_key(pki: DemoPKI, name: str) -> PrivateKey:
    key = load_pem_private_key(pki.site_key(name).read_bytes(), None)
    return key  # type: ignore[return-value]


@pytest.fixture
def peer(server_pki: DemoPKI, keyserver: KeyServerProcess) -> Iterator[Peer]:
    p = Peer(connect(server_pki, keyserver.port))
    yield p
    p.close()


def test_ready_line_reports_every_key(keyserver: KeyServerProcess) -> None:
    assert keyserver.keys == len(KEY_NAMES)


def test_every_opcode_against_every_key_type_over_the_wire(server_pki: DemoPKI, peer: Peer) -> None:
    cases = []
    for name in KEY_NAMES:
        key = site_key(server_pki, name)
        for opcode, op in OPERATIONS.items():
            if op.kind is kind_of(key):
                cases.append((key, opcode, payload_for(opcode, key)))
    peer.send(*(Message(i, opcode, payload, ski=ski_of(key.public_key()), sni=b"keyless.test")
                for i, (key, opcode, payload) in enumerate(cases)))
    replies = {m.id: m for m in peer.receive(len(cases), timeout=60)}
    assert sorted(replies) == list(range(len(cases)))
    for i, (key, opcode, payload) in enumerate(cases):
        reply = replies[i]
        assert reply.opcode == Opcode.RESPONSE, (Opcode(opcode).name, reply)
        assert reply.payload is not None
        verify(opcode, key, payload, reply.payload)


def test_error_codes_over_the_wire_keep_the_connection(server_pki: DemoPKI, peer: Peer) -> None:
    ecdsa = ski_of(site_key(server_pki, "ecdsa-p256").public_key())
    rsa_ski = ski_of(site_key(server_pki, "rsa-2048").public_key())
    digest = hashlib.sha256(b"x").digest()
    cases = [
        (Message(1, Opcode.ECDSA_SIGN_SHA256, digest, ski=bytes(20)), ErrorCode.KEY_NOT_FOUND),
        (Message(2, Opcode.ECDSA_SIGN_SHA256, digest), ErrorCode.INTERNAL),
        (Message(3, Opcode.RESPONSE, digest), ErrorCode.UNEXPECTED_OPCODE),
        (Message(4, Opcode.ECDSA_SIGN_SHA256, digest[:20], ski=ecdsa), ErrorCode.CRYPTO_FAILED),
        (Message(5, Opcode.RSA_SIGN_SHA256, digest, ski=ecdsa), ErrorCode.CRYPTO_FAILED),
        (Message(6, Opcode.RSA_DECRYPT, bytes(256), ski=ecdsa), ErrorCode.CRYPTO_FAILED),
        (Message(7, Opcode.ECDSA_SIGN_SHA256, digest, ski=rsa_ski), ErrorCode.CRYPTO_FAILED),
        (Message(8, 0x99, digest, ski=ecdsa), ErrorCode.BAD_OPCODE),
        (Message(9, Opcode.SEAL, b"blob"), ErrorCode.INTERNAL),
        (Message(10, Opcode.CUSTOM, b"x", custom_func_name=b"f"), ErrorCode.BAD_OPCODE),
        (Message(11, Opcode.RPC, b"x"), ErrorCode.BAD_OPCODE),
        (Message(12, Opcode.PONG), ErrorCode.UNEXPECTED_OPCODE),
        (Message(13, None, digest, ski=ecdsa), ErrorCode.BAD_OPCODE),
    ]
    peer.send(*(m for m, _ in cases))
    replies = {m.id: m for m in peer.receive(len(cases))}
    for message, code in cases:
        assert replies[message.id].error_code == code, (message, replies[message.id])
    assert peer.request(Message(99, Opcode.PING, b"still here")).payload == b"still here"


def test_spec_worked_bytes(peer: Peer) -> None:
    ping0 = bytes.fromhex("010003f8 00000000 110001f1 2003f1".replace(" ", "")) + bytes(1009)
    peer.send_raw(ping0)
    peer.sock.settimeout(30)
    data = b""
    while len(data) < 1024:
        data += peer.sock.recv(4096)
    assert data == ping0.replace(b"\x11\x00\x01\xf1", b"\x11\x00\x01\xf2", 1)
    hello = bytes.fromhex("010003f8 00000005 110001f1 120006 48656c6c6f21 2003e8".replace(" ", "")) + bytes(1000)
    peer.send_raw(hello)
    data = b""
    while len(data) < 1024:
        data += peer.sock.recv(4096)
    assert data == hello.replace(b"\x11\x00\x01\xf1", b"\x11\x00\x01\xf2", 1)
    # other version bytes are accepted, and answered as 1.0
    peer.send_raw(b"\x02\x07" + ping0[2:])
    data = b""
    while len(data) < 1024:
        data += peer.sock.recv(4096)
    assert data == ping0.replace(b"\x11\x00\x01\xf1", b"\x11\x00\x01\xf2", 1)


def test_slow_rsa4096_does_not_delay_a_fast_ecdsa_behind_it(server_pki: DemoPKI, peer: Peer) -> None:
    rsa4096 = ski_of(site_key(server_pki, "rsa-4096").public_key())
    ecdsa = ski_of(site_key(server_pki, "ecdsa-p256").public_key())
    digest = hashlib.sha256(b"x").digest()
    slow = [Message(i, Opcode.RSA_PSS_SIGN_SHA256, digest, ski=rsa4096) for i in range(1, 7)]
    fast = Message(100, Opcode.ECDSA_SIGN_SHA256, digest, ski=ecdsa)
    peer.send(*slow, fast)
    replies = peer.receive(len(slow) + 1, timeout=30)
    assert replies[0].id == 100, [m.id for m in replies]
    assert all(m.opcode == Opcode.RESPONSE for m in replies)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_versions(server_pki: DemoPKI, keyserver: KeyServerProcess, version: ssl.TLSVersion) -> None:
    context = client_context(server_pki, maximum=version)
    context.minimum_version = version
    p = Peer(connect(server_pki, keyserver.port, context))
    try:
        assert p.sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        assert p.request(Message(1, Opcode.PING, b"v")).opcode == Opcode.PONG
    finally:
        p.close()


def _refused(pki: DemoPKI, port: int, context: ssl.SSLContext) -> bool:
    """True when the server refuses the client before answering anything."""
    try:
        p = Peer(connect(pki, port, context))
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        p.send(Message(1, Opcode.PING, b"let me in"))
        p.receive(1, timeout=30)  # an accepted client gets its reply well before; only decides failure
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    finally:
        p.close()
    return False


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_clients_without_a_valid_certificate_are_refused(
    server_pki: DemoPKI, other_pki: DemoPKI, keyserver: KeyServerProcess, version: ssl.TLSVersion
) -> None:
    failed_before = keyserver.metric_value("keyless_failed_connection")
    no_cert = client_context(server_pki, with_cert=False, maximum=version)
    assert _refused(server_pki, keyserver.port, no_cert)
    wrong_ca = ssl.create_default_context(cafile=str(server_pki.ca))
    wrong_ca.load_cert_chain(str(other_pki.edge_cert), str(other_pki.edge_key))
    wrong_ca.maximum_version = version
    assert _refused(server_pki, keyserver.port, wrong_ca)
    assert keyserver.metric_value("keyless_failed_connection") >= failed_before + 2
    assert "TLS handshake failed" in keyserver.log()


def test_malformed_and_truncated_frames_close_only_their_connection(server_pki: DemoPKI,
                                                                   keyserver: KeyServerProcess) -> None:
    good = Peer(connect(server_pki, keyserver.port))
    bad = Peer(connect(server_pki, keyserver.port))
    truncated = Peer(connect(server_pki, keyserver.port))
    polite = Peer(connect(server_pki, keyserver.port))  # truncates, then sends close_notify
    failed_before = keyserver.metric_value("keyless_failed_connection")
    try:
        assert good.request(Message(1, Opcode.PING, b"a")).payload == b"a"
        bad.send_raw(bytes.fromhex("01000008 0000002a 110001f1 110001f1".replace(" ", "")))  # opcode twice
        (reply,) = bad.receive(1)
        assert (reply.id, reply.error_code) == (42, ErrorCode.FORMAT)
        assert bad.closed_by_peer()
        truncated.send_raw(encode_message(Message(7, Opcode.PING, b"x"))[:500])
        truncated.close()
        polite.send_raw(encode_message(Message(8, Opcode.PING, b"x"))[:7])
        polite.sock.unwrap()
        assert good.request(Message(2, Opcode.PING, b"b")).payload == b"b"
        wait_until(lambda: keyserver.log().count("truncated frame") >= 2, "two 'truncated frame' log lines")
        assert keyserver.log().count("truncated frame") == 2
        assert "malformed frame" in keyserver.log()
        assert keyserver.metric_value("keyless_failed_connection") == failed_before + 3
        assert good.request(Message(3, Opcode.PING, b"c")).payload == b"c"
    finally:
        for p in (good, bad, truncated, polite):
            p.close()


def test_metrics_names_and_health_with_curl(server_pki: DemoPKI, keyserver: KeyServerProcess, peer: Peer) -> None:
    import subprocess

    curl = require_tool("curl", "curl")
    ski = ski_of(site_key(server_pki, "ecdsa-p256").public_key())
    before = keyserver.sign_count()
    reply = peer.request(Message(1, Opcode.ECDSA_SIGN_SHA256, hashlib.sha256(b"m").digest(), ski=ski))
    assert reply.opcode == Opcode.RESPONSE
    # An error of our own for the error labels (in any test order: the key server is shared by the module).
    unknown = peer.request(Message(2, Opcode.ECDSA_SIGN_SHA256, hashlib.sha256(b"m").digest(), ski=bytes(20)))
    assert unknown.error_code == ErrorCode.KEY_NOT_FOUND
    text = subprocess.run([curl, "-s", f"http://127.0.0.1:{keyserver.metrics_port}/metrics"],
                          capture_output=True, text=True, check=True, timeout=30).stdout
    lines = [line for line in text.splitlines() if "keyless" in line or line.startswith("certificate_")]
    names = {re.split(r"[{ ]", line)[0] for line in lines if not line.startswith("#")}
    for expected in ("keyless_sign_requests_total", "keyless_requests", "keyless_failed_connection",
                     "keyless_request_exec_duration_per_opcode_bucket",
                     "keyless_request_total_duration_per_opcode_bucket", "keyless_key_load_duration_bucket",
                     "certificate_expiration_timestamp_seconds", "keyless_sign_request_duration_seconds"):
        assert expected in names, expected
    for q in ("0.5", "0.9", "0.99"):
        assert f'keyless_sign_request_duration_seconds{{quantile="{q}"}}' in text
    assert 'keyless_requests{opcode="ECDSA_SIGN_SHA256"}' in text
    assert 'type="ECDSA_SIGN_SHA256"' in text and 'error="KEY_NOT_FOUND"' in text
    assert keyserver.sign_count() == before + 1
    for path, status in (("/healthz", "200"), ("/readyz", "200"), ("/nope", "404")):
        out = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              f"http://127.0.0.1:{keyserver.metrics_port}{path}"],
                             capture_output=True, text=True, timeout=30).stdout
        assert out == status, path


def test_logs_name_the_failure_but_never_key_material(server_pki: DemoPKI, keyserver: KeyServerProcess,
                                                      peer: Peer) -> None:
    digest = hashlib.sha256(b"x").digest()
    peer.request(Message(76, Opcode.ECDSA_SIGN_SHA256, digest, ski=bytes(20), sni=b"evil\nFORGED LINE"))
    peer.request(Message(77, Opcode.ECDSA_SIGN_SHA256, digest, ski=bytes(range(20)), sni=b"shop.example",
                         request_context=b'{"request_id": "req-123"}'))
    wait_until(lambda: "req-123" in keyserver.log(), "the failed request's log line")
    line = next(line for line in keyserver.log().splitlines() if "req-123" in line)
    for part in ("id=77", "ECDSA_SIGN_SHA256", bytes(range(20)).hex(), "shop.example", "KEY_NOT_FOUND",
                 "commonName=keyless edge"):
        assert part in line
    log = keyserver.log()
    assert not any(line.startswith("FORGED LINE") for line in log.splitlines())
    assert "evil\\nFORGED LINE" in log
    for name in KEY_NAMES:
        pem = server_pki.site_key(name).read_text()
        body = "".join(pem.splitlines()[1:-1])
        assert body[:40] not in log


def test_handshake_timeout_closes_silent_connections(server_pki: DemoPKI, tmp_path: Path) -> None:
    with start_keyserver(server_pki, tmp_path, handshake_timeout=0.5, idle_timeout=1) as ks:
        raw = socket.create_connection(("127.0.0.1", ks.port), timeout=30)  # the timeout only decides failure
        assert raw.recv(1) == b""  # closed by the server without a word
        raw.close()
        idle = Peer(connect(server_pki, ks.port))
        started = time.monotonic()  # before the request: the server's last activity is after this
        assert idle.request(Message(1, Opcode.PING)).opcode == Opcode.PONG
        assert idle.closed_by_peer(timeout=30)
        assert time.monotonic() - started >= 0.9  # not before the idle timeout (1 s); how much after is not asserted
        idle.close()
