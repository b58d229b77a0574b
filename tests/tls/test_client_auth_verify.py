"""Client-chain verification: the alert says why (OpenSSL's choices), the depth is nginx's ``ssl_verify_depth``;
and ``ServerConfig.config_for_client`` (Go's GetConfigForClient) switches client authentication per ClientHello."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.client_auth import verify_client_certificate
from keyless.tls.config import ClientHelloInfo, ServerConfig
from keyless.tls.events import ConnectionClosed, HandshakeComplete
from tests.tls.tls13_helpers import client_context, client_identity, exchange, pki, server_config

NOW = datetime.datetime.now(datetime.UTC)
Key = ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(
    subject: str, key: Key, issuer: str, issuer_key: Key, *, ca: bool = False,
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH, not_after: datetime.datetime | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=2))
        .not_valid_after(not_after or NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        usages = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usages, critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


ROOT_KEY, INTER_KEY, LEAF_KEY = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
ROOT = issue("root", ROOT_KEY, "root", ROOT_KEY, ca=True)
INTER = issue("intermediate", INTER_KEY, "root", ROOT_KEY, ca=True)


def der(*certs: x509.Certificate) -> list[bytes]:
    return [c.public_bytes(Encoding.DER) for c in certs]


def outcome(chain: list[bytes], depth: int = 7) -> str:
    try:
        verify_client_certificate(chain, [ROOT], NOW.timestamp(), depth)
    except TLSAlert as alert:
        return alert.description.name
    return "ok"


CASES = [
    ("direct", der(issue("leaf", LEAF_KEY, "root", ROOT_KEY)), "ok"),
    ("through an intermediate", der(issue("leaf", LEAF_KEY, "intermediate", INTER_KEY), INTER), "ok"),
    (
        "expired leaf",
        der(issue("leaf", LEAF_KEY, "root", ROOT_KEY, not_after=NOW - datetime.timedelta(hours=1))),
        "certificate_expired",
    ),
    (
        "expired intermediate",
        der(
            issue("leaf", LEAF_KEY, "intermediate", INTER_KEY),
            issue("intermediate", INTER_KEY, "root", ROOT_KEY, ca=True, not_after=NOW - datetime.timedelta(hours=1)),
        ),
        "certificate_expired",
    ),
    ("self-signed stranger", der(issue("me", LEAF_KEY, "me", LEAF_KEY)), "unknown_ca"),
    ("intermediate missing", der(issue("leaf", LEAF_KEY, "intermediate", INTER_KEY)), "unknown_ca"),
    (
        "server-only EKU",
        der(issue("leaf", LEAF_KEY, "root", ROOT_KEY, usage=ExtendedKeyUsageOID.SERVER_AUTH)),
        "unsupported_certificate",
    ),
    ("garbage", [b"\x30\x03\x02\x01\x00"], "bad_certificate"),
    ("nine certificates", der(*[ROOT] * 9), "bad_certificate"),
]


@pytest.mark.parametrize(("label", "chain", "expected"), CASES, ids=[c[0] for c in CASES])
def test_alert_names_the_reason(label: str, chain: list[bytes], expected: str) -> None:
    assert outcome(chain) == expected


def test_depth_counts_intermediates_as_nginx_ssl_verify_depth() -> None:
    direct = der(issue("leaf", LEAF_KEY, "root", ROOT_KEY))
    one_below = der(issue("leaf", LEAF_KEY, "intermediate", INTER_KEY), INTER)
    assert outcome(direct, depth=0) == "ok"
    assert outcome(one_below, depth=0) == "bad_certificate"
    assert outcome(one_below, depth=1) == "ok"
    with pytest.raises(ValueError, match="client_verify_depth"):
        server_config(client_verify_depth=8)


def test_config_for_client_switches_client_authentication_per_hello() -> None:
    seen: list[ClientHelloInfo] = []
    base = server_config()
    strict = replace(base, client_ca=(pki().ca_cert,))

    def choose(info: ClientHelloInfo) -> ServerConfig | None:
        seen.append(info)
        return strict if info.server_name == "strict.test" else None

    config = replace(base, config_for_client=choose)
    open_ex = exchange(config, client_context(check_hostname=False), server_hostname=None)  # keeps the base
    open_ex.handshake()
    assert any(isinstance(e, HandshakeComplete) for e in open_ex.events)

    refused = exchange(config, client_context(check_hostname=False), server_hostname="strict.test")
    with pytest.raises((AssertionError, ssl.SSLError)):
        refused.handshake()
    closed = refused.events[-1]
    assert isinstance(closed, ConnectionClosed) and closed.alert_sent == AlertDescription.certificate_required

    ctx = client_context(check_hostname=False)
    ctx.load_cert_chain(*client_identity())
    allowed = exchange(config, ctx, server_hostname="strict.test")
    allowed.handshake()
    done = next(e for e in allowed.events if isinstance(e, HandshakeComplete))
    assert done.client_certificates
    assert [info.server_name for info in seen] == [None, "strict.test", "strict.test"]
