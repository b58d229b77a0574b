"""``keyless.runtime.supervisor``: real worker processes, killed with SIGKILL, restarted with back-off; the
supervisor gives up after repeated crashes; SIGHUP and SIGTERM reach every worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

DRIVER = Path(__file__).with_name("supervisor_driver.py")
DEADLINE = 30.0


class Driven:
    def __init__(self, tmp_path: Path, workers: int, max_crashes: int, backoff: float) -> None:
        self.events = tmp_path / "events"
        self.events.touch()
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), str(self.events), str(workers), str(max_crashes), str(backoff)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.log: list[str] = []
        assert self.proc.stderr is not None
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()  # type: ignore[arg-type]
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("supervisor ready pids="), (line, self.log)
        self.pids = [int(p) for p in line.split("=", 1)[1].split(",")]

    def event_lines(self) -> list[tuple[str, int, int]]:
        return [(kind, int(index), int(pid)) for kind, index, pid in
                (line.split() for line in self.events.read_text().splitlines())]

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; log: {''.join(self.log)}"
            time.sleep(0.02)

    def starts_of(self, index: int) -> list[int]:
        return [pid for kind, i, pid in self.event_lines() if kind == "start" and i == index]

    def restarted(self, index: int, count: int) -> int:
        """Wait until worker ``index`` has been started ``count`` times and the supervisor saw it ready."""
        self.wait_for(lambda: len(self.starts_of(index)) == count, f"start number {count} of worker {index}")
        pid = self.starts_of(index)[-1]
        self.wait_for(lambda: f"worker {index} started (pid {pid})" in "".join(self.log), f"worker {pid} ready")
        return pid


@pytest.fixture
def driven(tmp_path: Path) -> Iterator[Callable[..., Driven]]:
    started: list[Driven] = []

    def start(workers: int = 2, max_crashes: int = 3, backoff: float = 0.2) -> Driven:
        d = Driven(tmp_path, workers, max_crashes, backoff)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)
        for _, _, pid in d.event_lines():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by the supervisor) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_worker_is_restarted_with_growing_backoff_then_the_supervisor_gives_up(driven) -> None:  # type: ignore[no-untyped-def]
    d = driven(workers=2, max_crashes=3, backoff=0.2)
    first, other = d.pids
    os.kill(first, signal.SIGKILL)
    second = d.restarted(0, 2)
    assert f"test worker 0 (pid {first}) exited with code -9; restarting it in 0.2 s" in "".join(d.log)
    assert second != first and _alive(second) and _alive(other)

    os.kill(second, signal.SIGKILL)
    third = d.restarted(0, 3)
    assert "exited with code -9; restarting it in 0.4 s" in "".join(d.log)  # the back-off doubled

    os.kill(third, signal.SIGKILL)  # the third crash within the window: give up
    assert d.proc.wait(DEADLINE) == 1
    log = "".join(d.log)
    assert "3 crashes within 600 s, giving up" in log, log
    assert ("term", 1, other) in d.event_lines()  # the healthy worker was stopped, not orphaned
    assert not _alive(other)
    assert "metrics dir removed: True" in log


def test_sighup_and_sigterm_reach_every_worker(driven) -> None:  # type: ignore[no-untyped-def]
    d = driven(workers=3)
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for(lambda: sum(kind == "hup" for kind, _, _ in d.event_lines()) == 3, "SIGHUP in every worker")
    assert {pid for kind, _, pid in d.event_lines() if kind == "hup"} == set(d.pids)
    assert d.proc.poll() is None  # a reload is not a stop
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(DEADLINE) == 0
    assert {pid for kind, _, pid in d.event_lines() if kind == "term"} == set(d.pids)
    assert not any(_alive(pid) for pid in d.pids)
    assert len(d.starts_of(0)) == 1  # workers stopped on purpose are not restarted


def test_a_worker_that_dies_during_start_up_fails_the_start(tmp_path: Path) -> None:
    from keyless.runtime.supervisor import Supervisor, WorkerCommand, WorkerStartError

    supervisor = Supervisor("test", 2, lambda index: WorkerCommand([sys.executable, "-c", "raise SystemExit(3)"]))
    with pytest.raises(WorkerStartError, match="exited with code 3 before it was ready"):
        supervisor.start()
    assert not Path(supervisor.metrics_dir).exists()
