"""``keyless pki init``: the demo PKI chains, carries the right names and usages, and keeps keys private."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID

from keyless.pki import SITE_KEYS, create_demo_pki


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_demo_pki_chains_to_the_ca_with_the_right_names(tmp_path: Path) -> None:
    pki = create_demo_pki(tmp_path / "pki", "demo.example")
    ca = _cert(pki.ca)
    for path in [pki.keyserver_cert, pki.edge_cert, *(pki.site_cert(n) for n in SITE_KEYS)]:
        cert = _cert(path)
        cert.verify_directly_issued_by(ca)  # raises when the signature or issuer is wrong
    server = _cert(pki.keyserver_cert)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    edge_usage = _cert(pki.edge_cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in edge_usage
    site = _cert(pki.site_cert("ecdsa-p256")).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"demo.example", "*.demo.example", "localhost"} <= set(site.get_values_for_type(x509.DNSName))


def test_site_keys_have_the_promised_types_and_mode_0600(tmp_path: Path) -> None:
    pki = create_demo_pki(tmp_path / "pki")
    expected = {"ecdsa-p256": ec.EllipticCurvePrivateKey, "ecdsa-p384": ec.EllipticCurvePrivateKey,
                "rsa-2048": rsa.RSAPrivateKey, "ed25519": ed25519.Ed25519PrivateKey}
    for name, kind in expected.items():
        data = pki.site_key(name).read_bytes()
        assert data.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
        key = load_pem_private_key(data, None)
        assert isinstance(key, kind)
        assert stat.S_IMODE(pki.site_key(name).stat().st_mode) == 0o600
        assert _cert(pki.site_cert(name)).public_key() == key.public_key()
    assert stat.S_IMODE(pki.ca_key.stat().st_mode) == 0o600


def test_cli_pki_init_writes_a_ready_config(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "keyless", "pki", "init", str(tmp_path / "d")],
                         capture_output=True, text=True, check=True, timeout=60)
    assert "keyless keyserver --config" in out.stdout
    config = (tmp_path / "d" / "keyserver.yaml").read_text()
    assert "cloudflare_ca_cert:" in config and str(tmp_path / "d" / "keys") in config
