"""Running the edge as processes: one process, or a supervisor of ``--workers N`` on one port.

Single process (``workers: 1``): the edge, its metrics endpoint and its signal handlers live together.

Several workers: the supervisor (``keyless.runtime.supervisor``, the same policy as the key server's)
chooses the ports (binding them with SO_REUSEPORT so port 0 resolves once), draws the ticket master
secret, and starts N children running ``keyless edge --worker-child``. Each child reads
``{"ports": [...], "ticket_secret": "<hex>"}`` from its stdin (a pipe: the secret never appears in
argv, the environment or a file), binds the same ports with SO_REUSEPORT — the kernel spreads new
connections over them — and writes its metrics into the supervisor's prometheus-client multiprocess
directory, which the supervisor serves merged. The supervisor checks the key servers itself for
``/readyz`` and the per-key-server metrics. SIGHUP/SIGTERM are passed on; a crashed worker is
restarted with back-off, and repeated crashes stop the edge with exit code 1.

Once listening, the process that owns the metrics endpoint prints one line on stdout (flushed)::

    keyless edge ready port=<p>[,<p2>...] metrics_port=<m or 0> workers=<n>
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from cryptography import x509

from keyless.edge.config import ConfigError, EdgeConfig, check_material, environment_warnings, load_config
from keyless.runtime import loop as runtime_loop
from keyless.runtime.config import Checked, listen_error, load_for_start
from keyless.runtime.logging import configure as configure_logging
from keyless.runtime.metrics import MetricsEndpoint, daemon_registry, multiprocess_collector
from keyless.runtime.supervisor import StartInterrupted, Supervisor, WorkerCommand, WorkerStartError

log = logging.getLogger("keyless.edge")


def run(config_path: str, *, workers: int | None = None, worker_child: bool = False, log_format: str | None = None,
        out: TextIO = sys.stdout) -> int:
    """``log_format``: ``--log-format``, which overrides ``log_format:`` (None: the configuration's)."""

    def load() -> Checked[EdgeConfig]:
        config = load_config(config_path)
        return config, check_material(config)[0]  # its warnings are logged by the Edge, once logging is set up

    config = load_for_start("edge", load, environment_warnings(), sys.stderr, warn=not worker_child)
    if config is None:
        return 2
    log_format = log_format or config.log_format
    configure_logging("edge", config.loglevel, log_format)
    path = Path(config_path)
    if worker_child:
        handoff = json.loads(sys.stdin.readline())
        secret = bytes.fromhex(handoff["ticket_secret"])
        return runtime_loop.run(lambda: _serve(config, path, ports=handoff["ports"], secret=secret, worker=True,
                                               out=out))
    count = workers if workers is not None else config.workers
    if count <= 1:
        return runtime_loop.run(lambda: _serve(config, path, ports=None, secret=None, worker=False, out=out))
    return run_supervisor(config, path, count, log_format, out)


def _metrics_error(config: EdgeConfig, exc: OSError) -> str:
    host, port = config.metrics_addr or ("", 0)
    return f"keyless edge: cannot start: {listen_error(exc, host, port, 'metrics_addr', config.source)}"


async def _serve(
    config: EdgeConfig, path: Path, *, ports: list[int] | None, secret: bytes | None, worker: bool, out: TextIO
) -> int:
    from keyless.edge.metrics import (
        CertificateExpiry,
        EdgeMetrics,
        KeyServerGauges,
        KeyServerResilience,
        warn_about_validity,
    )
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

    def site_leaves() -> list[tuple[str, x509.Certificate]]:
        return [(site.config.label, site.certified.chain[0]) for site in edge.sites.sites]

    metrics_port = 0
    endpoint = None
    if not worker:
        warn_about_validity(site_leaves())
    if not worker and config.metrics_addr is not None:
        endpoint = MetricsEndpoint(
            daemon_registry("edge", metrics.registry, KeyServerGauges(edge.key_server_round_trips),
                            CertificateExpiry(site_leaves), KeyServerResilience(lambda: key_server_stats(edge))),
            {"keyservers": edge.failing_key_servers},
        )
        try:
            metrics_port = endpoint.start(*config.metrics_addr)
        except OSError as exc:
            print(_metrics_error(config, exc), file=sys.stderr)
            await edge.close()
            return 2
    stop = asyncio.Event()
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

    runtime_loop.wire_signals(asyncio.get_running_loop(), stop=stop.set, reload=reload)
    # Ready only now: a SIGHUP right after the ready line would otherwise end the process (default action).
    await edge.check_readiness()
    if worker:
        print(runtime_loop.worker_ready_line("edge"), file=out, flush=True)
    else:
        runtime_loop.print_ready_line("edge", out, port=",".join(str(p) for p in bound), metrics_port=metrics_port,
                                      workers=1)
    log.info(
        "edge listening on %s", ", ".join(f"{li.address}:{p}" for li, p in zip(config.listeners, bound, strict=False))
    )
    await stop.wait()
    log.info("draining (up to %.0f s)", edge.config.limits.drain_timeout)
    clean = await edge.drain()
    if endpoint is not None:
        endpoint.close()
    log.info("stopped%s", "" if clean else " (connections cut at the drain deadline)")
    return 0


def key_server_stats(edge: Any) -> list[Any]:
    """Every key-server client's per-server stats (groups without a client, as in tests, have none)."""
    stats: list[Any] = []
    for group in edge.sites.groups.values():
        each = getattr(group, "stats", None)
        if each is not None:
            stats.extend(each())
    return stats


def run_supervisor(config: EdgeConfig, path: Path, count: int, log_format: str, out: TextIO) -> int:
    """The parent of ``--workers N``: ports, ticket secret, metrics, readiness; the rest is the Supervisor's."""
    from keyless.edge.metrics import CertificateExpiry, KeyServerGauges, config_certificates, warn_about_validity
    from keyless.edge.tickets import new_master_secret

    placeholders = []
    for index, listener in enumerate(config.listeners):
        try:
            placeholders.append(runtime_loop.reserve_port(listener.address, listener.port))
        except OSError as exc:  # a port in use: one line, as with one process
            error = listen_error(exc, listener.address, listener.port, f"listen[{index}]", config.source)
            print(f"keyless edge: cannot start: {error}", file=sys.stderr)
            for sock in placeholders:
                sock.close()
            return 2
    ports = [sock.getsockname()[1] for sock in placeholders]
    handoff = (json.dumps({"ports": ports, "ticket_secret": new_master_secret().hex()}) + "\n").encode()
    argv = [sys.executable, "-m", "keyless", "edge", "--config", str(path), "--worker-child",
            "--log-format", log_format]
    readiness = ParentReadiness(config)
    certificates = config_certificates(config)
    warn_about_validity(certificates)

    def on_reload() -> None:
        nonlocal certificates
        try:
            new = load_config(path)  # the workers reload (or refuse) on their own; this is the parent's view
        except ConfigError as exc:
            log.error("reload refused: %s", exc)
            return
        readiness.update(new)
        certificates = config_certificates(new)

    supervisor = Supervisor("edge", count, lambda index: WorkerCommand(argv, handoff),
                            drain_timeout=config.limits.drain_timeout, on_reload=on_reload)
    endpoint = None
    metrics_port = 0
    try:
        if config.metrics_addr is not None:
            endpoint = MetricsEndpoint(
                daemon_registry("edge", multiprocess_collector(supervisor.metrics_dir),
                                KeyServerGauges(readiness.round_trips), CertificateExpiry(lambda: certificates),
                                workers=supervisor.worker_pids),
                {"keyservers": readiness.failing},
            )
            try:
                metrics_port = endpoint.start(*config.metrics_addr)
            except OSError as exc:
                print(_metrics_error(config, exc), file=sys.stderr)
                supervisor.close()
                return 2
        readiness.start()
        try:
            supervisor.start()
        except StartInterrupted:
            return 0
        except WorkerStartError as exc:
            print(f"keyless edge: {exc}", file=sys.stderr)
            return 1
        for sock in placeholders:
            sock.close()  # never listened: it only reserved the port for the workers' reuseport group
        placeholders = []
        runtime_loop.print_ready_line("edge", out, port=",".join(str(p) for p in ports), metrics_port=metrics_port,
                                      workers=count)
        return supervisor.run()
    finally:
        for sock in placeholders:
            sock.close()
        if endpoint is not None:
            endpoint.close()


class ParentReadiness:
    """The supervisor's own view of key-server health for /readyz and the per-key-server metrics (its own
    clients, pinged from one thread running one event loop)."""

    def __init__(self, config: EdgeConfig) -> None:
        from keyless.edge.sites import KeyServerHealth

        self.config = config
        self.health: KeyServerHealth | None = None
        self.started = False

    @staticmethod
    def _has_groups(config: EdgeConfig) -> bool:
        return any(site.key_servers for site in config.sites)

    def failing(self) -> list[str]:
        if not self._has_groups(self.config):
            return []
        if self.health is None:
            return ["not checked yet"]
        return self.health.failing()

    def ready(self) -> bool:
        return self.failing() == []

    def round_trips(self) -> dict[str, float | None]:
        return dict(self.health.servers) if self.health is not None else {}

    def update(self, config: EdgeConfig) -> None:
        """After SIGHUP: check the key servers of the new configuration from now on."""
        self.config = config
        self.start()

    def start(self) -> None:
        if self.started or not self._has_groups(self.config):
            return
        self.started = True
        threading.Thread(target=lambda: asyncio.run(self._loop()), name="edge-readiness", daemon=True).start()

    async def _loop(self) -> None:
        from keyless.edge.server import READINESS_INTERVAL, check_key_servers
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
                    self.health = await check_key_servers(sites)
            except Exception as exc:
                log.warning("readiness check failed: %s", exc)
                self.health = None
            await asyncio.sleep(READINESS_INTERVAL)


__all__ = ["ParentReadiness", "run", "run_supervisor"]
