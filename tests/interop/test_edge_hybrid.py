"""Hybrid post-quantum key agreement at a real edge process, with clients we did not write.

- headless Chromium (X25519MLKEM768 by default) loads a page, and the edge's handshake counter says the
  connection's group was X25519MLKEM768;
- tlslite-ng 0.9.0b2 completes a handshake with each hybrid group (SecP256r1MLKEM768 and
  SecP384r1MLKEM1024 included, which no browser sends);
- OpenSSL 3.0's s_client and curl (no hybrid groups) keep negotiating X25519;
- per-listener ``groups:`` and ``hybrid_hello_retry:``, each on its own listener of one edge.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool
from tests.edge.certs import SitePKI, make_pki
from tests.edge.edgeproc import EdgeProcess
from tests.edge.support import OriginProcess, s_client_get
from tests.interop.test_edge_chromium import chromium_dump_dom, spki_pin

HOST = "hybrid.edge.test"
HANDSHAKES = "keyless_edge_handshakes_total"
GREETING = '<h1 id="greeting">Hello through a keyless edge</h1>'

TLSLITE_CLIENT = r"""
import socket, sys
from tlslite.api import TLSConnection, HandshakeSettings
port, host, offered, shares = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")
settings = HandshakeSettings()
settings.minVersion = (3, 4)
settings.eccCurves = offered
settings.keyShares = shares
conn = TLSConnection(socket.create_connection(("127.0.0.1", port)))
conn.handshakeClientCert(serverName=host, settings=settings)
conn.write(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode())
answer = b""
while True:
    data = conn.read()
    if not data:
        break
    answer += data
print(answer.split(b"\r\n", 1)[0].decode())
conn.close()
"""


def tlslite_get(port: int, offered: list[str], shares: list[str]) -> str:
    """One HTTP GET with tlslite-ng offering ``offered`` groups and sending key shares for ``shares``."""
    proc = subprocess.run(
        [sys.executable, "-c", TLSLITE_CLIENT, str(port), HOST, ",".join(offered), ",".join(shares)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def edge_config(pki: SitePKI, origin_port: int, listeners: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "listen": listeners,
        "metrics_addr": "127.0.0.1:0",
        "certificates": [{"names": [HOST], "chain": str(pki.chain("ecdsa")), "key_file": str(pki.key("ecdsa"))}],
        "origin": {"mode": "http", "address": f"127.0.0.1:{origin_port}"},
        "limits": {"drain_timeout": 2},
    }


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EdgeProcess, SitePKI]]:
    """One edge, three listeners: the defaults; classical groups only; the hybrid HelloRetryRequest on."""
    tmp_path = tmp_path_factory.mktemp("hybrid-edge")
    pki = make_pki(tmp_path / "pki")
    listeners = [
        {"address": "127.0.0.1", "port": 0},
        {"address": "127.0.0.1", "port": 0, "groups": ["x25519", "secp256r1"]},
        {"address": "127.0.0.1", "port": 0, "hybrid_hello_retry": True},
    ]
    with OriginProcess() as origin, EdgeProcess(edge_config(pki, origin.port, listeners), tmp_path) as process:
        yield process, pki


def count(edge: EdgeProcess, group: str) -> float:
    return edge.metric(HANDSHAKES, group=group)


def test_chromium_negotiates_x25519mlkem768_with_the_edge(edge: tuple[EdgeProcess, SitePKI], tmp_path: Path) -> None:
    process, pki = edge
    hybrid, classical = count(process, "X25519MLKEM768"), count(process, "x25519")
    result = chromium_dump_dom(f"https://{HOST}:{process.port}/", [spki_pin(pki.chain("ecdsa"))], HOST,
                               tmp_path / "profile")
    assert GREETING in result.stdout, result.stderr[-2000:]
    assert count(process, "X25519MLKEM768") > hybrid  # the page's connection(s): post-quantum hybrid
    assert count(process, "x25519") == classical
    assert process.metric(HANDSHAKES, version="TLSv1.3", group="X25519MLKEM768") >= 1


@pytest.mark.parametrize("group,label", [
    ("x25519mlkem768", "X25519MLKEM768"),
    ("secp256r1mlkem768", "SecP256r1MLKEM768"),
    ("secp384r1mlkem1024", "SecP384r1MLKEM1024"),
])
def test_tlslite_ng_completes_each_hybrid_group(edge: tuple[EdgeProcess, SitePKI], group: str, label: str) -> None:
    process, _ = edge
    before = count(process, label)
    assert tlslite_get(process.port, [group, "x25519", "secp256r1"], [group, "x25519"]) == "HTTP/1.1 200 OK"
    assert count(process, label) == before + 1


def test_openssl_and_curl_without_hybrid_groups_keep_x25519(edge: tuple[EdgeProcess, SitePKI]) -> None:
    process, pki = edge
    before = count(process, "x25519")
    out = s_client_get(process.port, pki.ca, HOST, "-tls1_3")
    assert "HTTP/1.1 200" in out, out[-2000:]
    assert "Server Temp Key: X25519" in out or "Negotiated TLS1.3 group: X25519" in out, out[-2000:]
    curl = require_tool("curl")
    result = subprocess.run(
        [curl, "-sS", "--tlsv1.3", "--cacert", str(pki.ca), "--resolve", f"{HOST}:{process.port}:127.0.0.1",
         f"https://{HOST}:{process.port}/"],
        capture_output=True, text=True, timeout=60,
    )
    assert "Hello through a keyless edge" in result.stdout, result.stderr
    assert count(process, "x25519") == before + 2


def test_a_listener_with_classical_groups_only_takes_the_x25519_share(edge: tuple[EdgeProcess, SitePKI]) -> None:
    process, _ = edge
    before = count(process, "x25519")
    offered = ["x25519mlkem768", "x25519", "secp256r1"]
    assert tlslite_get(process.ports[1], offered, ["x25519mlkem768", "x25519"]) == "HTTP/1.1 200 OK"
    assert count(process, "x25519") == before + 1


def test_hybrid_hello_retry_listener_upgrades_a_client_that_sent_only_x25519(
    edge: tuple[EdgeProcess, SitePKI],
) -> None:
    process, _ = edge
    offered = ["x25519mlkem768", "x25519", "secp256r1"]
    before = count(process, "X25519MLKEM768"), count(process, "x25519")
    # The default listener takes the X25519 share the client sent (no round trip spent)...
    assert tlslite_get(process.port, offered, ["x25519"]) == "HTTP/1.1 200 OK"
    assert (count(process, "X25519MLKEM768"), count(process, "x25519")) == (before[0], before[1] + 1)
    # ...the listener with hybrid_hello_retry asks for X25519MLKEM768, which tlslite-ng then sends.
    assert tlslite_get(process.ports[2], offered, ["x25519"]) == "HTTP/1.1 200 OK"
    assert (count(process, "X25519MLKEM768"), count(process, "x25519")) == (before[0] + 1, before[1] + 1)
