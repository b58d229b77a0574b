"""The edge as a real process with in-process keys (key_file): curl, openssl s_client, SNI, workers, signals.

The same checks against key servers are in tests/interop/test_edge_keyless.py.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool
from tests.edge.certs import KINDS, SitePKI, make_pki
from tests.edge.edgeproc import EdgeProcess
from tests.edge.support import HeldOrigin, OriginProcess, s_client_get
from tests.support.redis_server import redis_server
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SitePKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def origin() -> Iterator[OriginProcess]:
    with OriginProcess() as process:
        yield process


def edge_config(pki: SitePKI, origin_port: int, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listen": [{"address": "127.0.0.1", "port": 0}],
        "metrics_addr": "127.0.0.1:0",
        "certificates": [
            {"names": [f"{kind}.edge.test"], "chain": str(pki.chain(kind)), "key_file": str(pki.key(kind))}
            for kind in KINDS
        ],
        "rsa_key_exchange": True,
        "origin": {"mode": "http", "address": f"127.0.0.1:{origin_port}"},
        "limits": {"drain_timeout": 5},
    }
    config["certificates"][0]["default"] = True
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def edge(pki: SitePKI, origin: OriginProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    with EdgeProcess(edge_config(pki, origin.port), tmp_path_factory.mktemp("edge")) as process:
        yield process


def curl(
    edge: EdgeProcess, pki: SitePKI, path: str, *args: str, host: str = "ecdsa.edge.test"
) -> subprocess.CompletedProcess[bytes]:
    binary = require_tool("curl")
    return subprocess.run(
        [
            binary,
            "-sS",
            "--cacert",
            str(pki.ca),
            "--resolve",
            f"{host}:{edge.port}:127.0.0.1",
            *args,
            f"https://{host}:{edge.port}{path}",
        ],
        capture_output=True,
        timeout=60,
    )


def s_client(port: int, pki: SitePKI, *args: str, host: str = "ecdsa.edge.test") -> str:
    return s_client_get(port, pki.ca, host, *args)


def test_curl_get_post_chunked_through_edge(edge: EdgeProcess, pki: SitePKI, tmp_path: Path) -> None:
    page = curl(edge, pki, "/")
    assert page.returncode == 0, page.stderr
    assert b"Hello through a keyless edge" in page.stdout
    payload = bytes(range(256)) * 16384  # 4 MiB
    body = tmp_path / "body"
    body.write_bytes(payload)
    echoed = curl(edge, pki, "/echo", "--data-binary", f"@{body}")
    assert hashlib.sha256(echoed.stdout).digest() == hashlib.sha256(payload).digest()
    chunked = curl(
        edge, pki, "/echo", "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{body}", "-D", str(tmp_path / "h")
    )
    assert chunked.stdout == payload
    assert "x-request-was-chunked: 1" in (tmp_path / "h").read_text().lower()
    headers = json.loads(curl(edge, pki, "/headers").stdout)["headers"]
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-for"] == "127.0.0.1"


def test_sni_selects_certificate_by_key_type(edge: EdgeProcess, pki: SitePKI) -> None:
    expected = {"ecdsa": "id-ecPublicKey", "rsa": "rsaEncryption", "ed25519": "ED25519"}
    for kind in KINDS:
        out = s_client(edge.port, pki, "-brief", host=f"{kind}.edge.test")
        assert "Verification: OK" in out, out
        assert f"Peer certificate: CN = {kind}.edge.test" in out, out
    # An unknown name and no SNI at all get the default (ECDSA) site.
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", edge.port), timeout=30) as raw, ctx.wrap_socket(raw) as tls:
        cert = tls.getpeercert()
        assert ("commonName", "ecdsa.edge.test") in cert["subject"][0]
    assert expected  # the key algorithms are asserted through the certificate names above


def test_tls13_ticket_resumption_with_s_client(edge: EdgeProcess, pki: SitePKI, tmp_path: Path) -> None:
    session = tmp_path / "sess.pem"
    before = edge.metric("keyless_edge_key_operations_total")
    first = s_client(edge.port, pki, "-sess_out", str(session))
    assert "New, TLSv1.3" in first, first
    second = s_client(edge.port, pki, "-sess_in", str(session))
    assert "Reused, TLSv1.3" in second, second
    assert edge.metric("keyless_edge_key_operations_total") == before + 1
    assert edge.metric("keyless_edge_handshakes_total", version="TLSv1.3", resumed="true") >= 1


def test_tls12_resumption_ecdhe_and_rsa(edge: EdgeProcess, pki: SitePKI, tmp_path: Path) -> None:
    for host, cipher in (("ecdsa.edge.test", "ECDHE-ECDSA-AES128-GCM-SHA256"), ("rsa.edge.test", "AES128-GCM-SHA256")):
        session = tmp_path / f"{host}.pem"
        first = s_client(edge.port, pki, "-tls1_2", "-cipher", cipher, "-sess_out", str(session), host=host)
        assert "New, TLSv1.2, Cipher is " + cipher in first, first
        before = edge.metric("keyless_edge_key_operations_total")
        second = s_client(edge.port, pki, "-tls1_2", "-cipher", cipher, "-sess_in", str(session), host=host)
        assert "Reused, TLSv1.2" in second, second
        assert edge.metric("keyless_edge_key_operations_total") == before
    assert edge.metric("keyless_edge_key_operations_total", kind="decrypt", result="ok") >= 1


def test_metrics_health_and_readiness(edge: EdgeProcess) -> None:
    assert edge.status("/healthz") == 200
    assert edge.status("/readyz") == 200  # no key servers configured: always ready
    text = edge.metrics()
    for name in ("keyless_edge_handshakes_total", "keyless_edge_active_connections", "keyless_edge_bytes_sent_total"):
        assert name in text


def test_ticket_from_one_worker_resumes_on_another(pki: SitePKI, origin: OriginProcess, tmp_path: Path) -> None:
    with EdgeProcess(edge_config(pki, origin.port), tmp_path, workers=2) as edge:
        session = tmp_path / "sess.pem"
        first = s_client(edge.port, pki, "-sess_out", str(session))
        assert "New, TLSv1.3" in first
        # SO_REUSEPORT spreads connections by a hash of the 4-tuple: resume until both workers have had
        # connections (at least 16 tries; 64 all on one worker would have probability 2**-63).
        reused: list[bool] = []
        per_worker: list[float] = []
        while len(reused) < 16 or not (len(per_worker) == 2 and all(count > 0 for count in per_worker)):
            assert len(reused) < 64, per_worker
            reused.append("Reused, TLSv1.3" in s_client(edge.port, pki, "-sess_in", str(session)))
            per_worker = [
                float(line.rpartition(" ")[2])
                for line in edge.metrics().splitlines()
                if line.startswith("keyless_edge_worker_connections{")
            ]
        assert all(reused)
        assert edge.metric("keyless_edge_handshakes_total", resumed="true") == len(reused)


def test_sighup_reload_and_sigterm_drain(pki: SitePKI, tmp_path: Path) -> None:
    held = HeldOrigin()
    # The drain deadline only decides failure: the edge exits as soon as the request in flight is done.
    config = edge_config(pki, held.port, limits={"drain_timeout": 60})
    with held, EdgeProcess(config, tmp_path) as edge:
        assert "CN = ecdsa.edge.test" in s_client(edge.port, pki, "-brief", host="new.edge.test")
        config["certificates"][0]["default"] = False
        config["certificates"][1]["default"] = True  # RSA becomes the default
        import yaml

        edge.config_path.write_text(yaml.safe_dump(config))
        edge.signal(signal.SIGHUP)
        wait_until(
            lambda: "CN = rsa.edge.test" in s_client(edge.port, pki, "-brief", host="new.edge.test"),
            "the reload to take effect",
        )
        # A request in flight (held at the origin until the edge is draining) survives SIGTERM; the edge exits
        # once it is done.
        slow = subprocess.Popen(
            [
                "curl",
                "-sS",
                "--cacert",
                str(pki.ca),
                "--resolve",
                f"ecdsa.edge.test:{edge.port}:127.0.0.1",
                f"https://ecdsa.edge.test:{edge.port}/held",
            ],
            stdout=subprocess.PIPE,
        )
        assert held.arrived.wait(60), "the request never reached the origin"
        edge.signal(signal.SIGTERM)
        wait_until(lambda: "draining" in edge.stderr_path.read_text(), "the edge to start draining")
        held.release.set()
        out, _ = slow.communicate(timeout=60)
        assert out == b"held\n"
        assert edge.proc.wait(timeout=60) == 0
        assert "connections cut" not in edge.stderr_path.read_text()


def test_two_edges_sharing_a_ticket_key_file_resume_each_others_tickets(
    pki: SitePKI, origin: OriginProcess, tmp_path: Path
) -> None:
    import os

    key_file = tmp_path / "ticket.key"
    key_file.write_bytes(os.urandom(80))  # what `openssl rand 80 > ticket.key` makes
    config = edge_config(pki, origin.port, tickets={"key_files": [str(key_file)]})
    with EdgeProcess(config, tmp_path, name="a") as a, EdgeProcess(config, tmp_path, name="b") as b:
        session = tmp_path / "sess.pem"
        assert "New, TLSv1.3" in s_client(a.port, pki, "-sess_out", str(session))
        assert "Reused, TLSv1.3" in s_client(b.port, pki, "-sess_in", str(session))
    other = edge_config(pki, origin.port)  # generated keys: another edge cannot open the ticket
    with EdgeProcess(other, tmp_path, name="c") as c:
        assert "New, TLSv1.3" in s_client(c.port, pki, "-sess_in", str(session))


def test_tcp_mode_with_proxy_protocol_v2(pki: SitePKI, tmp_path: Path) -> None:
    import struct

    received = bytearray()
    with socket.socket() as origin:
        origin.bind(("127.0.0.1", 0))
        origin.listen(1)
        config = edge_config(
            pki, 1, origin={"mode": "tcp", "address": f"127.0.0.1:{origin.getsockname()[1]}", "proxy_protocol": True}
        )
        with EdgeProcess(config, tmp_path, name="tcp") as edge:
            ctx = ssl.create_default_context(cafile=str(pki.ca))
            with (
                socket.create_connection(("127.0.0.1", edge.port), timeout=30) as raw,
                ctx.wrap_socket(raw, server_hostname="ecdsa.edge.test") as tls,
            ):
                client_port = tls.getsockname()[1]
                tls.sendall(b"ping")
                origin.settimeout(30)
                conn, _ = origin.accept()
                with conn:
                    while len(received) < 28 + 4:
                        received.extend(conn.recv(4096))
                    conn.sendall(b"pong")
                    assert tls.recv(4) == b"pong"
    assert received[:12] == b"\r\n\r\n\x00\r\nQUIT\n"
    assert received[12:14] == b"\x21\x11"
    assert struct.unpack("!HH", bytes(received[24:28])) == (client_port, edge.port)
    assert bytes(received[28:]) == b"ping"


def test_max_connections_refuses_at_accept(pki: SitePKI, origin: OriginProcess, tmp_path: Path) -> None:
    config = edge_config(pki, origin.port, limits={"max_connections": 2, "handshake_timeout": 5, "drain_timeout": 1})
    with EdgeProcess(config, tmp_path, name="limited") as edge:
        held = [socket.create_connection(("127.0.0.1", edge.port), timeout=30) for _ in range(2)]
        wait_until(lambda: edge.metric("keyless_edge_active_connections") == 2, "both connections accepted")
        with socket.create_connection(("127.0.0.1", edge.port), timeout=30) as extra:
            extra.settimeout(30)  # the edge closes it at once; the timeout only decides failure
            try:
                assert extra.recv(1) == b""  # closed without a byte
            except ConnectionResetError:
                pass
        assert edge.metric("keyless_edge_connections_refused_total") == 1
        assert edge.metric("keyless_edge_active_connections") == 2
        for sock in held:
            sock.close()


def test_handshake_timeout_closes_silent_connections(pki: SitePKI, origin: OriginProcess, tmp_path: Path) -> None:
    config = edge_config(pki, origin.port, limits={"handshake_timeout": 0.5, "drain_timeout": 1})
    with EdgeProcess(config, tmp_path, name="hs-timeout") as edge:
        started = time.monotonic()  # before connecting: the edge's timer starts after this
        with socket.create_connection(("127.0.0.1", edge.port), timeout=30) as silent:  # timeout: failure only
            try:
                assert silent.recv(1) == b""
            except ConnectionResetError:
                pass
        assert time.monotonic() - started >= 0.45  # not before the handshake timeout; how much after is not asserted
        wait_until(
            lambda: edge.metric("keyless_edge_handshake_failures_total", reason="disconnected") >= 1, edge.metrics
        )


def test_check_config_command(pki: SitePKI, origin: OriginProcess, tmp_path: Path) -> None:
    import sys

    import yaml

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(edge_config(pki, origin.port)))
    result = subprocess.run(
        [sys.executable, "-m", "keyless", "edge", "--config", str(good), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "configuration OK: 3 certificates" in result.stdout
    broken = edge_config(pki, origin.port)
    broken["certificates"][1]["key_file"] = str(pki.key("ecdsa"))  # the RSA chain with the ECDSA key
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [sys.executable, "-m", "keyless", "edge", "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "certificates[1].key_file" in result.stderr and "does not belong" in result.stderr


def test_two_edges_sharing_ticket_keys_through_redis(pki: SitePKI, origin: OriginProcess, tmp_path: Path) -> None:
    with redis_server() as port:
        config = edge_config(pki, origin.port, tickets={"redis": f"redis://127.0.0.1:{port}/0"})
        with EdgeProcess(config, tmp_path, name="ra") as a, EdgeProcess(config, tmp_path, name="rb") as b:
            session = tmp_path / "sess.pem"
            assert "New, TLSv1.3" in s_client(a.port, pki, "-sess_out", str(session))
            assert "Reused, TLSv1.3" in s_client(b.port, pki, "-sess_in", str(session))


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_client_alert_is_counted_by_type(edge: EdgeProcess, pki: SitePKI, tmp_path: Path, version: str) -> None:
    # OpenSSL rejecting our certificate: TLS 1.2 sends the alert in clear, TLS 1.3 under its handshake key.
    stranger = make_pki(tmp_path / "stranger")  # a CA that did not sign the edge's certificate
    before = edge.metric("keyless_edge_alerts_received_total", description="unknown_ca")
    failures_before = edge.metric("keyless_edge_handshake_failures_total")
    unexpected_before = edge.metric("keyless_edge_alerts_sent_total", description="unexpected_message")
    openssl = require_tool("openssl")
    result = subprocess.run(
        [
            openssl,
            "s_client",
            "-connect",
            f"127.0.0.1:{edge.port}",
            "-servername",
            "ecdsa.edge.test",
            "-CAfile",
            str(stranger.ca),
            "-verify_return_error",
            version,
        ],
        input=b"",
        capture_output=True,
        timeout=30,
    )
    assert result.returncode != 0
    wait_until(
        lambda: edge.metric("keyless_edge_alerts_received_total", description="unknown_ca") > before, edge.metrics
    )
    assert edge.metric("keyless_edge_handshake_failures_total") == failures_before + 1
    # the client's alert is reported, not answered with an alert of ours
    assert edge.metric("keyless_edge_alerts_sent_total", description="unexpected_message") == unexpected_before


def test_sighup_reaches_every_worker(pki: SitePKI, origin: OriginProcess, tmp_path: Path) -> None:
    import yaml

    config = edge_config(pki, origin.port)
    with EdgeProcess(config, tmp_path, workers=2, name="hup") as edge:
        config["certificates"][0]["default"] = False
        config["certificates"][2]["default"] = True  # Ed25519 becomes the default
        edge.config_path.write_text(yaml.safe_dump(config))
        edge.signal(signal.SIGHUP)
        # Every worker must have switched: 12 connections in a row all see the new default.
        wait_until(
            lambda: all(
                "CN = ed25519.edge.test" in s_client(edge.port, pki, "-brief", host="unknown.edge.test")
                for _ in range(12)
            ),
            "every worker to reload",
            timeout=60,
        )


def test_tls12_session_id_resumption_without_tickets(edge: EdgeProcess, pki: SitePKI, tmp_path: Path) -> None:
    session = tmp_path / "sess.pem"
    first = s_client(edge.port, pki, "-tls1_2", "-no_ticket", "-sess_out", str(session))
    assert "New, TLSv1.2" in first, first
    before = edge.metric("keyless_edge_key_operations_total")
    second = s_client(edge.port, pki, "-tls1_2", "-no_ticket", "-sess_in", str(session))
    assert "Reused, TLSv1.2" in second, second  # from the edge's session-ID cache
    assert edge.metric("keyless_edge_key_operations_total") == before
