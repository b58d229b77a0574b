"""``--check-config`` runs every check start-up runs (short of binding ports): what it passes starts, what it
refuses does not start, both with one line per problem naming the file, the key and the fix."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from keyless.pki import DemoPKI
from tests.runtime.daemons import DAEMONS, Daemon, expired_certificate, intermediate_chain

EDGE, KEYSERVER = Daemon("edge"), Daemon("keyserver")
SECRET = "hunter2-redis-password"


def problem_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "configuration error:" in line]


def refused_by_check_and_start(daemon: Daemon, path: Path, *expected: str, env: dict[str, str] | None = None) -> str:
    """Both ``--check-config`` and a real start exit 2 with the same problem lines (no traceback)."""
    checked = daemon.command(path, "--check-config", env=env)
    started = daemon.command(path, env=env)
    for result in (checked, started):
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr and "configuration OK" not in result.stdout
        for text in expected:
            assert text in result.stderr, result.stderr
    assert problem_lines(checked.stderr) == problem_lines(started.stderr)
    return checked.stderr


def test_edge_ticket_key_file_of_the_wrong_size(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    (tmp_path / "ticket.key").write_bytes(b"0123456789")
    path = EDGE.write(tmp_path, EDGE.good(runtime_pki, tickets={"key_files": ["ticket.key"]}))
    refused_by_check_and_start(EDGE, path, f"{path}: tickets.key_files[0]:", "48 or n*80 bytes", "openssl rand 80")


def test_edge_listen_address_that_is_not_an_address(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    path = EDGE.write(tmp_path, EDGE.good(runtime_pki, listen=[{"address": "10.1.2.3.4", "port": 0}]))
    refused_by_check_and_start(EDGE, path, f"{path}: listen[0].address: '10.1.2.3.4' is not an IPv4 address")


def test_edge_chain_intermediate_first(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    good, intermediate_first, key = intermediate_chain(tmp_path, runtime_pki)
    site = {"names": ["keyless.test"], "chain": str(intermediate_first), "key_file": str(key)}
    path = EDGE.write(tmp_path, EDGE.good(runtime_pki, certificates=[site]))
    refused_by_check_and_start(EDGE, path, f"{path}: certificates[0].chain:", "wrong order", "leaf certificate first")
    site["chain"] = str(good)
    path = EDGE.write(tmp_path, EDGE.good(runtime_pki, certificates=[site]))
    assert EDGE.command(path, "--check-config").returncode == 0


def test_edge_every_problem_on_its_own_line(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    _, intermediate_first, key = intermediate_chain(tmp_path, runtime_pki)
    (tmp_path / "ticket.key").write_bytes(b"x" * 10)
    site = {"names": ["keyless.test"], "chain": str(intermediate_first), "key_file": str(key)}
    path = EDGE.write(tmp_path, EDGE.good(runtime_pki, certificates=[site], tickets={"key_files": ["ticket.key"]}))
    lines = problem_lines(refused_by_check_and_start(EDGE, path))
    assert len(lines) == 2 and "certificates[0].chain" in lines[0] and "tickets.key_files[0]" in lines[1]


def test_edge_unknown_key_near_a_known_one(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    document = EDGE.good(runtime_pki)
    document["certficates"] = document.pop("certificates")
    path = EDGE.write(tmp_path, document)
    refused_by_check_and_start(EDGE, path, f"{path}: certficates: unknown configuration key",
                               "did you mean certificates?")


@pytest.mark.parametrize("url", [f"http://:{SECRET}@redis.example/0", f"redis://:{SECRET}@10.1.2.3.4:6379/0",
                                 f"redis://:{SECRET}@redis.example:port/0"])
def test_edge_redis_password_never_echoed(runtime_pki: DemoPKI, tmp_path: Path, url: str) -> None:
    path = EDGE.write(tmp_path, EDGE.good(runtime_pki, tickets={"redis": url}))
    stderr = refused_by_check_and_start(EDGE, path, f"{path}: tickets.redis:")
    assert SECRET not in stderr and ":****@" in stderr


def test_edge_unix_socket_redis_url_with_password_is_accepted(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    path = EDGE.write(tmp_path, EDGE.good(runtime_pki, tickets={"redis": f"unix://:{SECRET}@/run/redis.sock"}))
    result = EDGE.command(path, "--check-config")
    assert result.returncode == 0 and SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("future", [False, True], ids=["expired", "not-yet-valid"])
def test_edge_out_of_date_certificate_is_a_warning(runtime_pki: DemoPKI, tmp_path: Path, future: bool) -> None:
    cert, key = expired_certificate(tmp_path, runtime_pki, future=future)
    site = {"names": ["keyless.test"], "chain": str(cert), "key_file": str(key)}
    path = EDGE.write(tmp_path, EDGE.good(runtime_pki, certificates=[site]))
    result = EDGE.command(path, "--check-config")
    assert result.returncode == 0 and "configuration OK" in result.stdout
    expected = "is not valid before" if future else "expired on"
    assert f"keyless edge: warning: {path}: certificates[0].chain: the certificate for keyless.test {expected}" \
        in result.stderr


def test_keyserver_auth_key_not_matching_auth_cert(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    path = KEYSERVER.write(tmp_path, KEYSERVER.good(runtime_pki, auth_key=str(runtime_pki.edge_key)))
    refused_by_check_and_start(KEYSERVER, path, f"{path}: auth_key: the private key does not belong to the "
                                                "certificate in auth_cert")


def test_keyserver_auth_key_pointing_at_a_certificate(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    path = KEYSERVER.write(tmp_path, KEYSERVER.good(runtime_pki, auth_key=str(runtime_pki.keyserver_cert)))
    refused_by_check_and_start(KEYSERVER, path, f"{path}: auth_key:", "holds a certificate, not a private key")


def test_keyserver_auth_cert_chain_in_the_wrong_order(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    _, intermediate_first, key = intermediate_chain(tmp_path, runtime_pki)
    path = KEYSERVER.write(tmp_path, KEYSERVER.good(runtime_pki, auth_cert=str(intermediate_first),
                                                    auth_key=str(key)))
    refused_by_check_and_start(KEYSERVER, path, f"{path}: auth_cert:", "wrong order")


def test_keyserver_port_override_blamed_on_the_variable(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    path = KEYSERVER.write(tmp_path, KEYSERVER.good(runtime_pki))
    stderr = refused_by_check_and_start(KEYSERVER, path, "environment variable KEYLESS_PORT: 'abc' is not a whole "
                                                         "number in 0..65535", env={"KEYLESS_PORT": "abc"})
    assert "port:" not in stderr


def test_keyserver_listen_address_that_is_not_an_address(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    path = KEYSERVER.write(tmp_path, KEYSERVER.good(runtime_pki, listen="10.1.2.3.4"))
    refused_by_check_and_start(KEYSERVER, path, f"{path}: listen: '10.1.2.3.4' is not an IPv4 address")


@pytest.mark.parametrize(("args", "yaml_level"), [(("--loglevel", "0"), "info"), ((), 0), (("--loglevel", "debug"), 3)])
def test_keyserver_loglevel_flag_and_yaml_agree(runtime_pki: DemoPKI, tmp_path: Path, args: tuple[str, ...],
                                                yaml_level: object) -> None:
    path = KEYSERVER.write(tmp_path, KEYSERVER.good(runtime_pki, loglevel=yaml_level))
    result = KEYSERVER.command(path, "--check-config", *args)
    assert result.returncode == 0 and "configuration OK: 2 keys" in result.stdout, result.stderr


def test_keyserver_bad_loglevel_flag_names_the_flag(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    path = KEYSERVER.write(tmp_path, KEYSERVER.good(runtime_pki))
    result = KEYSERVER.command(path, "--check-config", "--loglevel", "9")
    assert result.returncode == 2
    assert "command-line option --loglevel: '9' is not allowed (fix: use debug, info" in result.stderr


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("daemon", DAEMONS, ids=lambda d: d.name)
def test_a_port_in_use_is_one_clean_line(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path, workers: int) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        changes: dict[str, Any] = {"port": port} if daemon.name == "keyserver" else {
            "listen": [{"address": "127.0.0.1", "port": port}]}
        path = daemon.write(tmp_path, daemon.good(runtime_pki, workers=workers, **changes))
        result = daemon.command(path)
    key = "port" if daemon.name == "keyserver" else "listen[0]"
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "cannot" in line]
    assert lines == [f"keyless {daemon.name}: cannot start: {path}: {key}: cannot listen on 127.0.0.1:{port}: "
                     f"Address already in use (fix: stop the process that holds 127.0.0.1:{port}, or change {key})"]


@pytest.mark.parametrize("daemon", DAEMONS, ids=lambda d: d.name)
def test_a_metrics_port_in_use_is_one_clean_line(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = daemon.write(tmp_path, daemon.good(runtime_pki, metrics_addr=f"127.0.0.1:{port}"))
        result = daemon.command(path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "cannot" in line]
    assert len(lines) == 1 and lines[0].startswith(f"keyless {daemon.name}: cannot start: {path}: metrics_addr")
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use (fix: stop the process" in lines[0]
