"""SIGHUP on both daemons: what can change is applied, what needs a restart is named once per change, a
file that no longer loads changes nothing and its error never shows a secret."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from keyless.pki import DemoPKI, new_site_key, write_private_key
from tests.edge.edgeproc import EdgeProcess
from tests.runtime.daemons import edge_config, expired_certificate
from tests.support.keyserver import keyserver_config, start_keyserver

DEADLINE = 60.0
SECRET = "hunter2-redis-password"


def wait_for(condition: Callable[[], bool], what: Callable[[], str]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.05)


def test_keyserver_sighup_applies_new_key_dirs_and_names_restart_keys(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    extra = tmp_path / "more-keys"
    write_private_key(extra / "new.key", new_site_key("ecdsa-p256"))
    with start_keyserver(runtime_pki, tmp_path) as ks:
        assert ks.keys == 2
        config = keyserver_config(runtime_pki, private_key_dirs=[str(runtime_pki.keys_dir), str(extra)],
                                  loglevel="debug", port=1, rsa_threads=3)
        ks.config_path.write_text(yaml.safe_dump(config))
        ks.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded keys:" in ks.log(), ks.log)
        log = ks.log()
        assert "reloaded keys: 3 loaded" in log  # the new private_key_dirs entry was read
        assert f"reload: port changed in {ks.config_path} but needs a restart" in log
        assert "reload: rsa_threads changed" in log
        assert "listen changed" not in log and "metrics_addr changed" not in log
        assert ks.metric_value("keyless_keys_loaded") == 3

        ks.config_path.write_text("auth_cert: [broken\n")
        ks.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in ks.log(), ks.log)
        assert "keeping the running configuration" in ks.log() and f"{ks.config_path}:2:" in ks.log()
        assert ks.metric_value("keyless_keys_loaded") == 3


def reload_edge(edge: EdgeProcess, document: dict[str, object], count: int) -> str:
    """Write ``document``, SIGHUP, and wait until the edge finished its ``count``-th reload (ok or not)."""
    edge.config_path.write_text(yaml.safe_dump(document))
    edge.signal(signal.SIGHUP)

    def done() -> int:
        text = edge.stderr_path.read_text()
        return text.count("configuration reloaded") + text.count("reload failed")

    wait_for(lambda: done() >= count, edge.stderr_path.read_text)
    return edge.stderr_path.read_text()


def test_edge_warns_about_a_listener_change_once_and_not_after_it_is_restored(runtime_pki: DemoPKI,
                                                                               tmp_path: Path) -> None:
    original = edge_config(runtime_pki)
    with EdgeProcess(original, tmp_path) as edge:
        moved = dict(original, listen=[{"address": "127.0.0.1", "port": 1}], workers=2)
        log = reload_edge(edge, moved, 1)
        assert log.count("reload: listen changed") == 1 and log.count("reload: workers changed") == 1
        log = reload_edge(edge, original, 2)
        assert log.count("reload: listen changed") == 1 and log.count("reload: workers changed") == 1
        log = reload_edge(edge, dict(original, loglevel="debug"), 3)
        assert log.count("changed in") == 2


def test_edge_warns_about_out_of_date_certificates_at_start_and_on_reload(runtime_pki: DemoPKI,
                                                                          tmp_path: Path) -> None:
    cert, key = expired_certificate(tmp_path, runtime_pki)
    stale = {"names": ["old.keyless.test"], "chain": str(cert), "key_file": str(key)}
    document = edge_config(runtime_pki)
    with_stale = dict(document, certificates=[*document["certificates"], stale])
    with EdgeProcess(with_stale, tmp_path) as edge:
        log = edge.stderr_path.read_text()
        assert "certificates[1].chain: the certificate for old.keyless.test expired on" in log
        log = reload_edge(edge, with_stale, 1)
        assert log.count("the certificate for old.keyless.test expired on") == 2


def test_edge_reload_error_never_shows_the_redis_password(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    document = edge_config(runtime_pki)
    with EdgeProcess(document, tmp_path) as edge:
        log = reload_edge(edge, dict(document, tickets={"redis": f"redis://:{SECRET}@10.1.2.3.4:6379/0"}), 1)
        assert "reload failed" in log and "tickets.redis" in log and ":****@" in log
        assert SECRET not in log


def test_keyserver_sighup_applies_the_log_level(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    write_private_key(keys / "one.key", new_site_key("ecdsa-p256"))
    with start_keyserver(runtime_pki, tmp_path, private_key_dirs=[str(keys)]) as ks:
        for count, level in ((2, "error"), (3, "info")):
            write_private_key(keys / f"{count}.key", new_site_key("ecdsa-p256"))
            ks.config_path.write_text(yaml.safe_dump(keyserver_config(runtime_pki, private_key_dirs=[str(keys)],
                                                                      loglevel=level)))
            ks.send_signal(signal.SIGHUP)
            if level == "error":
                wait_for(lambda: ks.metric_value("keyless_keys_loaded") == 2, ks.log)
            else:
                wait_for(lambda: "reloaded keys: 3 loaded" in ks.log(), ks.log)
        # The first reload's info lines fell below its new level (set before the keys were read again).
        assert "reloaded keys: 2" not in ks.log()
