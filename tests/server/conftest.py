from __future__ import annotations

import pytest

from keyless.pki import SITE_KEYS, DemoPKI, create_demo_pki

EXTRA_KEYS = ("rsa-4096", "ecdsa-p521")


@pytest.fixture(scope="session")
def server_pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    """A demo PKI whose key directory holds every supported key type (incl. RSA-4096 and P-521)."""
    return create_demo_pki(tmp_path_factory.mktemp("server-pki"), site_keys=SITE_KEYS + EXTRA_KEYS)


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    """A second, unrelated PKI: its edge certificate must be refused by servers of the first."""
    return create_demo_pki(tmp_path_factory.mktemp("other-pki"), site_keys=("ecdsa-p256",))
