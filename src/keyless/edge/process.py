"""Running the edge as processes: one process, or a parent supervising ``--workers N`` on one port.

Single process (``workers: 1``): the edge, its metrics endpoint and its signal handlers live together.

Several workers: the parent chooses the ports (binding them with SO_REUSEPORT so port 0 resolves once),
draws the ticket master secret, and starts N children running ``keyless edge --worker-child``. Each child
reads ``{"ports": [...], "ticket_secret": "<hex>"}`` from its stdin (a pipe: the secret never appears in
argv, the environment or a file), binds the same ports with SO_REUSEPORT — the kernel spreads new
connections over them — and writes its metrics into a shared prometheus-client multiprocess directory
that the parent serves. SIGTERM/SIGHUP to the parent are passed on to every child; a child that dies is
restarted.

Once listening, the process that owns the metrics endpoint prints one line on stdout (flushed)::

    keyless edge ready port=<p>[,<p2>...] metrics_port=<m or 0> workers=<n>
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from keyless.edge.config import ConfigError, EdgeConfig, check_material, load_config
from keyless.runtime.config import problems_of

log = logging.getLogger("keyless.edge")

WORKER_START_TIMEOUT = 30.0


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def _install_event_loop_policy() -> None:
    """uvloop when installed (``pip install keyless[fast]``): about 8% less CPU per connection here.
    ``KEYLESS_NO_UVLOOP=1`` keeps the standard event loop."""
    if os.environ.get("KEYLESS_NO_UVLOOP") == "1":
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run(config_path: str, *, workers: int | None = None, worker_child: bool = False, out: TextIO = sys.stdout) -> int:
    try:
        config = load_config(config_path)
        problems = check_material(config)[0]  # the warnings are logged by each Edge, once logging is set up
    except ConfigError as exc:
        problems = problems_of(exc)
    for problem in problems:
        print(f"keyless edge: configuration error: {problem}", file=sys.stderr)
    if problems:
        return 2
    _configure_logging(config.loglevel)
    _install_event_loop_policy()
    if worker_child:
        handoff = json.loads(sys.stdin.readline())
        secret = bytes.fromhex(handoff["ticket_secret"])
        return asyncio.run(
            _serve(config, Path(config_path), ports=handoff["ports"], secret=secret, worker=True, out=out)
        )
    count = workers if workers is not None else config.workers
    if count <= 1:
        return asyncio.run(_serve(config, Path(config_path), ports=None, secret=None, worker=False, out=out))
    return Supervisor(config, Path(config_path), count, out).run()


async def _serve(
    config: EdgeConfig, path: Path, *, ports: list[int] | None, secret: bytes | None, worker: bool, out: TextIO
) -> int:
    from keyless.edge.metrics import EdgeMetrics
    from keyless.edge.server import Edge

    metrics = EdgeMetrics()
    try:
        edge = Edge(config, metrics, ticket_master_secret=secret)
    except (ConfigError, ValueError) as exc:
        print(f"keyless edge: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        bound = await edge.start(ports, reuse_port=worker)
    except ConfigError as exc:  # a port in use: one line, no traceback
        print(f"keyless edge: cannot start: {exc}", file=sys.stderr)
        await edge.close()
        return 2
    metrics_port = 0
    metrics_server = None
    if not worker and config.metrics_addr is not None:
        from keyless.metrics import start_metrics_server

        try:
            metrics_server, metrics_port = start_metrics_server(
                config.metrics_addr[0], config.metrics_addr[1], metrics.registry, {"keyservers": edge.is_ready}
            )
        except OSError as exc:  # the metrics port in use: one line, like a listener's
            from keyless.runtime.config import listen_error

            error = listen_error(exc, config.metrics_addr[0], config.metrics_addr[1], "metrics_addr", config.source)
            print(f"keyless edge: cannot start: {error}", file=sys.stderr)
            await edge.close()
            return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    background: set[asyncio.Future[None]] = set()

    def reload() -> None:
        async def do_reload() -> None:
            try:
                await edge.reload(load_config(path))
            except (ConfigError, ValueError, OSError) as exc:
                log.error("reload failed, keeping the running configuration: %s", exc)

        task = asyncio.ensure_future(do_reload())
        background.add(task)
        task.add_done_callback(background.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    # Ready only now: a SIGHUP right after the ready line would otherwise end the process (default action).
    await edge.check_readiness()
    if worker:
        print(f"keyless edge worker ready pid={os.getpid()}", file=out, flush=True)
    else:
        ports_text = ",".join(str(p) for p in bound)
        print(f"keyless edge ready port={ports_text} metrics_port={metrics_port} workers=1", file=out, flush=True)
    log.info(
        "edge listening on %s", ", ".join(f"{li.address}:{p}" for li, p in zip(config.listeners, bound, strict=False))
    )
    await stop.wait()
    log.info("draining (up to %.0f s)", edge.config.limits.drain_timeout)
    clean = await edge.drain()
    if metrics_server is not None:
        metrics_server.shutdown()
    log.info("stopped%s", "" if clean else " (connections cut at the drain deadline)")
    return 0


class Supervisor:
    """The parent of ``--workers N``: ports, ticket secret, metrics, signals, restarts."""

    def __init__(self, config: EdgeConfig, path: Path, workers: int, out: TextIO) -> None:
        self.config = config
        self.path = path
        self.workers = workers
        self.out = out
        self.children: list[subprocess.Popen[bytes]] = []
        self.stopping = False
        self.reload_requested = False
        self.readiness: ParentReadiness | None = None

    def run(self) -> int:
        from keyless.edge.tickets import new_master_secret

        metrics_dir = tempfile.mkdtemp(prefix="keyless-edge-metrics-")
        placeholders: list[socket.socket] = []
        for index, listener in enumerate(self.config.listeners):
            try:
                placeholders.append(_reserve_port(listener.address, listener.port))
            except OSError as exc:  # a port in use: one line, as with one process
                from keyless.runtime.config import listen_error

                error = listen_error(exc, listener.address, listener.port, f"listen[{index}]", self.config.source)
                print(f"keyless edge: cannot start: {error}", file=sys.stderr)
                for sock in placeholders:
                    sock.close()
                shutil.rmtree(metrics_dir, ignore_errors=True)
                return 2
        self.ports = [s.getsockname()[1] for s in placeholders]
        self.secret = new_master_secret()
        self.env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=metrics_dir)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        try:
            for _ in range(self.workers):
                self.children.append(self._spawn())
            for child in self.children:
                self._await_ready(child)
            for sock in placeholders:
                sock.close()  # never listened: it only reserved the port for the workers' reuseport group
            metrics_port = self._start_metrics(metrics_dir)
            ports_text = ",".join(str(p) for p in self.ports)
            print(
                f"keyless edge ready port={ports_text} metrics_port={metrics_port} workers={self.workers}",
                file=self.out,
                flush=True,
            )
            self._supervise()
        finally:
            self._stop_children()
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "keyless", "edge", "--config", str(self.path), "--worker-child"]
        child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env)
        handoff = json.dumps({"ports": self.ports, "ticket_secret": self.secret.hex()})
        if child.stdin is None:  # pragma: no cover - we asked for a pipe
            raise RuntimeError("no pipe to the worker")
        child.stdin.write(handoff.encode() + b"\n")
        child.stdin.close()
        return child

    def _await_ready(self, child: subprocess.Popen[bytes]) -> None:
        if child.stdout is None:  # pragma: no cover
            raise RuntimeError("no pipe from the worker")
        line = child.stdout.readline()
        if not line.startswith(b"keyless edge worker ready"):
            raise RuntimeError(f"edge worker {child.pid} failed to start (exit code {child.poll()})")

    def _start_metrics(self, metrics_dir: str) -> int:
        if self.config.metrics_addr is None:
            return 0
        from keyless.edge.metrics import multiprocess_registry
        from keyless.metrics import start_metrics_server

        readiness = self.readiness = ParentReadiness(self.config)
        readiness.start()
        _, port = start_metrics_server(
            self.config.metrics_addr[0],
            self.config.metrics_addr[1],
            multiprocess_registry(metrics_dir),
            {"keyservers": readiness.ready},
        )
        return port

    def _on_stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _on_hup(self, signum: int, frame: Any) -> None:
        self.reload_requested = True

    def _supervise(self) -> None:
        while not self.stopping:
            time.sleep(0.2)
            if self.reload_requested:
                self.reload_requested = False
                try:
                    config = load_config(self.path)  # a broken file would only make the workers log and keep going
                except ConfigError as exc:
                    log.error("reload refused: %s", exc)
                    continue
                if self.readiness is not None:
                    self.readiness.update(config)
                for child in self.children:
                    if child.poll() is None:
                        child.send_signal(signal.SIGHUP)
            for index, child in enumerate(self.children):
                if child.poll() is not None and not self.stopping:
                    log.warning("edge worker %d exited with %s; restarting it", child.pid, child.returncode)
                    self._forget_metrics_of(child.pid)
                    replacement = self._spawn()
                    try:
                        self._await_ready(replacement)
                    except RuntimeError as exc:
                        log.error("%s", exc)
                    self.children[index] = replacement

    def _forget_metrics_of(self, pid: int) -> None:
        """A dead worker's live gauges (active connections) must stop counting; its counters stay."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.env["PROMETHEUS_MULTIPROC_DIR"])  # type: ignore[no-untyped-call]

    def _stop_children(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.limits.drain_timeout + 5
        for child in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


class ParentReadiness:
    """The parent's own view of key-server health for /readyz (its own clients, pinged in a thread)."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.state = False
        self.started = False

    @staticmethod
    def _has_groups(config: EdgeConfig) -> bool:
        return any(site.key_servers for site in config.sites)

    def ready(self) -> bool:
        return self.state or not self._has_groups(self.config)

    def update(self, config: EdgeConfig) -> None:
        """After SIGHUP: check the key servers of the new configuration from now on."""
        self.config = config
        self.start()

    def start(self) -> None:
        if self.started or not self._has_groups(self.config):
            return
        import threading

        self.started = True
        threading.Thread(target=lambda: asyncio.run(self._loop()), name="edge-readiness", daemon=True).start()

    async def _loop(self) -> None:
        from keyless.edge.server import READINESS_INTERVAL, READINESS_TIMEOUT
        from keyless.edge.sites import SiteTable, build_sites

        checked: EdgeConfig | None = None
        sites: SiteTable | None = None
        while True:
            try:
                if self.config is not checked:
                    if sites is not None:
                        await sites.close()
                    checked, sites = self.config, build_sites(self.config)
                if sites is not None:
                    async with asyncio.timeout(READINESS_TIMEOUT):
                        results = await sites.ping_all()
                    self.state = bool(results) and all(results.values())
            except Exception as exc:
                log.warning("readiness check failed: %s", exc)
                self.state = False
            await asyncio.sleep(READINESS_INTERVAL)


def _reserve_port(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


__all__ = ["Supervisor", "run"]
