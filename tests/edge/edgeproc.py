"""Start ``keyless edge`` as a real process for tests and read its ready line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import yaml

READY = re.compile(r"keyless edge ready port=([\d,]+) metrics_port=(\d+) workers=(\d+)")


class EdgeProcess:
    def __init__(
        self, config: dict[str, Any], tmp_path: Path, *, workers: int | None = None, name: str = "edge"
    ) -> None:
        self.config_path = tmp_path / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        args = [sys.executable, "-m", "keyless", "edge", "--config", str(self.config_path)]
        if workers is not None:
            args += ["--workers", str(workers)]
        self.stderr_path = tmp_path / f"{name}.stderr"
        self._stderr = self.stderr_path.open("wb")
        env = dict(os.environ)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env)
        line = self._readline(timeout=60)
        match = READY.search(line or "")
        if match is None:
            self.stop()
            raise RuntimeError(f"edge did not start: {line!r}\n{self.stderr_path.read_text()[-3000:]}")
        self.ports = [int(p) for p in match.group(1).split(",")]
        self.port = self.ports[0]
        self.metrics_port = int(match.group(2))

    def _readline(self, timeout: float) -> str | None:
        result: list[str] = []
        assert self.proc.stdout is not None
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        return result[0] if result else None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=30) as response:
            return response.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric_name, _, label_text = sample.partition("{")
            if metric_name != name:
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode

    def __enter__(self) -> EdgeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
