"""Signals and processes: SIGHUP reloads keys under live connections, SIGTERM drains, --workers."""

from __future__ import annotations

import hashlib
import itertools
import shutil
import signal
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from keyless.keys.ski import ski_of
from keyless.pki import DemoPKI, write_private_key
from keyless.protocol import Message, Opcode
from tests.support.keyserver import start_keyserver
from tests.support.verify import verify
from tests.support.waiting import wait_until
from tests.support.wire import Peer, connect

DIGEST = hashlib.sha256(b"lifecycle").digest()


def test_sighup_picks_up_a_new_key_without_dropping_connections(server_pki: DemoPKI, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    shutil.copytree(server_pki.keys_dir, keys)
    with start_keyserver(server_pki, tmp_path, private_key_dirs=[str(keys)]) as ks:
        peer = Peer(connect(server_pki, ks.port))
        new_key = ec.generate_private_key(ec.SECP256R1())
        ski = ski_of(new_key.public_key())
        assert peer.request(Message(1, Opcode.ECDSA_SIGN_SHA256, DIGEST, ski=ski)).error_code == 0x02
        write_private_key(keys / "sub" / "new.key", new_key)
        ks.send_signal(signal.SIGHUP)
        request_ids = itertools.count(2)

        def signed_with_the_new_key() -> Message | None:
            reply = peer.request(Message(next(request_ids), Opcode.ECDSA_SIGN_SHA256, DIGEST, ski=ski))
            return reply if reply.opcode == Opcode.RESPONSE else None

        # The reload runs in the background: poll, on the same connection.
        reply = wait_until(signed_with_the_new_key, "the reloaded key to sign")
        assert reply.payload is not None
        verify(Opcode.ECDSA_SIGN_SHA256, new_key, DIGEST, reply.payload)
        assert "reloaded keys: 7 loaded" in ks.log()
        peer.close()


def test_sigterm_answers_every_request_in_flight(server_pki: DemoPKI, tmp_path: Path) -> None:
    key = load_pem_private_key(server_pki.site_key("rsa-2048").read_bytes(), None)
    ski = ski_of(key.public_key())  # type: ignore[arg-type]
    with start_keyserver(server_pki, tmp_path) as ks:
        peers = [Peer(connect(server_pki, ks.port)) for _ in range(2)]
        count = 150
        for p in peers:
            p.send(*(Message(i, Opcode.RSA_SIGN_SHA256, DIGEST, ski=ski) for i in range(count)))
        ks.send_signal(signal.SIGTERM)
        for p in peers:
            replies = p.receive(count, timeout=60)
            assert sorted(m.id for m in replies) == list(range(count))
            assert all(m.opcode == Opcode.RESPONSE for m in replies)
            assert p.closed_by_peer(timeout=30)
            p.close()
        assert ks.proc.wait(20) == 0
        assert "drained" in ks.log()


def test_workers_share_one_port(server_pki: DemoPKI, tmp_path: Path) -> None:
    key = load_pem_private_key(server_pki.site_key("ecdsa-p256").read_bytes(), None)
    ski = ski_of(key.public_key())  # type: ignore[arg-type]
    with start_keyserver(server_pki, tmp_path, workers=2) as ks:
        peers = [Peer(connect(server_pki, ks.port)) for _ in range(8)]
        for i, p in enumerate(peers):
            reply = p.request(Message(i, Opcode.ECDSA_SIGN_SHA256, DIGEST, ski=ski))
            assert reply.opcode == Opcode.RESPONSE and reply.payload is not None
            verify(Opcode.ECDSA_SIGN_SHA256, key, DIGEST, reply.payload)
        # the supervisor adds up both workers' metrics, which each publishes about once a second
        assert _eventually(lambda: ks.sign_count() == len(peers)), ks.metrics()
        assert ks.log().count(f"listening on 127.0.0.1:{ks.port}") == 2
        for p in peers:
            p.close()
        assert ks.stop() == 0


def test_not_ready_without_keys_and_strict_reload_keeps_the_old_keys(server_pki: DemoPKI, tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    keys = tmp_path / "keys"
    keys.mkdir()
    with start_keyserver(server_pki, tmp_path, private_key_dirs=[str(keys)], strict=True) as ks:
        assert ks.keys == 0
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ks.metrics_port}/readyz", timeout=30)
            raise AssertionError("/readyz answered 200 without keys")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and b"keys_loaded" in exc.read()
        key = ec.generate_private_key(ec.SECP256R1())
        write_private_key(keys / "good.key", key)
        ks.send_signal(signal.SIGHUP)
        peer = Peer(connect(server_pki, ks.port))
        message = Message(1, Opcode.ECDSA_SIGN_SHA256, DIGEST, ski=ski_of(key.public_key()))
        assert _eventually(lambda: peer.request(message).opcode == Opcode.RESPONSE)
        with urllib.request.urlopen(f"http://127.0.0.1:{ks.metrics_port}/readyz", timeout=30) as response:
            assert response.status == 200
        (keys / "broken.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        ks.send_signal(signal.SIGHUP)
        assert _eventually(lambda: "key reload failed, keeping the 1 keys" in ks.log())
        assert peer.request(message).opcode == Opcode.RESPONSE  # the old key set still serves
        peer.close()


def test_workers_forward_sighup(server_pki: DemoPKI, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    shutil.copytree(server_pki.keys_dir, keys)
    with start_keyserver(server_pki, tmp_path, private_key_dirs=[str(keys)], workers=2) as ks:
        key = ec.generate_private_key(ec.SECP384R1())
        write_private_key(keys / "new.key", key)
        ks.send_signal(signal.SIGHUP)
        assert _eventually(lambda: ks.log().count("reloaded keys") == 2)
        digest = hashlib.sha384(b"w").digest()
        for i in range(6):  # new connections land on either worker: every one must know the key
            peer = Peer(connect(server_pki, ks.port))
            reply = peer.request(Message(i, Opcode.ECDSA_SIGN_SHA384, digest, ski=ski_of(key.public_key())))
            assert reply.opcode == Opcode.RESPONSE
            peer.close()


def _eventually(check: object, timeout: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_loglevel_is_honoured(server_pki: DemoPKI, tmp_path: Path) -> None:
    with start_keyserver(server_pki, tmp_path, loglevel="warning") as ks:
        peer = Peer(connect(server_pki, ks.port))
        assert peer.request(Message(1, Opcode.PING)).opcode == Opcode.PONG
        peer.request(Message(2, Opcode.ECDSA_SIGN_SHA256, DIGEST, ski=bytes(20)))
        peer.close()
        assert _eventually(lambda: "request failed" in ks.log())
        assert "connection opened" not in ks.log() and "INFO" not in ks.log()
