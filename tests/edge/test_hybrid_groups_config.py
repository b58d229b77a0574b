"""A listener's ``groups:`` and ``hybrid_hello_retry:``: good values load, bad ones name the key and the fix."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from keyless.edge.config import ConfigError, load_config
from keyless.edge.metrics import EdgeMetrics
from keyless.edge.server import Edge
from keyless.tls.suites import DEFAULT_TLS13_GROUPS
from tests.edge.certs import make_pki
from tests.edge.test_config import files, good, write

__all__ = ["files"]  # the fixture, imported for the tests below

X25519MLKEM768, X25519, P256 = 0x11EC, 0x001D, 0x0017


def listen(**keys: object) -> list[dict[str, object]]:
    return [{"address": "127.0.0.1", "port": 0, **keys}]


def test_groups_by_name_any_case_in_the_listeners_order(files: Path) -> None:
    config = load_config(write(files, good(listen=listen(groups=["x25519mlkem768", "X25519", "SecP256r1"]))))
    assert config.listeners[0].groups == (X25519MLKEM768, X25519, P256)
    assert config.listeners[0].hybrid_hello_retry is False


def test_defaults_no_groups_and_no_hybrid_hello_retry(files: Path) -> None:
    listener = load_config(write(files, good())).listeners[0]
    assert listener.groups is None and listener.hybrid_hello_retry is False


@pytest.mark.parametrize(
    ("keys", "problem", "fix"),
    [
        ({"groups": ["x25519", "ffdhe2048"]}, "'ffdhe2048' is not a group this edge implements", "X25519MLKEM768"),
        ({"groups": ["x25519", "X25519"]}, "listed twice", "list each group once"),
        ({"groups": []}, "is empty", "remove groups:"),
        ({"groups": ["X25519MLKEM768"]}, "no classical group", "add x25519"),
        ({"groups": "x25519 secp256r1"}, "is not a group", "use some of"),
        ({"groups": [25]}, "must be a list of group names", "write groups:"),
        ({"hybrid_hello_retry": "maybe"}, "", ""),
    ],
)
def test_bad_groups_name_the_listener_key_and_the_fix(
    files: Path, keys: dict[str, object], problem: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(files, good(listen=listen(**keys))))
    assert info.value.key == f"listen[0].{next(iter(keys))}"
    assert problem in str(info.value) and fix in str(info.value)
    assert str(files / "edge.yaml") in str(info.value)


def test_each_listener_gets_its_own_engine_settings(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    document = {
        "listen": [*listen(), *listen(groups=["x25519", "secp256r1"]), *listen(hybrid_hello_retry=True)],
        "certificates": [
            {"names": ["a.edge.test"], "chain": str(pki.chain("ecdsa")), "key_file": str(pki.key("ecdsa"))}
        ],
        "origin": {"mode": "http", "address": "127.0.0.1:8080"},
        "tickets": {"enabled": False},
    }
    edge = Edge(load_config(write(tmp_path, document)), EdgeMetrics())
    default, classical, retry = edge.listener_tls_configs
    assert default is edge.tls_config
    assert default.groups == tuple(DEFAULT_TLS13_GROUPS) and not default.hybrid_hello_retry
    assert classical.groups == (X25519, P256) and not classical.hybrid_hello_retry
    assert retry.groups == tuple(DEFAULT_TLS13_GROUPS) and retry.hybrid_hello_retry
    assert classical.ticket_keys is default.ticket_keys  # the rest is the edge's one configuration


def test_the_negotiated_group_is_a_metric_label_and_a_log_field(caplog: pytest.LogCaptureFixture) -> None:
    from keyless.edge.listener import ConnectionObserver
    from keyless.tls.events import HandshakeComplete

    metrics = EdgeMetrics()
    observer = ConnectionObserver(metrics, "192.0.2.7:5555")
    with caplog.at_level(logging.DEBUG, logger="keyless.edge"):
        for group in ("X25519MLKEM768", "x25519", None):
            observer.on_event(HandshakeComplete(version=0x0304, cipher_suite="TLS_AES_128_GCM_SHA256", group=group,
                                                sni="a.edge.test", alpn=None, resumed=group is None,
                                                key_operations=1, session_ticket_sent=False))
    for group, resumed in (("X25519MLKEM768", "false"), ("x25519", "false"), ("none", "true")):
        labels = {"version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256", "resumed": resumed, "group": group}
        assert metrics.registry.get_sample_value("keyless_edge_handshakes_total", labels) == 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("handshake peer=")]
    assert lines[0] == ("handshake peer=192.0.2.7:5555 sni=a.edge.test version=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256"
                        " group=X25519MLKEM768 resumed=false")
    assert len(lines) == 3
