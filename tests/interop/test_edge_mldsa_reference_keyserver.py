"""An edge whose key server is a reference one, without ML-DSA: it answers the ML-DSA opcodes (0xC0-0xC2)
0x05 "bad opcode" as the reference protocol says for an unknown opcode. The edge's key check withdraws the
ML-DSA certificate (a warning names it), so tlslite-ng, which offers ML-DSA, gets the classical certificate of
the same names; names with no classical certificate fail that handshake with an alert, and nothing else.

The key server is scripted (Python's TLS server and our protocol codec, answering with our own key-operation
code except for the ML-DSA opcodes); the edge, the origin and the clients are real processes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from keyless.keys.hooks import Hooks
from keyless.keys.loader import KeySource, load_keys
from keyless.pki import DemoPKI, create_demo_pki
from keyless.protocol import ErrorCode, Message, Opcode, encode_message
from keyless.server.dispatch import resolve
from tests.client.scripted import ScriptedServer, start_scripted
from tests.edge.edgeproc import EdgeProcess
from tests.edge.support import LoopThread, OriginProcess
from tests.interop.test_edge_mldsa import TLSLITE_CLIENT, require_tlslite_mldsa
from tests.support.waiting import wait_until

HOST = "keyless.test"
MLDSA_OPCODES = {Opcode.MLDSA44_SIGN_MU, Opcode.MLDSA65_SIGN_MU, Opcode.MLDSA87_SIGN_MU}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    return create_demo_pki(tmp_path_factory.mktemp("pki"), HOST, site_keys=("ecdsa-p256",), pq=True)


@pytest.fixture(scope="module")
def reference_keyserver(pki: DemoPKI) -> Iterator[ScriptedServer]:
    store = load_keys([KeySource("dir", pki.keys_dir)], strict=True).store
    hooks = Hooks()

    def answer(message: Message) -> bytes:
        if message.opcode in MLDSA_OPCODES:
            return encode_message(Message.error(message.id, ErrorCode.BAD_OPCODE))
        result = resolve(message, store, hooks)
        if result.opcode == Opcode.ERROR:
            return encode_message(Message.error(message.id, result.error or ErrorCode.INTERNAL))
        return encode_message(Message(message.id, result.opcode, result.payload))

    loop = LoopThread()
    server: ScriptedServer = loop.run(start_scripted(pki, answer))
    try:
        yield server
    finally:
        loop.run(server.close())
        loop.stop()


@pytest.fixture(scope="module")
def edge(pki: DemoPKI, reference_keyserver: ScriptedServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    key_servers = [f"127.0.0.1:{reference_keyserver.port}"]
    config: dict[str, Any] = {
        "listen": [{"address": "127.0.0.1", "port": 0}],
        "metrics_addr": "127.0.0.1:0",
        "key_server_tls": {"client_cert": str(pki.edge_cert), "client_key": str(pki.edge_key), "ca": str(pki.ca),
                           "timeout": 60},
        "certificates": [
            {"names": [f"both.{HOST}"], "chain": str(pki.site_cert("mldsa65")), "key_servers": key_servers},
            {"names": [f"both.{HOST}"], "chain": str(pki.site_cert("ecdsa-p256")), "key_servers": key_servers,
             "default": True},
            {"names": [f"pq-only.{HOST}"], "chain": str(pki.site_cert("mldsa44")), "key_servers": key_servers},
        ],
        "origin": {"mode": "http", "address": "127.0.0.1:1"},
        "limits": {"drain_timeout": 2, "handshake_timeout": 60},
    }
    with OriginProcess() as origin:
        config["origin"]["address"] = f"127.0.0.1:{origin.port}"
        with EdgeProcess(config, tmp_path_factory.mktemp("edge")) as process:
            wait_until(lambda: process.status("/readyz") == 200, "/readyz to answer 200")
            wait_until(lambda: process.stderr_path.read_text().count("do not implement ML-DSA") >= 2,
                       "the key check to report both ML-DSA certificates")
            yield process


def tlslite(port: int, host: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", TLSLITE_CLIENT, str(port), host], capture_output=True, timeout=240)


def test_the_key_check_names_the_withdrawn_certificates(edge: EdgeProcess) -> None:
    log = edge.stderr_path.read_text()
    assert "certificates[0]" in log and "certificates[2]" in log, log
    assert "PRIVATE KEY" not in log


def test_a_client_offering_mldsa_gets_the_classical_certificate(edge: EdgeProcess) -> None:
    require_tlslite_mldsa()
    proc = tlslite(edge.port, f"both.{HOST}")
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out + proc.stderr.decode(errors="replace")
    assert "certificate ecdsa" in out and "Hello through a keyless edge" in out, out


def test_names_with_only_an_mldsa_certificate_fail_that_handshake_cleanly(edge: EdgeProcess) -> None:
    require_tlslite_mldsa()
    proc = tlslite(edge.port, f"pq-only.{HOST}")
    assert proc.returncode != 0
    assert "handshake_failure" in proc.stderr.decode(errors="replace"), proc.stderr
    again = tlslite(edge.port, f"both.{HOST}")  # the edge goes on serving
    assert again.returncode == 0 and b"Hello through a keyless edge" in again.stdout, again
