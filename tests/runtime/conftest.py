from __future__ import annotations

import pytest

from keyless.pki import DemoPKI, create_demo_pki


@pytest.fixture(scope="session")
def runtime_pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    return create_demo_pki(tmp_path_factory.mktemp("runtime-pki"), site_keys=("ecdsa-p256", "rsa-2048"))
