"""Both daemons behind one interface, so one test can give them the same bad value: a good configuration
for each (from one demo PKI), and ``load`` / ``command`` / ``start`` that run each the way an operator would."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keyless.pki import DemoPKI, issue_certificate, write_certificate, write_private_key
from tests.support.keyserver import keyserver_config


def edge_config(pki: DemoPKI, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listen": [{"address": "127.0.0.1", "port": 0}],
        "metrics_addr": "127.0.0.1:0",
        "certificates": [{"names": ["keyless.test"], "chain": str(pki.site_cert("ecdsa-p256")),
                          "key_file": str(pki.site_key("ecdsa-p256")), "default": True}],
        "origin": {"mode": "http", "address": "127.0.0.1:9"},
        "limits": {"drain_timeout": 1},
    }
    config.update(changes)
    return config


@dataclass(frozen=True)
class Daemon:
    name: str  # "keyserver" or "edge"

    def good(self, pki: DemoPKI, **changes: Any) -> dict[str, Any]:
        return keyserver_config(pki, **changes) if self.name == "keyserver" else edge_config(pki, **changes)

    def write(self, directory: Path, document: object) -> Path:
        path = directory / f"{self.name}.yaml"
        path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
        return path

    def load(self, path: Path, environ: Mapping[str, str] | None = None) -> Any:
        if self.name == "keyserver":
            from keyless.server.config import load_config as load_keyserver

            return load_keyserver(path, environ=environ or {})
        from keyless.edge.config import load_config as load_edge

        return load_edge(path, environ=environ or {})

    def command(self, path: Path, *args: str, env: Mapping[str, str] | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "keyless", self.name, "--config", str(path), *args],
                              capture_output=True, text=True, timeout=timeout, env=clean_env(env))


DAEMONS = (Daemon("keyserver"), Daemon("edge"))


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without KEYLESS_* settings (but with KEYLESS_REQUIRE_ALL), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLESS_") or k == "KEYLESS_REQUIRE_ALL"}
    env.update(extra or {})
    return env


def intermediate_chain(directory: Path, pki: DemoPKI) -> tuple[Path, Path, Path]:
    """A leaf issued by an intermediate CA issued by the demo CA: (chain leaf first, the same chain
    intermediate first, the leaf's key)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    ca_cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = load_pem_private_key(pki.ca_key.read_bytes(), None)
    now = datetime.datetime.now(datetime.UTC)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyless test intermediate")])
    inter = (
        x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject).public_key(inter_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue_certificate(inter, inter_key, leaf_key, "keyless.test", ["keyless.test"],
                             ExtendedKeyUsageOID.SERVER_AUTH)
    good, bad, key = directory / "chain.pem", directory / "chain-intermediate-first.pem", directory / "leaf-key.pem"
    write_certificate(directory / "leaf.pem", leaf)
    write_certificate(directory / "inter.pem", inter)
    good.write_bytes((directory / "leaf.pem").read_bytes() + (directory / "inter.pem").read_bytes())
    bad.write_bytes((directory / "inter.pem").read_bytes() + (directory / "leaf.pem").read_bytes())
    write_private_key(key, leaf_key)
    return good, bad, key


def expired_certificate(directory: Path, pki: DemoPKI, *, future: bool = False) -> tuple[Path, Path]:
    """A site certificate for keyless.test that expired a year ago (or becomes valid in a year): (cert, key)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    ca_cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = load_pem_private_key(pki.ca_key.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    shift = datetime.timedelta(days=400 if future else -800)
    cert = issue_certificate(ca_cert, ca_key, key, "keyless.test", ["keyless.test"],  # type: ignore[arg-type]
                             ExtendedKeyUsageOID.SERVER_AUTH, now=datetime.datetime.now(datetime.UTC) + shift)
    cert_path, key_path = directory / "out-of-date.pem", directory / "out-of-date-key.pem"
    write_certificate(cert_path, cert)
    write_private_key(key_path, key)
    return cert_path, key_path
