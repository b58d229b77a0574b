"""``keyless ping`` and ``keyless bench`` as an operator runs them: real processes, real key server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keyless.pki import DemoPKI
from tests.support.keyserver import KeyServerProcess


def keyless(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyless", *args], capture_output=True, text=True, timeout=timeout)


def test_ping_checks_every_key_and_verifies(client_pki: DemoPKI, keyserver: KeyServerProcess) -> None:
    done = keyless("ping", "--server", f"localhost:{keyserver.port}", "--pki", str(client_pki.directory))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["SERVER", "KEY", "SKI", "OPERATION", "LATENCY", "RESULT"]
    body = [line for line in lines[1:] if line.strip() and "checks passed" not in line]
    assert len(body) == 1 + 4 + 1  # ping, one signature per key, one RSA decryption
    assert all(" OK" in line for line in body)
    assert sum("signature verified" in line for line in body) == 4
    assert "6 of 6 checks passed" in done.stdout


def test_ping_fails_for_a_key_the_server_does_not_hold(client_pki: DemoPKI, keyserver: KeyServerProcess,
                                                        tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    shutil.copy(client_pki.site_cert("ed25519"), keys / "ed25519.pem")
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
    (keys / "stranger.pub").write_bytes(
        stranger.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    done = keyless("ping", "-s", f"127.0.0.1:{keyserver.port}", "--server-name", "localhost",
                   "--pki", str(client_pki.directory), "--keys", str(keys))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL: key not found on the key server" in done.stdout
    assert "ed25519.pem" in done.stdout and "signature verified" in done.stdout
    assert "2 of 3 checks passed" in done.stdout


def test_ping_fails_when_the_server_does_not_trust_us(client_pki: DemoPKI, keyserver: KeyServerProcess,
                                                       tmp_path: Path) -> None:
    from keyless.pki import create_demo_pki

    other = create_demo_pki(tmp_path / "other")  # a client certificate from a CA the server does not trust
    done = keyless("ping", "-s", f"127.0.0.1:{keyserver.port}", "--server-name", "localhost", "--ca",
                   str(client_pki.ca), "--cert", str(other.edge_cert), "--key", str(other.edge_key), "--timeout", "3")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout


def test_ping_refuses_an_untrusted_server(client_pki: DemoPKI, keyserver: KeyServerProcess, tmp_path: Path) -> None:
    from keyless.pki import create_demo_pki

    other = create_demo_pki(tmp_path / "other")
    done = keyless("ping", "-s", f"127.0.0.1:{keyserver.port}", "--server-name", "localhost", "--ca",
                   str(other.ca), "--cert", str(client_pki.edge_cert), "--key", str(client_pki.edge_key))
    assert done.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in done.stdout


def test_ping_usage_error(client_pki: DemoPKI) -> None:
    done = keyless("ping", "--pki", str(client_pki.directory))
    assert done.returncode == 2
    assert "--server" in done.stderr


def test_bench_latency_mode_json(client_pki: DemoPKI, keyserver: KeyServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = keyless("bench", "-s", f"localhost:{keyserver.port}", "--pki", str(client_pki.directory), "-d", "1",
                   "-w", "8", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == "latency" and report["errors"] == 0 and report["completed"] > 50
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert sum(bucket["count"] for bucket in report["histogram"]) == report["completed"]
    assert "throughput" in done.stdout and "p99" in done.stdout and "op/s" in done.stderr


def test_bench_throughput_mode_rsa_decrypt(client_pki: DemoPKI, keyserver: KeyServerProcess) -> None:
    done = keyless("bench", "-s", f"localhost:{keyserver.port}", "--pki", str(client_pki.directory), "-d", "1",
                   "--mode", "throughput", "--rate", "300", "--op", "decrypt", "--key-cert",
                   str(client_pki.site_cert("rsa-2048")), "--json", "-", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)  # --json -: stdout holds the JSON alone
    assert "throughput" in done.stderr
    assert report["mode"] == "throughput" and report["operation"].startswith("rsa_decrypt")
    assert 200 <= report["completed"] + report["skipped"] <= 400 and report["errors"] == 0
