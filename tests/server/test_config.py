"""Configuration: gokeyless key names, env overrides, and start-up errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from keyless.pki import DemoPKI, create_demo_pki
from keyless.server.config import ConfigError, load_config


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    return create_demo_pki(tmp_path_factory.mktemp("pki"))


def write(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "gokeyless.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def base(pki: DemoPKI) -> dict[str, object]:
    return {"auth_cert": str(pki.keyserver_cert), "auth_key": str(pki.keyserver_key),
            "cloudflare_ca_cert": str(pki.ca), "private_key_dirs": [str(pki.keys_dir)]}


def test_gokeyless_names_and_defaults(pki: DemoPKI, tmp_path: Path) -> None:
    config = load_config(write(tmp_path, {**base(pki), "metrics_port": 9000, "loglevel": 1}), environ={})
    assert (config.port, config.metrics_port, config.listen, config.loglevel) == (2407, 9000, "127.0.0.1", "INFO")
    config = load_config(write(tmp_path, {**base(pki), "metrics_addr": "0.0.0.0:7000", "metrics_port": 9000}),
                         environ={})
    assert (config.metrics_host, config.metrics_port) == ("0.0.0.0", 7000)  # metrics_addr overrides


def test_ca_cert_alias_stores_and_relative_paths(pki: DemoPKI, tmp_path: Path) -> None:
    data = base(pki)
    data["ca_cert"] = data.pop("cloudflare_ca_cert")
    data["private_key_dirs"] = []
    data["private_key_stores"] = [{"dir": "keys"}, {"file": str(pki.site_key("rsa-2048"))}]
    path = pki.directory / "relative.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, environ={})
    assert config.ca_cert == pki.ca
    assert [(s.kind, s.path) for s in config.key_sources] == [("dir", pki.keys_dir), ("file", pki.site_key("rsa-2048"))]


def test_environment_overrides(pki: DemoPKI, tmp_path: Path) -> None:
    env = {"KEYLESS_PORT": "3407", "KEYLESS_LISTEN": "::1", "KEYLESS_PRIVATE_KEY_DIRS": f"{pki.keys_dir},/tmp",
           "KEYLESS_REQUIRE_ALL": "1"}
    config = load_config(write(tmp_path, base(pki)), environ=env)
    assert (config.port, config.listen) == (3407, "::1")
    assert [str(s.path) for s in config.key_sources] == [str(pki.keys_dir), "/tmp"]


@pytest.mark.parametrize(("change", "named"), [
    ({"prot": 1}, "prot: unknown configuration key"),
    ({"port": 70000}, "port: 70000 is not a whole number in 0..65535"),
    ({"port": "abc"}, "port: 'abc' is not a whole number"),
    ({"metrics_addr": "2406"}, "metrics_addr: '2406' has no host"),
    ({"loglevel": "loud"}, "loglevel: 'loud' is not allowed"),
    ({"auth_cert": "/nonexistent.pem"}, "auth_cert: file '/nonexistent.pem' does not exist"),
    ({"cloudflare_ca_cert": None}, "cloudflare_ca_cert: is required"),
    ({"private_key_dirs": "x", "private_key_stores": [{"tape": "/dev/st0"}]}, "private_key_stores[0]: unknown store"),
    ({"private_key_stores": [{"uri": "pkcs11:token=a"}]}, "private_key_stores[0].uri"),
    ({"hostname": "ks.example.com"}, "hostname: not supported"),
    ({"idle_timeout": -1}, "idle_timeout: -1 is not a duration"),
])
def test_bad_values_name_the_key(pki: DemoPKI, tmp_path: Path, change: dict[str, object], named: str) -> None:
    data = {**base(pki), **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, data), environ={})
    assert named in str(caught.value)


def test_the_command_stops_with_the_message(pki: DemoPKI, tmp_path: Path) -> None:
    path = write(tmp_path, {**base(pki), "workerz": 2})
    result = subprocess.run([sys.executable, "-m", "keyless", "keyserver", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "workerz: unknown configuration key" in result.stderr


def test_default_search_path(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "keyless", "keyserver"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    if Path("/etc/keyless/gokeyless.yaml").exists():
        pytest.skip("a system-wide /etc/keyless/gokeyless.yaml exists")
    assert result.returncode == 2 and "./gokeyless.yaml" in result.stderr


def test_the_example_config_is_valid(pki: DemoPKI) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "keyserver.yaml"
    env = {"KEYLESS_AUTH_CERT": str(pki.keyserver_cert), "KEYLESS_AUTH_KEY": str(pki.keyserver_key),
           "KEYLESS_CLOUDFLARE_CA_CERT": str(pki.ca), "KEYLESS_PRIVATE_KEY_DIRS": str(pki.keys_dir)}
    config = load_config(example, environ=env)
    assert (config.port, config.metrics_port, config.auth_cert) == (2407, 2406, pki.keyserver_cert)
