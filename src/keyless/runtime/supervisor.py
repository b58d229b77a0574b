"""``--workers N``: one supervisor process and N workers sharing the daemon's ports (SO_REUSEPORT).

Both daemons use this class, with one policy:

- **Start-up.** Workers are started one at a time, each ready (its ``worker ready`` line on stdout)
  before the next starts: key stores shared between processes (a PKCS#11 token) were seen to show a
  worker a partial key set when several opened them at once. A worker that exits or stays silent
  during start-up fails the start: the others are stopped and the supervisor exits 1.
- **Crash.** A worker that exits while nobody asked it to is restarted after a back-off
  (``initial_backoff`` doubling per recent crash, at most ``max_backoff``). After ``max_crashes``
  crashes within ``window`` seconds the supervisor gives up: it stops the other workers and exits 1,
  so the service manager (systemd ``Restart=on-failure``) sees a daemon that cannot stay up instead
  of a restart loop hidden inside it.
- **SIGHUP** is passed on to every worker (after ``on_reload`` in the supervisor itself).
- **SIGTERM / SIGINT**: every worker gets SIGTERM and drains; whoever is still running after
  ``drain_timeout`` plus a grace period gets SIGKILL. The supervisor exits 0.

Each worker is a fresh interpreter (``command(index)`` gives its argv and stdin hand-off: secrets go
through that pipe, never argv or the environment) with ``KEYLESS_WORKER_INDEX`` and
``PROMETHEUS_MULTIPROC_DIR`` set, so its metrics merge in the supervisor (``keyless.runtime.metrics``).
Signals reach the supervisor's loop through ``signal.set_wakeup_fd``: no polling, no sleeps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from keyless.runtime.logging import WORKER_INDEX_VARIABLE
from keyless.runtime.loop import parse_ready_fields
from keyless.runtime.metrics import forget_process

log = logging.getLogger("keyless.supervisor")

WORKER_START_TIMEOUT = 60.0
STOP_GRACE = 5.0
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


@dataclass(frozen=True)
class RestartPolicy:
    max_crashes: int = 5
    window: float = 60.0
    initial_backoff: float = 0.5
    max_backoff: float = 30.0

    def backoff(self, recent_crashes: int) -> float:
        return float(min(self.max_backoff, self.initial_backoff * 2.0 ** max(0, recent_crashes - 1)))


@dataclass(frozen=True)
class WorkerCommand:
    argv: list[str]
    handoff: bytes = b""  # written to the worker's stdin, then closed
    env: dict[str, str] = field(default_factory=dict)  # added to the supervisor's environment


class WorkerStartError(RuntimeError):
    """A worker could not start; every worker has been stopped."""


class StartInterrupted(WorkerStartError):
    """SIGTERM or SIGINT arrived during start-up; every worker has been stopped (not a failure)."""


class _Stopped(Exception):
    """A stop signal arrived while a worker was starting."""


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    fields: dict[str, str] = field(default_factory=dict)


class Supervisor:
    def __init__(self, daemon: str, count: int, command: Callable[[int], WorkerCommand], *,
                 policy: RestartPolicy | None = None, drain_timeout: float = 30.0,
                 on_reload: Callable[[], None] | None = None,
                 start_timeout: float = WORKER_START_TIMEOUT) -> None:
        self.daemon = daemon
        self.count = count
        self.command = command
        self.policy = policy or RestartPolicy()
        self.drain_timeout = drain_timeout
        self.on_reload = on_reload
        self.start_timeout = start_timeout
        self.metrics_dir = tempfile.mkdtemp(prefix=f"keyless-{daemon}-metrics-")
        self.workers: dict[int, _Worker] = {}  # by index
        self.crashes: list[float] = []
        self.restarts_due: dict[int, float] = {}  # index -> monotonic time
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._previous_handlers: dict[int, object] = {}
        self._previous_wakeup = -1
        self._pending: list[int] = []

    # --- life cycle --------------------------------------------------------------------------------

    def start(self) -> list[dict[str, str]]:
        """Install the signal wiring and start every worker; returns each worker's ready fields.
        Raises ``WorkerStartError`` (every worker stopped) when one cannot start."""
        self._install_signals()
        try:
            for index in range(self.count):
                self.workers[index] = self._spawn(index)
        except (WorkerStartError, _Stopped) as exc:
            self._stop_all()
            self.close()
            if isinstance(exc, _Stopped):
                raise StartInterrupted("stopped by a signal during start-up") from None
            raise
        return [self.workers[i].fields for i in range(self.count)]

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (exit code 0) or until the crash limit is reached (1)."""
        try:
            return self._supervise()
        finally:
            self.close()

    def close(self) -> None:
        if self._previous_handlers:
            for sig, handler in self._previous_handlers.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]
            signal.set_wakeup_fd(self._previous_wakeup)
            self._previous_handlers = {}
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_read = self._wake_write = -1
        shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def worker_pids(self) -> dict[int, int]:
        """Worker index -> pid of every live worker (safe to call from another thread)."""
        return {w.index: w.process.pid for w in list(self.workers.values()) if w.process.poll() is None}

    def pids(self) -> list[int]:
        """The live workers' pids (safe to call from another thread, e.g. a readiness check)."""
        return [w.process.pid for w in list(self.workers.values()) if w.process.poll() is None]

    # --- signals -------------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        def note(signum: int, frame: object) -> None:
            return None  # the wake-up fd carries the signal number; nothing to do in the handler

        for sig in _HANDLED:
            self._previous_handlers[sig] = signal.signal(sig, note)
        self._previous_wakeup = signal.set_wakeup_fd(self._wake_write, warn_on_full_buffer=False)

    def _wait(self, timeout: float | None, fd: int | None = None) -> bool:
        """Wait for a signal (queued in ``self._pending``) or for ``fd`` to be readable; True if ``fd`` is."""
        watched = [self._wake_read] if fd is None else [self._wake_read, fd]
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select(watched, [], [], timeout)
            if self._wake_read in readable:
                with contextlib.suppress(BlockingIOError):
                    self._pending.extend(os.read(self._wake_read, 512))
            return fd is not None and fd in readable
        return False

    def _take_signals(self) -> list[int]:
        pending, self._pending = self._pending, []
        return pending

    # --- workers -------------------------------------------------------------------------------------

    def _spawn(self, index: int) -> _Worker:
        command = self.command(index)
        env = dict(os.environ, **command.env)
        env[WORKER_INDEX_VARIABLE] = str(index)
        env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        process = subprocess.Popen(command.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        worker = _Worker(index, process)
        assert process.stdin is not None and process.stdout is not None  # we asked for pipes
        try:
            process.stdin.write(command.handoff)
            process.stdin.close()
        except BrokenPipeError:
            pass  # it died at once: reported below
        worker.fields = self._await_ready(process)
        log.info("worker %d started (pid %d)", index, process.pid)
        return worker

    def _await_ready(self, process: subprocess.Popen[bytes]) -> dict[str, str]:
        assert process.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        fd = process.stdout.fileno()
        line = b""
        try:
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0:
                    process.kill()
                    process.wait()
                    raise WorkerStartError(f"{self.daemon} worker (pid {process.pid}) not ready within "
                                           f"{self.start_timeout:.0f} s")
                if self._wait(left, fd):
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        code = process.wait()
                        raise WorkerStartError(f"{self.daemon} worker (pid {process.pid}) exited with code "
                                               f"{code} before it was ready")
                    line += chunk
                elif any(sig in (signal.SIGTERM, signal.SIGINT) for sig in self._pending):
                    process.terminate()
                    process.wait()
                    raise _Stopped
        finally:
            process.stdout.close()
        text = line.decode("utf-8", "replace").strip()
        if " worker ready" not in text:
            process.kill()
            process.wait()
            raise WorkerStartError(f"{self.daemon} worker (pid {process.pid}) said {text[:200]!r} instead of ready")
        return parse_ready_fields(text)

    def _supervise(self) -> int:
        while True:
            timeout = None
            if self.restarts_due:
                timeout = max(0.0, min(self.restarts_due.values()) - time.monotonic())
            if self._pending:
                timeout = 0.0  # signals noted while a worker was starting: handle them now
            self._wait(timeout)
            signals = self._take_signals()
            if signal.SIGTERM in signals or signal.SIGINT in signals:
                log.info("stopping %d workers (drain up to %.0f s)", len(self.pids()), self.drain_timeout)
                self._stop_all()
                return 0
            if signal.SIGHUP in signals:
                self._reload()
            if self._reap() or self._restart_due():
                return 1

    def _reload(self) -> None:
        if self.on_reload is not None:
            try:
                self.on_reload()
            except Exception:
                log.exception("supervisor reload hook failed")
        log.info("forwarding SIGHUP to %d workers", len(self.pids()))
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGHUP)

    def _reap(self) -> bool:
        """Note exited workers and schedule their restart; True when the crash limit is reached."""
        for index, worker in list(self.workers.items()):
            code = worker.process.poll()
            if code is None:
                continue
            del self.workers[index]
            forget_process(self.metrics_dir, worker.process.pid)
            if self._crashed(index, f"{self.daemon} worker {index} (pid {worker.process.pid}) exited with code {code}"):
                return True
        return False

    def _crashed(self, index: int, what: str) -> bool:
        """Count a crash; schedule the restart of worker ``index``, or stop everything at the limit (True)."""
        now = time.monotonic()
        self.crashes = [t for t in self.crashes if now - t < self.policy.window] + [now]
        if len(self.crashes) >= self.policy.max_crashes:
            log.error("%s: %d crashes within %.0f s, giving up", what, len(self.crashes), self.policy.window)
            self._stop_all()
            return True
        delay = self.policy.backoff(len(self.crashes))
        log.error("%s; restarting it in %.1f s", what, delay)
        self.restarts_due[index] = now + delay
        return False

    def _restart_due(self) -> bool:
        """Start the workers whose back-off is over; True when the crash limit is reached."""
        now = time.monotonic()
        for index, due in sorted(self.restarts_due.items()):
            if due > now:
                continue
            del self.restarts_due[index]
            try:
                self.workers[index] = self._spawn(index)
            except WorkerStartError as exc:
                if self._crashed(index, str(exc)):
                    return True
            except _Stopped:
                self._pending.append(signal.SIGTERM)  # handled by the next turn of _supervise
                return False
        return False

    def _stop_all(self) -> None:
        self.restarts_due.clear()
        live = [w.process for w in self.workers.values() if w.process.poll() is None]
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.drain_timeout + STOP_GRACE
        for process in live:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d still running after the drain deadline: killing it", process.pid)
                process.kill()
                process.wait()
        for worker in self.workers.values():
            forget_process(self.metrics_dir, worker.process.pid)
        self.workers.clear()


__all__ = ["RestartPolicy", "StartInterrupted", "Supervisor", "WorkerCommand", "WorkerStartError"]
