"""``SiteTable.select`` rules without a socket (the real-client checks are in test_certificate_selection.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keyless.edge.config import parse_config
from keyless.edge.sites import SiteTable, build_sites
from keyless.keys.schemes import SignatureScheme as S
from keyless.tls.config import ClientHelloInfo
from tests.edge.certs import SitePKI, make_pki

TLS13, TLS12 = 0x0304, 0x0303
X25519, P256, P384 = 0x001D, 0x0017, 0x0018
ECDHE_ECDSA_AES128, ECDHE_RSA_AES128, RSA_AES128 = 0xC02B, 0xC02F, 0x009C
EVERY_SCHEME = (S.ECDSA_SECP256R1_SHA256, S.RSA_PSS_RSAE_SHA256, S.ED25519, S.RSA_PKCS1_SHA256)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SitePKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def table(pki: SitePKI, kinds: list[str], *, rsa_key_exchange: bool = False, **default: Any) -> SiteTable:
    certificates = [
        {"names": ["both.test"], "chain": str(pki.chain(k)), "key_file": str(pki.key(k))} for k in kinds
    ]
    certificates[default.get("index", 0)]["default"] = True
    document = {"certificates": certificates, "origin": {"address": "127.0.0.1:1"},
                "rsa_key_exchange": rsa_key_exchange}
    return build_sites(parse_config(document, base=Path("/")))


def hello(
    version: int, suites: tuple[int, ...], schemes: tuple[int, ...] = EVERY_SCHEME,
    groups: tuple[int, ...] = (X25519, P256), name: str | None = "both.test",
) -> ClientHelloInfo:
    return ClientHelloInfo(name, tuple(int(s) for s in schemes), groups, suites, (), version)


def kind(sites: SiteTable, info: ClientHelloInfo) -> str:
    chosen = sites.select(info)
    assert chosen is not None
    return chosen.key_type


@pytest.mark.parametrize("name", ["both.test", None, "unknown.test"])
def test_tls12_suite_decides_between_ecdsa_and_rsa(pki: SitePKI, name: str | None) -> None:
    sites = table(pki, ["ecdsa", "rsa"])
    assert kind(sites, hello(TLS12, (ECDHE_RSA_AES128,), name=name)) == "rsa"
    assert kind(sites, hello(TLS12, (ECDHE_ECDSA_AES128,), name=name)) == "ecdsa-secp256r1"
    assert kind(sites, hello(TLS12, (ECDHE_RSA_AES128, ECDHE_ECDSA_AES128), name=name)) == "ecdsa-secp256r1"


def test_tls12_rsa_first_in_the_file_still_loses_to_our_suite_order(pki: SitePKI) -> None:
    sites = table(pki, ["rsa", "ecdsa"])
    assert kind(sites, hello(TLS12, (ECDHE_RSA_AES128, ECDHE_ECDSA_AES128))) == "ecdsa-secp256r1"


def test_tls12_curve_scheme_and_key_exchange_neighbours(pki: SitePKI) -> None:
    sites = table(pki, ["ecdsa", "rsa"])
    both = (ECDHE_ECDSA_AES128, ECDHE_RSA_AES128)
    assert kind(sites, hello(TLS12, both, groups=(P384,))) == "rsa"  # P-256 certificate, client lacks P-256
    assert kind(sites, hello(TLS12, both, schemes=(S.RSA_PKCS1_SHA256,))) == "rsa"
    assert kind(sites, hello(TLS12, (RSA_AES128,))) == "ecdsa-secp256r1"  # off: nothing fits, the first
    with_rsa_kx = table(pki, ["ecdsa", "rsa"], rsa_key_exchange=True)
    assert kind(with_rsa_kx, hello(TLS12, (RSA_AES128,))) == "rsa"
    assert kind(with_rsa_kx, hello(TLS12, (RSA_AES128, ECDHE_ECDSA_AES128))) == "ecdsa-secp256r1"


@pytest.mark.parametrize(
    ("schemes", "expected"),
    [
        ((S.RSA_PSS_RSAE_SHA256,), "rsa"),
        ((S.ED25519,), "ed25519"),
        ((S.ECDSA_SECP256R1_SHA256,), "ecdsa-secp256r1"),
        ((S.RSA_PKCS1_SHA256,), "ecdsa-secp256r1"),  # never PKCS#1 in TLS 1.3: nothing fits, the first
        (EVERY_SCHEME, "ecdsa-secp256r1"),
    ],
)
def test_tls13_signature_schemes(pki: SitePKI, schemes: tuple[int, ...], expected: str) -> None:
    sites = table(pki, ["ecdsa", "rsa", "ed25519"])
    assert kind(sites, hello(TLS13, (0x1301,), schemes)) == expected
    assert kind(sites, hello(TLS13, (0x1301,), schemes, name=None)) == expected


def test_default_certificate_first_for_the_default_names(pki: SitePKI) -> None:
    sites = table(pki, ["rsa", "ed25519"], index=1)
    assert kind(sites, hello(TLS13, (0x1301,), name=None)) == "ed25519"  # the default certificate first
    assert kind(sites, hello(TLS13, (0x1301,), name="both.test")) == "rsa"  # file order for a named site
