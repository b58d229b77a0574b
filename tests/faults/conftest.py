"""Fixtures of the fault suite: one demo PKI and one origin shared by its tests; every test starts its
own key servers and edge (each test breaks one of them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyless.pki import DemoPKI, create_demo_pki
from tests.edge.support import OriginProcess
from tests.faults.support import HOST


@pytest.fixture(scope="session")
def fault_pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    return create_demo_pki(tmp_path_factory.mktemp("fault-pki"), HOST)


@pytest.fixture(scope="module")
def origin() -> Iterator[OriginProcess]:
    with OriginProcess() as process:
        yield process
