"""Certificate selection by SNI and signature schemes; the workers' shared ticket keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keyless.edge.config import ConfigError, parse_config
from keyless.edge.sites import build_sites
from keyless.edge.tickets import DerivedKeySource
from keyless.keys.schemes import SignatureScheme
from keyless.tls.config import ClientHelloInfo
from keyless.tls.tickets import SessionState, TicketKeyRing
from tests.edge.certs import SitePKI, make_pki

TLS13, TLS12 = 0x0304, 0x0303
ALL = tuple(int(s) for s in SignatureScheme if s != SignatureScheme.RSA_PKCS1_MD5_SHA1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SitePKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def table(pki: SitePKI, sites: list[dict[str, Any]]) -> Any:
    document = {"certificates": sites, "origin": {"address": "127.0.0.1:1"}}
    return build_sites(parse_config(document, base=Path(".")))


def site(pki: SitePKI, kind: str, names: list[str], **extra: Any) -> dict[str, Any]:
    return {"names": names, "chain": str(pki.chain(kind)), "key_file": str(pki.key(kind)), **extra}


def hello(name: str | None, schemes: tuple[int, ...] = ALL, version: int = TLS13) -> ClientHelloInfo:
    return ClientHelloInfo(name, schemes, (29,), (0x1301,), (), version)


def key_type(result: Any) -> str:
    return str(result.key_type)


def test_exact_wildcard_and_default(pki: SitePKI) -> None:
    sites = table(
        pki,
        [
            site(pki, "ecdsa", ["www.example.test"]),
            site(pki, "rsa", ["*.example.test"]),
            site(pki, "ed25519", ["other.test"], default=True),
        ],
    )
    assert key_type(sites.select(hello("www.example.test"))) == "ecdsa-secp256r1"
    assert key_type(sites.select(hello("WWW.Example.Test."))) == "ecdsa-secp256r1"  # case and a trailing dot
    assert key_type(sites.select(hello("api.example.test"))) == "rsa"
    assert key_type(sites.select(hello("a.b.example.test"))) == "ed25519"  # a wildcard covers one label only
    assert key_type(sites.select(hello("example.test"))) == "ed25519"
    assert key_type(sites.select(hello(None))) == "ed25519"


def test_same_name_picks_first_certificate_the_client_can_verify(pki: SitePKI) -> None:
    sites = table(pki, [site(pki, "ed25519", ["both.test"]), site(pki, "ecdsa", ["both.test"])])
    assert key_type(sites.select(hello("both.test"))) == "ed25519"
    no_ed25519 = tuple(s for s in ALL if s != SignatureScheme.ED25519)
    assert key_type(sites.select(hello("both.test", no_ed25519))) == "ecdsa-secp256r1"
    rsa_only = (int(SignatureScheme.RSA_PSS_RSAE_SHA256),)
    assert key_type(sites.select(hello("both.test", rsa_only))) == "ed25519"  # nothing fits: first, the engine decides


def test_key_file_must_match_the_chain(pki: SitePKI) -> None:
    with pytest.raises(ConfigError, match="does not belong"):
        table(pki, [{"names": ["x.test"], "chain": str(pki.chain("rsa")), "key_file": str(pki.key("ecdsa"))}])


def test_key_file_must_be_a_key(pki: SitePKI, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as info:
        table(pki, [{"names": ["x.test"], "chain": str(pki.chain("rsa")), "key_file": str(bogus)}])
    assert info.value.key == "certificates[0].key_file"


def state() -> SessionState:
    return SessionState(version=TLS13, cipher_suite=0x1301, secret=b"s" * 32, created_at=1000.0, lifetime=7200)


def test_workers_with_the_same_secret_open_each_others_tickets() -> None:
    secret = bytes(range(32))
    clock = [1000.0]
    worker1 = TicketKeyRing(DerivedKeySource(secret, 3600, 7200), now=lambda: clock[0])
    worker2 = TicketKeyRing(DerivedKeySource(secret, 3600, 7200), now=lambda: clock[0])
    stranger = TicketKeyRing(DerivedKeySource(bytes(32), 3600, 7200), now=lambda: clock[0])
    ticket = worker1.seal(state())
    opened = worker2.open(ticket)
    assert opened is not None and opened.secret == b"s" * 32
    assert stranger.open(ticket) is None


def test_derived_keys_rotate_and_old_keys_open_for_the_ticket_lifetime() -> None:
    source = DerivedKeySource(bytes(range(32)), 3600, 7200)
    now = 10 * 3600.0
    first = source.load(now)
    later = source.load(now + 3600)
    assert later[0] != first[0]  # a new sealing key each slot
    assert first[0] in later  # the previous one still opens
    much_later = source.load(now + 4 * 3600)
    assert first[0] not in much_later  # gone after lifetime (2 slots) + the current one
    assert source.next_change(now + 10) == now + 3600
    assert bytes(range(32)).hex() not in repr(source)
    with pytest.raises(ValueError):
        DerivedKeySource(b"short", 3600, 7200)
