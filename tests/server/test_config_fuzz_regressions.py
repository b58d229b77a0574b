"""Inputs the fuzzing campaign (tests/fuzz, target keyserver_config) found; each must end in ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyless.server.config import ConfigError, load_config


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "keyserver.yaml"
    path.write_bytes(b"port: 2407\nloglevel: \xb3\n")
    with pytest.raises(ConfigError, match=r"keyserver\.yaml: not UTF-8"):
        load_config(path, environ={})


def test_a_path_under_an_unknown_users_home_is_a_config_error(tmp_path: Path) -> None:
    # Path.expanduser raises RuntimeError for "~someone" when no such user exists (found by fuzzing).
    path = tmp_path / "keyserver.yaml"
    path.write_text("auth_cert: ~no-such-user-keyless/cert.pem\n")
    with pytest.raises(ConfigError, match=r"auth_cert: .*names a home directory this machine does not know"):
        load_config(path, environ={})
