"""One rule, two daemons: the same bad value gives the same error (key, problem, fix) from the key server
and from the edge, and the same good spelling means the same thing to both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keyless.pki import DemoPKI
from keyless.runtime.config import ConfigError, problems_of
from tests.runtime.daemons import DAEMONS, Daemon

BOTH = pytest.mark.parametrize("daemon", DAEMONS, ids=lambda d: d.name)


def error_of(daemon: Daemon, pki: DemoPKI, tmp_path: Path, environ: dict[str, str] | None = None,
             **changes: Any) -> ConfigError:
    path = daemon.write(tmp_path, daemon.good(pki, **changes))
    with pytest.raises(ConfigError) as caught:
        daemon.load(path, environ)
    return caught.value


@BOTH
@pytest.mark.parametrize(("value", "problem", "fix"), [
    (":9000", "':9000' has no host", "write 0.0.0.0:9000 (every IPv4 address), [::]:9000 (every address)"),
    ("::1", "'::1': an IPv6 address must be in brackets", "write [::1]:PORT"),
    ("10.1.2.3.4:9000", "'10.1.2.3.4' is not an IPv4 address", "write four numbers"),
    ("localhost", "'localhost' has no port", "write host:port"),
    ("no-such-host.invalid:9000", "'no-such-host.invalid' does not resolve", "use an IP address of this machine"),
])
def test_metrics_addr(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path, value: str, problem: str,
                      fix: str) -> None:
    error = error_of(daemon, runtime_pki, tmp_path, metrics_addr=value)
    assert error.key == "metrics_addr" and error.file == str(tmp_path / f"{daemon.name}.yaml")
    assert error.problem.startswith(problem) and fix in error.fix


@BOTH
def test_bracketed_ipv6_is_the_one_ipv6_spelling(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path) -> None:
    config = daemon.load(daemon.write(tmp_path, daemon.good(runtime_pki, metrics_addr="[::1]:9000")))
    addr = (config.metrics_host, config.metrics_port) if daemon.name == "keyserver" else config.metrics_addr
    assert addr == ("::1", 9000)


@BOTH
@pytest.mark.parametrize(("level", "expected"), [(0, "debug"), ("0", "debug"), (5, "critical"), ("WARN", "warning"),
                                                 ("fatal", "critical"), ("info", "info")])
def test_loglevels_are_the_same_set(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path, level: object,
                                    expected: str) -> None:
    config = daemon.load(daemon.write(tmp_path, daemon.good(runtime_pki, loglevel=level)))
    assert config.loglevel.lower() == expected


@BOTH
@pytest.mark.parametrize(("changes", "key", "problem", "fix"), [
    ({"loglevel": "loud"}, "loglevel", "'loud' is not allowed", "0 (debug) to 5 (fatal)"),
    ({"loglevel": 6}, "loglevel", "6 is not allowed", "0 (debug) to 5 (fatal)"),
    ({"workers": 0}, "workers", "0 is not a whole number in 1..256", "use a whole number from 1 to 256"),
    ({"workers": True}, "workers", "True is not a whole number in 1..256", "use a whole number from 1 to 256"),
    ({"workerz": 2}, "workerz", "unknown configuration key", "did you mean workers?"),
    ({"metrics_addr": 9000}, "metrics_addr", "'9000' has no host", "127.0.0.1:9000"),
])
def test_same_bad_value_same_error(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path, changes: dict[str, Any],
                                   key: str, problem: str, fix: str) -> None:
    error = error_of(daemon, runtime_pki, tmp_path, **changes)
    assert (error.key, error.problem) == (key, problem) and fix in error.fix
    assert str(error).startswith(f"{tmp_path / daemon.name}.yaml: {key}: {problem} (fix: ")


@BOTH
@pytest.mark.parametrize(("variable", "value", "problem"), [
    ("KEYLESS_WORKERS", "abc", "'abc' is not a whole number in 1..256"),
    ("KEYLESS_LOGLEVEL", "loud", "'loud' is not allowed"),
    ("KEYLESS_METRICS_ADDR", ":9000", "':9000' has no host"),
])
def test_a_bad_override_names_the_variable(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path, variable: str,
                                           value: str, problem: str) -> None:
    error = error_of(daemon, runtime_pki, tmp_path, environ={variable: value})
    assert str(error).startswith(f"environment variable {variable}: {problem} (fix: ")
    assert f"{daemon.name}.yaml" not in str(error)


@BOTH
def test_good_overrides_apply(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path) -> None:
    env = {"KEYLESS_WORKERS": "3", "KEYLESS_LOGLEVEL": "1", "KEYLESS_METRICS_ADDR": "[::1]:7000"}
    config = daemon.load(daemon.write(tmp_path, daemon.good(runtime_pki)), env)
    addr = (config.metrics_host, config.metrics_port) if daemon.name == "keyserver" else config.metrics_addr
    assert (config.workers, config.loglevel.lower(), addr) == (3, "info", ("::1", 7000))


@BOTH
def test_yaml_syntax_error_names_file_and_line(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path) -> None:
    path = daemon.write(tmp_path, "workers: 1\nloglevel: [info\nmetrics_addr: 127.0.0.1:0\n")
    with pytest.raises(ConfigError) as caught:
        daemon.load(path)
    assert str(caught.value).startswith(f"{path}:3:") and "not valid YAML" in str(caught.value)


@BOTH
def test_missing_file_is_named(daemon: Daemon, tmp_path: Path) -> None:
    result = daemon.command(tmp_path / "nope.yaml", "--check-config")
    assert result.returncode == 2 and "nope.yaml" in result.stderr and "Traceback" not in result.stderr


@BOTH
def test_every_problem_is_reported_not_just_the_first(daemon: Daemon, runtime_pki: DemoPKI, tmp_path: Path) -> None:
    error = error_of(daemon, runtime_pki, tmp_path, environ={"KEYLESS_WORKERS": "0"}, loglevel="loud",
                     workerz=2, metrics_addr=":9000")
    found = sorted((problem.variable or problem.key) for problem in problems_of(error))
    assert found == ["KEYLESS_WORKERS", "loglevel", "metrics_addr", "workerz"]
    result = daemon.command(daemon.write(tmp_path, daemon.good(runtime_pki, loglevel="loud", workerz=2)),
                            "--check-config", env={"KEYLESS_WORKERS": "0"})
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert result.returncode == 2 and len(lines) == 3, result.stderr
