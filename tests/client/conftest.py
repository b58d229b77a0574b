"""Fixtures for client tests: one demo PKI and one real key-server process shared by the module's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keyless.pki import DemoPKI, create_demo_pki
from tests.support.keyserver import KeyServerProcess, start_keyserver


@pytest.fixture(scope="session")
def client_pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    return create_demo_pki(tmp_path_factory.mktemp("client-pki"))


@pytest.fixture(scope="module")
def keyserver(client_pki: DemoPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyServerProcess]:
    with start_keyserver(client_pki, tmp_path_factory.mktemp("ks")) as ks:
        yield ks


@pytest.fixture()
def ks_dir(tmp_path: Path) -> Path:
    return tmp_path
