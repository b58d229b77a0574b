"""Edge configuration: good files load, bad ones name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from keyless.edge.config import ConfigError, load_config


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name in ("site.pem", "site-key.pem", "edge.pem", "edge-key.pem", "ca.pem", "ticket.key"):
        (tmp_path / name).write_text("x")
    return tmp_path


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def good(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "listen": [{"address": "127.0.0.1", "port": 0}],
        "key_server_tls": {"client_cert": "edge.pem", "client_key": "edge-key.pem", "ca": "ca.pem"},
        "certificates": [
            {"names": ["Example.com", "*.example.com"], "chain": "site.pem", "key_servers": ["127.0.0.1:2407", "ks2"]},
            {"names": ["local.test"], "chain": "site.pem", "key_file": "site-key.pem", "default": True},
        ],
        "origin": {"mode": "http", "address": "127.0.0.1:8080"},
        "tickets": {"key_files": ["ticket.key"], "lifetime": 3600},
        "metrics_addr": "127.0.0.1:0",
    }
    doc.update(changes)
    return doc


def test_good_config_loads_with_relative_paths(files: Path) -> None:
    config = load_config(write(files, good()))
    first, second = config.sites
    assert first.names == ("example.com", "*.example.com")
    assert first.key_servers == (("127.0.0.1", 2407), ("ks2", 2407))
    assert first.key_server_tls is not None and first.key_server_tls.ca == files / "ca.pem"
    assert first.key_server_tls.send_client_ip is False  # the end user's IP is opt-in
    assert second.key_file == files / "site-key.pem" and second.default
    assert config.origin.host == "127.0.0.1" and config.origin.port == 8080
    assert config.tickets.key_files == (files / "ticket.key",) and config.tickets.lifetime == 3600
    assert config.metrics_addr == ("127.0.0.1", 0)
    assert "site-key" not in repr(second)  # key locations are not secrets, but key material paths stay out of logs


@pytest.mark.parametrize(
    ("change", "key", "fix"),
    [
        ({"certificates": []}, "certificates", "add certificates"),
        ({"origin": {"mode": "udp", "address": "x:1"}}, "origin.mode", "use http"),
        ({"origin": {"mode": "http"}}, "origin.address", "host:port"),
        ({"origin": {"mode": "http", "address": "h:1", "proxy_protocol": True}}, "origin.proxy_protocol", "http mode"),
        ({"workers": 0}, "workers", "whole number"),
        ({"limits": {"idle_timeout": "soon"}}, "limits.idle_timeout", "seconds"),
        ({"lissten": []}, "lissten", "use one of"),
        ({"tickets": {"key_files": ["missing.key"]}}, "tickets.key_files[0]", "check the path"),
        ({"tickets": {"lifetime": 700000}}, "tickets.lifetime", "whole number"),
        ({"key_server_tls": None}, "key_server_tls", "add key_server_tls"),
        ({"metrics_addr": "localhost"}, "metrics_addr", "host:port"),
        ({"key_server_tls": {"client_cert": "ca.pem", "client_key": "ca.pem", "ca": "ca.pem", "send_client_ip": "yes"}},
         "key_server_tls.send_client_ip", ""),
    ],
)
def test_bad_config_names_key_and_fix(files: Path, change: dict[str, object], key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(files, good(**change)))
    assert info.value.key == key
    assert fix in str(info.value)


@pytest.mark.parametrize(
    ("site", "key"),
    [
        ({"names": ["a.test"], "key_file": "site-key.pem"}, "certificates[0].chain"),
        ({"names": ["a.test"], "chain": "nope.pem", "key_file": "site-key.pem"}, "certificates[0].chain"),
        ({"names": ["a.test"], "chain": "site.pem"}, "certificates[0]"),
        ({"names": ["a.*.test"], "chain": "site.pem", "key_file": "site-key.pem"}, "certificates[0].names"),
        ({"names": ["a.test."], "chain": "site.pem", "key_file": "site-key.pem"}, "certificates[0].names"),
        (
            {"names": ["a.test"], "chain": "site.pem", "key_file": "site-key.pem", "key_servers": ["h:1"]},
            "certificates[0]",
        ),
        ({"names": ["a.test"], "chain": "site.pem", "key_servers": ["h:99999"]}, "certificates[0].key_servers[0]"),
    ],
)
def test_bad_certificate_entries(files: Path, site: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(files, good(certificates=[site])))
    assert info.value.key == key


def test_two_defaults_and_bad_yaml(files: Path) -> None:
    site = {"names": ["a.test"], "chain": "site.pem", "key_file": "site-key.pem", "default": True}
    with pytest.raises(ConfigError, match="more than one default"):
        load_config(write(files, good(certificates=[site, site])))
    bad = files / "bad.yaml"
    bad.write_text("listen: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_example_edge_yaml_is_valid(tmp_path: Path) -> None:
    """examples/edge.yaml uses only real keys: with its files pointed at stand-ins it must load."""
    example = Path(__file__).resolve().parents[2] / "examples" / "edge.yaml"
    document = yaml.safe_load(example.read_text())
    stand_in = tmp_path / "stand-in.pem"
    stand_in.write_text("x")
    for name in ("client_cert", "client_key", "ca"):
        document["key_server_tls"][name] = str(stand_in)
    for site in document["certificates"]:
        site["chain"] = str(stand_in)
    config = load_config(write(tmp_path, document))
    assert config.workers == 2 and config.metrics_addr == ("127.0.0.1", 9443)
    assert config.sites[0].key_servers == (("10.0.0.7", 2407), ("10.0.0.8", 2407))
    assert config.tickets.rotation == 3600 and config.tickets.lifetime == 7200



def test_rsa_key_exchange_is_off_unless_configured(files: Path) -> None:
    """TLS 1.2 RSA key exchange has no forward secrecy: an edge offers it only when told to."""
    assert load_config(write(files, good())).enable_rsa_key_exchange is False
    assert load_config(write(files, good(rsa_key_exchange=True))).enable_rsa_key_exchange is True
