"""Key-file hygiene (issue 15, "Key hygiene"): real files, real modes, real owners, real symlinks.

Private key files others could read, write or replace are refused (sshd's StrictModes) with a
message naming the file and the chmod/chown that fixes it; ``strict_permissions: false`` only warns.
Symlinks are never followed out of a key directory, and a symlink loop neither hangs start-up nor a
SIGHUP reload. Applies to ``private_key_dirs``, ``auth_key`` and the edge's ``key_file`` and key-server
client key. The tests run as root in CI; ownership tests chown to another uid (skipped when not root).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from keyless.edge.config import ConfigError, parse_config
from keyless.edge.sites import build_sites
from keyless.keys.loader import KeyLoadError, KeySource, load_keys
from keyless.keys.ski import ski_of
from keyless.pki import DemoPKI, create_demo_pki, write_private_key
from keyless.protocol import Message, Opcode
from tests.edge.certs import make_pki
from tests.support.keyserver import keyserver_config, start_keyserver
from tests.support.wire import Peer, connect

OTHER_UID = 54321  # a user that is neither root nor the daemon's


def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner to another user needs root (CI runs the tests as root)")


def _key(path: Path) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    write_private_key(path, key)
    return ski_of(key.public_key())


def _reasons(report: Any) -> dict[str, str]:
    return {Path(p.path).name: p.reason for p in report.problems}


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    return directory


# -- files and directories -----------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "words", "fix"), [
    (0o644, "every user read", "chmod 640"),
    (0o604, "every user read", "chmod 600"),
    (0o660, "the group replace", "chmod 640"),
    (0o666, "every user replace", "chmod 640"),
])
def test_a_key_others_can_read_or_write_is_refused_with_the_fix(keys: Path, mode: int, words: str, fix: str) -> None:
    good = _key(keys / "good.key")
    bad = _key(keys / "bad.key")
    (keys / "bad.key").chmod(mode)
    report = load_keys([KeySource("dir", keys)])
    assert {h.ski for h in report.store} == {good}
    reason = _reasons(report)["bad.key"]
    assert words in reason and f"{fix} {keys / 'bad.key'}" in reason, reason
    with pytest.raises(KeyLoadError, match=r"bad\.key"):
        load_keys([KeySource("dir", keys)], strict=True)
    relaxed = load_keys([KeySource("dir", keys)], strict_permissions=False)  # a warning, and the key loads
    assert {h.ski for h in relaxed.store} == {good, bad} and relaxed.problems == []


def test_group_readable_0640_and_certificates_0644_are_fine(keys: Path) -> None:
    ski = _key(keys / "site.key")
    (keys / "site.key").chmod(0o640)
    (keys / "site.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")
    (keys / "site.pem").chmod(0o644)  # not a private key: its mode is nobody's business
    report = load_keys([KeySource("dir", keys)])
    assert [h.ski for h in report.store] == [ski] and report.problems == []


def test_a_key_owned_by_another_user_is_refused_with_the_chown(keys: Path) -> None:
    _as_root()
    _key(keys / "theirs.key")
    os.chown(keys / "theirs.key", OTHER_UID, -1)
    report = load_keys([KeySource("dir", keys)])
    assert len(report.store) == 0
    reason = _reasons(report)["theirs.key"]
    assert f"owned by {OTHER_UID}" in reason and f"chown root {keys / 'theirs.key'}" in reason, reason
    assert len(load_keys([KeySource("dir", keys)], strict_permissions=False).store) == 1


def test_a_directory_others_can_write_is_refused_with_its_keys(keys: Path) -> None:
    top = _key(keys / "top.key")
    _key(keys / "shared" / "inner.key")
    (keys / "shared").chmod(0o777)
    report = load_keys([KeySource("dir", keys)])
    assert [h.ski for h in report.store] == [top]
    reason = _reasons(report)["shared"]
    assert "every user can replace or add keys" in reason and f"chmod 755 {keys / 'shared'}" in reason, reason
    assert len(load_keys([KeySource("dir", keys)], strict_permissions=False).store) == 2


def test_a_key_directory_owned_by_another_user_is_refused(keys: Path) -> None:
    _as_root()
    _key(keys / "a.key")
    os.chown(keys, OTHER_UID, -1)
    report = load_keys([KeySource("dir", keys)])
    assert len(report.store) == 0 and f"chown root {keys}" in _reasons(report)["keys"]


def test_a_single_key_file_source_is_checked_too(tmp_path: Path) -> None:
    _key(tmp_path / "one.key")
    (tmp_path / "one.key").chmod(0o644)
    report = load_keys([KeySource("file", tmp_path / "one.key")])
    assert len(report.store) == 0 and "chmod 640" in _reasons(report)["one.key"]


# -- symlinks ------------------------------------------------------------------------------------------


def test_a_symlink_out_of_the_key_directory_is_never_followed(tmp_path: Path, keys: Path) -> None:
    """The issue's case: a link to the key server's own auth_key would make it signable by every edge."""
    pki = create_demo_pki(tmp_path / "pki", site_keys=("ecdsa-p256",))
    (keys / "auth.key").symlink_to(pki.keyserver_key)  # a safe file (0600): refused for where it is
    (keys / "elsewhere").symlink_to(pki.directory, target_is_directory=True)
    inside = _key(keys / "real" / "site.key")
    (keys / "alias.key").symlink_to(keys / "real" / "site.key")  # stays inside: fine
    report = load_keys([KeySource("dir", keys)])
    assert {h.ski for h in report.store} == {inside}
    reasons = _reasons(report)
    assert "outside the key directory" in reasons["auth.key"] and str(pki.keyserver_key) in reasons["auth.key"]
    assert "outside the key directory" in reasons["elsewhere"]
    relaxed = load_keys([KeySource("dir", keys)], strict_permissions=False)  # not a permission: never followed
    assert {h.ski for h in relaxed.store} == {inside}


def test_symlink_loops_end(keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two ``sub/up -> ..`` links used to make loading recurse without end."""
    ski = _key(keys / "site.key")
    for name in ("a", "b"):
        (keys / name).mkdir(mode=0o700)
        (keys / name / "up").symlink_to("..", target_is_directory=True)
    (keys / "a" / "self").symlink_to(".", target_is_directory=True)
    with caplog.at_level(logging.WARNING, "keyless.keys.loader"):
        report = load_keys([KeySource("dir", keys)])
    assert [h.ski for h in report.store] == [ski] and report.problems == []
    assert "symlink loop" in caplog.text


# -- the key server ------------------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> DemoPKI:
    return create_demo_pki(tmp_path / "pki", site_keys=("ecdsa-p256",))


def _run_keyserver(pki: DemoPKI, tmp_path: Path, **overrides: Any) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "ks.yaml"
    config.write_text(yaml.safe_dump(keyserver_config(pki, **overrides)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLESS_")}
    return subprocess.run([sys.executable, "-m", "keyless", "keyserver", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def test_a_world_readable_auth_key_stops_start_up(pki: DemoPKI, tmp_path: Path) -> None:
    pki.keyserver_key.chmod(0o644)
    result = _run_keyserver(pki, tmp_path)
    assert result.returncode != 0
    assert "auth_key" in result.stderr and str(pki.keyserver_key) in result.stderr
    assert f"chmod 640 {pki.keyserver_key}" in result.stderr, result.stderr
    assert "BEGIN" not in result.stderr + result.stdout  # never the key itself


def test_strict_permissions_false_starts_with_a_warning(pki: DemoPKI, tmp_path: Path) -> None:
    pki.keyserver_key.chmod(0o644)
    pki.site_key("ecdsa-p256").chmod(0o644)
    with start_keyserver(pki, tmp_path, strict_permissions=False) as ks:
        assert ks.keys == 1
        assert "unsafe private key file" in ks.log()


def test_strict_permissions_must_be_a_boolean(pki: DemoPKI, tmp_path: Path) -> None:
    result = _run_keyserver(pki, tmp_path, strict_permissions="maybe")
    assert result.returncode != 0 and "strict_permissions: 'maybe' is not true or false" in result.stderr


def test_start_up_and_sighup_do_not_hang_on_a_symlink_loop(pki: DemoPKI, tmp_path: Path) -> None:
    keys = tmp_path / "looping-keys"
    shutil.copytree(pki.keys_dir, keys)
    for name in ("sub", "other"):
        (keys / name).mkdir(mode=0o700)
        (keys / name / "up").symlink_to("..", target_is_directory=True)
    (keys / "auth.key").symlink_to(pki.keyserver_key)
    with start_keyserver(pki, tmp_path, private_key_dirs=[str(keys)]) as ks:  # ready: loading ended
        assert ks.keys == 1
        new_key = ec.generate_private_key(ec.SECP256R1())
        write_private_key(keys / "sub" / "new.key", new_key)
        ks.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60  # decides failure only
        while "reloaded keys: 2 loaded" not in ks.log():
            assert time.monotonic() < deadline, ks.log()[-3000:]
            time.sleep(0.05)
        peer = Peer(connect(pki, ks.port))
        digest = bytes(32)
        reply = peer.request(Message(1, Opcode.ECDSA_SIGN_SHA256, digest, ski=ski_of(new_key.public_key())))
        assert reply.opcode == Opcode.RESPONSE
        auth = peer.request(Message(2, Opcode.ECDSA_SIGN_SHA256, digest, ski=_auth_ski(pki)))
        assert auth.error_code == 0x02  # the key server's own key is not signable through the link
        peer.close()
        assert "outside the key directory" in ks.log()


def _auth_ski(pki: DemoPKI) -> bytes:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key: Any = load_pem_private_key(pki.keyserver_key.read_bytes(), None)
    return ski_of(key.public_key())


# -- the edge ------------------------------------------------------------------------------------------


def _edge_config(tmp_path: Path, **site: Any) -> dict[str, Any]:
    certs = make_pki(tmp_path / "edge-pki")
    return {
        "listen": [{"address": "127.0.0.1", "port": 0}],
        "certificates": [{"names": ["ecdsa.edge.test"], "chain": str(certs.chain("ecdsa")), "default": True,
                          **(site or {"key_file": str(certs.key("ecdsa"))})}],
        "origin": {"mode": "http", "address": "127.0.0.1:1"},
    }


def test_the_edge_refuses_a_world_readable_key_file(tmp_path: Path) -> None:
    document = _edge_config(tmp_path)
    key_file = Path(document["certificates"][0]["key_file"])
    assert len(build_sites(parse_config(document, base=tmp_path)).sites) == 1
    key_file.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        build_sites(parse_config(document, base=tmp_path))
    message = str(caught.value)
    assert message.startswith("certificates[0].key_file") and f"chmod 640 {key_file}" in message, message
    relaxed = parse_config({**document, "strict_permissions": False}, base=tmp_path)
    assert len(build_sites(relaxed).sites) == 1


def test_the_edge_refuses_a_key_server_client_key_others_can_write(tmp_path: Path, pki: DemoPKI) -> None:
    document = _edge_config(tmp_path, key_servers=["127.0.0.1:1"], key_server_tls={
        "client_cert": str(pki.edge_cert), "client_key": str(pki.edge_key), "ca": str(pki.ca)})
    pki.edge_key.chmod(0o620)
    with pytest.raises(ConfigError) as caught:
        build_sites(parse_config(document, base=tmp_path), group_factory=_no_group)
    message = str(caught.value)
    assert "key_server_tls.client_key" in message and f"chmod 600 {pki.edge_key}" in message, message


def _no_group(*_: object) -> Any:
    raise AssertionError("the key-server client was built before its key was checked")


# -- keyless pki init ----------------------------------------------------------------------------------


def test_pki_init_writes_private_modes_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "pki"
    target.mkdir()
    target.chmod(0o777)
    (target / "keys").mkdir()
    (target / "keys" / "ecdsa-p256.key").write_text("an old key file, world-readable")
    (target / "keys" / "ecdsa-p256.key").chmod(0o666)
    result = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.umask(0); from keyless.cli.main import main; "
         "sys.exit(main(['pki', 'init', sys.argv[1]]))", str(target)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    pki_files = [p for p in target.rglob("*") if p.name.endswith((".key", "-key.pem"))]
    assert len(pki_files) == 7  # CA, key server, edge, four sites
    for path in pki_files:
        assert path.stat().st_mode & 0o077 == 0, f"{path}: {path.stat().st_mode:o}"
    for directory in (target, target / "keys"):
        assert directory.stat().st_mode & 0o022 == 0, f"{directory}: {directory.stat().st_mode:o}"
    report = load_keys([KeySource("dir", target / "keys")])
    assert report.problems == [] and len(report.store) == 4
