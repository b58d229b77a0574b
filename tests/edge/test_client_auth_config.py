"""The ``client_auth`` section: every bad value stops start-up with the key and the fix; --check-config too."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import Encoding

from keyless.edge.client_auth import _header_value, identity_headers, parse_client_auth
from keyless.edge.config import ConfigError, parse_config
from keyless.edge.sites import build_sites
from tests.edge.certs import SitePKI, make_pki
from tests.edge.client_pki import ClientPKI, make_client_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SitePKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> ClientPKI:
    return make_client_pki(tmp_path_factory.mktemp("clients"))


def document(pki: SitePKI, *sections: Any) -> dict[str, Any]:
    certificates = [
        {"names": ["a.edge.test"], "chain": str(pki.chain("ecdsa")), "key_file": str(pki.key("ecdsa"))}
        for _ in sections
    ]
    for entry, section in zip(certificates, sections, strict=True):
        if section is not None:
            entry["client_auth"] = section
    return {"certificates": certificates, "origin": {"address": "127.0.0.1:1"}}


def error(pki: SitePKI, *sections: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_sites(parse_config(document(pki, *sections), base=Path("/")))
    return info.value


def test_defaults_follow_nginx(pki: SitePKI, clients: ClientPKI) -> None:
    config = parse_config(document(pki, {"mode": "required", "ca": str(clients.ca)}), base=Path("/"))
    policy = config.sites[0].client_auth
    assert policy is not None and policy.required and policy.depth == 1 and policy.forward == "X-Client-Cert-"
    assert len(policy.ca_certificates) == 1
    assert "ca_der" not in repr(policy)
    assert pickle.loads(pickle.dumps(policy)) == policy  # plain data, like the rest of the configuration
    assert parse_config(document(pki, None), base=Path("/")).sites[0].client_auth is None


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ("required", "certificates[0].client_auth", "mapping"),
        ({"mode": "on", "ca": "CA"}, "certificates[0].client_auth.mode", "unknown mode"),
        ({"mode": True, "ca": "CA"}, "certificates[0].client_auth.mode", "boolean"),
        ({"ca": "CA"}, "certificates[0].client_auth.mode", "missing"),
        ({"mode": "required"}, "certificates[0].client_auth.ca", "missing"),
        ({"mode": "optional", "ca": "/nonexistent/ca.pem"}, "certificates[0].client_auth.ca", "does not exist"),
        ({"mode": "required", "ca": "NOTPEM"}, "certificates[0].client_auth.ca", "holds no PEM certificate"),
        ({"mode": "required", "ca": "LEAF"}, "certificates[0].client_auth.ca", "not a CA"),
        ({"mode": "required", "ca": "CA", "depth": 8}, "certificates[0].client_auth.depth", "0..7"),
        ({"mode": "required", "ca": "CA", "depth": -1}, "certificates[0].client_auth.depth", "0..7"),
        ({"mode": "required", "ca": "CA", "depth": "1"}, "certificates[0].client_auth.depth", "0..7"),
        ({"mode": "required", "ca": "CA", "forward": "X Client"}, "certificates[0].client_auth.forward", "prefix"),
        ({"mode": "required", "ca": "CA", "forward": "X"}, "certificates[0].client_auth.forward", "prefix"),
        ({"mode": "required", "ca": "CA", "forward": "Con"}, "certificates[0].client_auth.forward", "content-length"),
        ({"mode": "required", "ca": "CA", "verify": "on"}, "certificates[0].client_auth.verify", "unknown key"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(
    pki: SitePKI, clients: ClientPKI, tmp_path: Path, section: Any, key: str, words: str
) -> None:
    (tmp_path / "not.pem").write_text("hello")
    replacements = {"CA": str(clients.ca), "NOTPEM": str(tmp_path / "not.pem"), "LEAF": str(clients.cert("alice"))}
    if isinstance(section, dict):
        section = {k: replacements.get(v, v) if isinstance(v, str) else v for k, v in section.items()}
    problem = error(pki, section)
    assert problem.key == key
    assert words in str(problem) and "fix:" in str(problem)


def test_certificates_of_the_same_names_must_agree(pki: SitePKI, clients: ClientPKI) -> None:
    problem = error(pki, {"mode": "required", "ca": str(clients.ca)}, None)
    assert problem.key == "certificates[1].client_auth" and "a.edge.test" in str(problem)
    same = {"mode": "required", "ca": str(clients.ca)}
    table = build_sites(parse_config(document(pki, same, dict(same)), base=Path("/")))
    assert table.client_auth_for("a.edge.test").required
    assert table.client_auth_for(None).required  # the default names


def test_identity_headers_are_safe_header_values(clients: ClientPKI) -> None:
    policy = parse_client_auth({"mode": "optional", "ca": str(clients.ca), "forward": "X-Mtls-"}, "k", Path("/"))
    assert policy is not None
    assert identity_headers(policy, ()) == [(b"x-mtls-verify", b"NONE")]
    leaf = clients.leaf("alice").public_bytes(Encoding.DER)
    headers = dict(identity_headers(policy, (leaf,)))
    assert headers[b"x-mtls-verify"] == b"SUCCESS"
    assert headers[b"x-mtls-subject"] == b"CN=alice,O=Example Bank"
    assert headers[b"x-mtls-san"] == b"DNS:alice.clients.test, email:alice@example.test"
    assert headers[b"x-mtls-fingerprint"] == hashlib.sha256(leaf).hexdigest().encode()
    assert _header_value("CN=a\r\nX-Evil: 1,O=\u00e9%") == b"CN=a%0D%0AX-Evil: 1,O=%C3%A9%25"


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keyless", "edge", "--config", str(path), "--check-config"],
        capture_output=True, text=True, timeout=60,
    )


def test_check_config_validates_client_auth(pki: SitePKI, clients: ClientPKI, tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(document(pki, {"mode": "required", "ca": str(clients.ca), "depth": 2})))
    good = run_check(path)
    assert good.returncode == 0 and "configuration OK" in good.stdout, good.stdout + good.stderr
    path.write_text(yaml.safe_dump(document(pki, {"mode": "required", "ca": str(clients.cert("alice"))})))
    bad = run_check(path)
    output = bad.stdout + bad.stderr
    assert bad.returncode == 2 and "certificates[0].client_auth.ca" in output and "not a CA" in output
    path.write_text(yaml.safe_dump(document(pki, {"mode": "sometimes", "ca": str(clients.ca)})))
    bad = run_check(path)
    assert bad.returncode == 2 and "certificates[0].client_auth.mode" in bad.stdout + bad.stderr, bad.stdout
