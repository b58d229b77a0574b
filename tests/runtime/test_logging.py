"""One log format for both daemons: JSON lines that parse and carry the same fields, the journald priority
prefix, rate limiting of failure floods; checked in-process and on a real key server with --workers 2."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyless.pki import DemoPKI, create_demo_pki
from keyless.protocol import Message, Opcode
from keyless.runtime.logging import RateLimitedLog, configure
from tests.support.keyserver import start_keyserver
from tests.support.wire import Peer, connect


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_the_fields(restore_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYLESS_WORKER_INDEX", "1")
    out = io.StringIO()
    configure("edge", "info", "json", stream=out)
    logging.getLogger("keyless.edge.listener").warning(
        "handshake failed peer=%s", "192.0.2.1:5", extra={"peer": "192.0.2.1:5", "sni": "a\nb.test"})
    logging.getLogger("keyless.edge").debug("not at info")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["daemon"] == "edge" and entry["worker"] == 1 and entry["pid"] == os.getpid()
    assert entry["level"] == "warning" and entry["logger"] == "keyless.edge.listener"
    assert entry["message"] == "handshake failed peer=192.0.2.1:5"
    assert entry["peer"] == "192.0.2.1:5" and entry["sni"] == "a\nb.test"  # escaped by JSON: one line
    assert entry["time"].endswith("Z")


def test_text_lines_name_the_daemon_and_pid(restore_logging: None) -> None:
    out = io.StringIO()
    configure("keyserver", "info", "text", stream=out)
    logging.getLogger("keyless.keyserver").info("hello")
    assert f" keyless-keyserver[{os.getpid()}] INFO keyless.keyserver: hello" in out.getvalue()


def test_journald_gets_the_syslog_priority_prefix(restore_logging: None, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with open(tmp_path / "journal", "w") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        configure("edge", "debug", "text", stream=stream)
        log = logging.getLogger("keyless.test")
        log.error("e")
        log.warning("w")
        log.info("i")
        log.debug("d")
    lines = (tmp_path / "journal").read_text().splitlines()
    assert [line[:3] for line in lines] == ["<3>", "<4>", "<6>", "<7>"]
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # someone else's journal stream: no prefix
    out = io.StringIO()
    configure("edge", "info", "text", stream=out)
    logging.getLogger("keyless.test").warning("w")
    assert not out.getvalue().startswith("<")


def test_a_flood_is_cut_to_the_burst_then_counted() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("keyless.test.flood")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    limited = RateLimitedLog(logger, burst=5, period=3600.0)
    logged = [limited.log(logging.WARNING, "failure %d", i) for i in range(1000)]
    assert sum(logged) == 5 and records == [f"failure {i}" for i in range(5)]
    limited._window_start -= 3600.0  # the period is over (no sleeping in tests)
    limited.log(logging.WARNING, "after")
    assert records[5:] == ["995 similar lines left out in the last 3600 s", "after"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    return create_demo_pki(tmp_path_factory.mktemp("pki"), site_keys=("ecdsa-p256",))


def test_key_server_workers_log_json_with_worker_peer_sni_and_request_id(pki: DemoPKI, tmp_path: Path) -> None:
    with start_keyserver(pki, tmp_path, workers=2, args=("--log-format", "json")) as ks:
        peer = Peer(connect(pki, ks.port))
        reply = peer.request(Message(7, Opcode.ECDSA_SIGN_SHA256, hashlib.sha256(b"j").digest(), ski=bytes(20),
                                     sni=b"shop.example", request_context=b'{"request_id": "req-json-1"}'))
        assert reply.error_code == 0x02  # no such key: a logged failure
        local = peer.sock.getsockname()
        deadline = time.monotonic() + 30
        while "req-json-1" not in ks.log():
            assert time.monotonic() < deadline, ks.log()
            time.sleep(0.05)
        peer.close()
    entries = [json.loads(line) for line in ks.log().splitlines()]  # every line is one JSON object
    assert {entry["daemon"] for entry in entries} == {"keyserver"}
    assert {entry.get("worker") for entry in entries} == {None, 0, 1}  # the supervisor, and each worker
    failure = next(entry for entry in entries if entry.get("request_id") == "req-json-1")
    assert failure["level"] == "warning" and failure["sni"] == "shop.example"
    assert failure["peer"] == f"127.0.0.1:{local[1]}"
    assert failure["worker"] in (0, 1) and failure["pid"] != ks.proc.pid
    opened = [entry for entry in entries if entry["message"].startswith("connection opened")]
    assert [entry["peer"] for entry in opened] == [f"127.0.0.1:{local[1]}"]
    assert opened[0]["worker"] == failure["worker"]  # the same worker served the connection and its request
