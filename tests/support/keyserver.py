"""Start a real key-server process for tests (``python -m keyless keyserver``), on ephemeral ports.

    pki = create_demo_pki(tmp_path / "pki")
    with start_keyserver(pki, tmp_path) as ks:
        ... connect to 127.0.0.1:ks.port with pki.edge_cert / pki.edge_key, trust pki.ca ...
        assert ks.sign_count() == 1

``overrides`` are extra YAML keys (e.g. ``idle_timeout=2``, ``private_key_dirs=[...]``, ``workers=2``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from keyless.pki import DemoPKI

READY = re.compile(r"keyless keyserver ready port=(\d+) metrics_port=(\d+) keys=(\d+)")


class KeyServerProcess:
    def __init__(self, proc: subprocess.Popen[str], config_path: Path, log_path: Path) -> None:
        self.proc = proc
        self.config_path = config_path
        self.log_path = log_path
        self.port = 0
        self.metrics_port = 0
        self.keys = 0
        self.stdout_lines: list[str] = []

    def _wait_ready(self, timeout: float) -> None:
        found = threading.Event()

        def reader() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.stdout_lines.append(line)
                match = READY.search(line)
                if match and not found.is_set():
                    self.port, self.metrics_port, self.keys = (int(g) for g in match.groups())
                    found.set()

        threading.Thread(target=reader, daemon=True).start()
        if not found.wait(timeout):
            self.kill()
            raise RuntimeError(f"key server did not become ready in {timeout}s; log:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=30) as response:
            text: str = response.read().decode()
            return text

    def metric_value(self, name: str, labels: str = "") -> float:
        """Sum of the samples called exactly ``name`` whose label text contains ``labels``."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            sample_name = sample.split("{", 1)[0]
            if sample_name == name and labels in sample:
                total += float(value)
        return total

    def sign_count(self) -> int:
        return int(self.metric_value("keyless_sign_requests_total"))

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> KeyServerProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def keyserver_config(pki: DemoPKI, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listen": "127.0.0.1",
        "port": 0,
        "metrics_addr": "127.0.0.1:0",
        "auth_cert": str(pki.keyserver_cert),
        "auth_key": str(pki.keyserver_key),
        "cloudflare_ca_cert": str(pki.ca),
        "private_key_dirs": [str(pki.keys_dir)],
        "loglevel": "info",
    }
    config.update(overrides)
    return config


def start_keyserver(pki: DemoPKI, tmp_path: Path, *, timeout: float = 30.0, args: tuple[str, ...] = (),
                    **overrides: Any) -> KeyServerProcess:
    """Start ``python -m keyless keyserver`` with the demo PKI; returns once it printed its ready line."""
    config_path = Path(tmp_path) / f"keyserver-{time.monotonic_ns()}.yaml"
    config_path.write_text(yaml.safe_dump(keyserver_config(pki, **overrides)))
    log_path = config_path.with_suffix(".log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLESS_") or k == "KEYLESS_REQUIRE_ALL"}
    log_file = open(log_path, "w")  # noqa: SIM115 (the child owns it)
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyless", "keyserver", "--config", str(config_path), *args],
        stdout=subprocess.PIPE, stderr=log_file, text=True, env=env,
    )
    log_file.close()
    server = KeyServerProcess(proc, config_path, log_path)
    server._wait_ready(timeout)
    return server
