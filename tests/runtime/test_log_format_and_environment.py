"""``log_format`` is a configuration key of both daemons (``--log-format`` overrides it), a mistyped
``KEYLESS_*`` variable is named with a did-you-mean instead of being ignored without a word, and with
``--workers N`` what the configuration deserves a warning for is said once, not N times."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import yaml

from keyless.pki import DemoPKI
from keyless.runtime.config import ConfigError
from tests.edge.edgeproc import EdgeProcess
from tests.runtime.daemons import DAEMONS, Daemon, edge_config, expired_certificate, intermediate_chain
from tests.support.keyserver import keyserver_config, start_keyserver

BOTH = pytest.mark.parametrize("daemon", DAEMONS, ids=lambda d: d.name)
DEADLINE = 60.0
SECRET = "hunter2-not-to-be-shown"


@BOTH
def test_log_format_is_a_key_and_a_variable(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path) -> None:
    assert daemon.load(daemon.write(tmp_path, daemon.good(runtime_pki))).log_format == "text"
    assert daemon.load(daemon.write(tmp_path, daemon.good(runtime_pki, log_format="json"))).log_format == "json"
    path = daemon.write(tmp_path, daemon.good(runtime_pki))
    assert daemon.load(path, {"KEYLESS_LOG_FORMAT": "JSON"}).log_format == "json"


@BOTH
def test_a_bad_log_format_is_the_same_error_from_both(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path) -> None:
    path = daemon.write(tmp_path, daemon.good(runtime_pki, log_format="xml"))
    with pytest.raises(ConfigError) as caught:
        daemon.load(path)
    assert str(caught.value) == f"{path}: log_format: 'xml' is not allowed (fix: use text or json)"


@BOTH
def test_log_format_json_from_the_file_applies_at_start(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path) -> None:
    """No --log-format flag: the file's log_format decides (every stderr line is a JSON object)."""
    if daemon.name == "keyserver":
        with start_keyserver(runtime_pki, tmp_path, log_format="json") as ks:
            log_path = ks.log_path
    else:
        with EdgeProcess(edge_config(runtime_pki, log_format="json"), tmp_path) as edge:
            log_path = edge.stderr_path
    lines = log_path.read_text().splitlines()
    assert lines, "nothing logged"
    records = [json.loads(line) for line in lines]
    assert {record["daemon"] for record in records} == {daemon.name}


@BOTH
def test_a_mistyped_variable_is_named_with_a_did_you_mean(daemon: Daemon, runtime_pki: DemoPKI,
                                                          tmp_path: Path) -> None:
    path = daemon.write(tmp_path, daemon.good(runtime_pki))
    checked = daemon.command(path, "--check-config", env={"KEYLESS_WORKRES": SECRET, "KEYLESS_ZZZ": SECRET})
    assert checked.returncode == 0, checked
    assert (f"keyless {daemon.name}: warning: environment variable KEYLESS_WORKRES is not a setting of this daemon "
            "and is ignored (did you mean KEYLESS_WORKERS?)") in checked.stderr.splitlines()
    assert "KEYLESS_ZZZ is not a setting" in checked.stderr
    assert SECRET not in checked.stderr + checked.stdout
    quiet = daemon.command(path, "--check-config", env={"KEYLESS_WORKERS": "2", "KEYLESS_NO_UVLOOP": "1"})
    assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet


def test_a_mistyped_variable_is_named_at_start(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    """Start-up says it too, before the problems (here a missing file, so the start ends at once)."""
    daemon = Daemon("keyserver")
    path = daemon.write(tmp_path, daemon.good(runtime_pki, auth_cert="missing.pem"))
    started = daemon.command(path, env={"KEYLESS_PROT": "2407"})
    assert started.returncode == 2
    assert "environment variable KEYLESS_PROT is not a setting of this daemon and is ignored (did you mean " \
           "KEYLESS_PORT?)" in started.stderr


def test_with_workers_the_unheld_key_warning_is_said_once(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    chain, _, _ = intermediate_chain(tmp_path, runtime_pki)  # its key is on no key server
    with start_keyserver(runtime_pki, tmp_path) as ks:
        servers = [f"127.0.0.1:{ks.port}"]
        document = edge_config(runtime_pki, key_server_tls={
            "client_cert": str(runtime_pki.edge_cert), "client_key": str(runtime_pki.edge_key),
            "ca": str(runtime_pki.ca)}, certificates=[
            {"names": ["keyless.test"], "chain": str(runtime_pki.site_cert("ecdsa-p256")), "key_servers": servers},
            {"names": ["other.keyless.test"], "chain": str(chain), "key_servers": servers},
        ])
        with EdgeProcess(document, tmp_path, workers=2) as edge:
            def warnings() -> list[str]:
                return [line for line in edge.stderr_path.read_text().splitlines() if "holds the key" in line]

            deadline = time.monotonic() + DEADLINE
            while not warnings():
                assert time.monotonic() < deadline, edge.stderr_path.read_text()
                time.sleep(0.05)
            # Each worker settles its first key check before it reports ready, and the edge's ready line
            # waits for every worker: by now every worker that checks has said what it found.
            assert len(warnings()) == 1, warnings()


@pytest.mark.parametrize("workers", [None, 2])
def test_certificate_warnings_are_said_once(runtime_pki: DemoPKI, tmp_path: Path, workers: int | None) -> None:
    """What the configuration's files deserve a warning for (an expired certificate, a name it does not
    cover) is said once: by one process, not by each worker, and not twice in other words."""
    cert, key = expired_certificate(tmp_path, runtime_pki)
    stale = {"names": ["old.keyless.test", "uncovered.keyless.test"], "chain": str(cert), "key_file": str(key)}
    document = edge_config(runtime_pki)
    document["certificates"].append(stale)
    with EdgeProcess(document, tmp_path, workers=workers) as edge:
        # Workers log their start-up warnings before their ready line, the edge's waits for every worker's.
        log = edge.stderr_path.read_text()
    assert log.count("the certificate for old.keyless.test expired on") == 1, log
    assert len([line for line in log.splitlines() if "old.keyless.test" in line and "expired" in line]) == 1, log
    assert log.count("does not cover configured name uncovered.keyless.test") == 1, log


def test_keyserver_workers_name_a_restart_key_once_on_sighup(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    with start_keyserver(runtime_pki, tmp_path, args=("--workers", "2")) as ks:
        ks.config_path.write_text(yaml.safe_dump(keyserver_config(runtime_pki, rsa_threads=3)))
        ks.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + DEADLINE
        while ks.log().count("reloaded keys:") < 2:  # each worker names restart keys before it reloads keys
            assert time.monotonic() < deadline, ks.log()
            time.sleep(0.05)
        assert ks.log().count("reload: rsa_threads changed") == 1, ks.log()
