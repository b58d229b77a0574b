"""Inputs the fuzzing campaign (tests/fuzz, target edge_config) found; each must end in ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyless.edge.config import ConfigError, load_config


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_bytes(b"origin: {address: \x83}\n")
    with pytest.raises(ConfigError, match=r"edge\.yaml: not UTF-8"):
        load_config(path)
