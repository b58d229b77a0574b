"""``--workers N``: N key-server processes on one port (SO_REUSEPORT), one supervisor.

Python runs one event loop per core at best, so the key server scales across cores with processes:
each worker binds the same address with SO_REUSEPORT and the kernel spreads new connections over
them. The supervisor

- reserves the port first (when ``port: 0``) with a bound, non-listening SO_REUSEPORT socket, so
  every worker gets the same ephemeral port;
- forks the workers (each loads the keys and serves metrics on an internal ephemeral port);
- serves the public metrics endpoint by scraping the workers and adding their samples up
  (quantiles of the sign-latency summary are the maximum over workers: an upper bound);
- forwards SIGHUP (reload) and SIGTERM/SIGINT (drain) to every worker; if a worker dies unexpectedly
  it stops the others and exits non-zero, so a service manager restarts the whole set.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import sys
import urllib.request
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from keyless.metrics import start_metrics_server
from keyless.server.config import KeyServerConfig
from keyless.server.main import print_ready_line

log = logging.getLogger("keyless.keyserver")

_WATCHED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}


class _WorkerScrape(Collector):
    """Adds up the samples of every worker's /metrics."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for port in self.ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    text = response.read().decode()
            except OSError:
                continue
            for family in text_string_to_metric_families(text):
                families.setdefault(family.name, family)
                merged = values.setdefault(family.name, {})
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    if "quantile" in sample.labels or family.name == "certificate_expiration_timestamp_seconds":
                        merged[key] = max(merged.get(key, float("-inf")), sample.value)
                    else:
                        merged[key] = merged.get(key, 0.0) + sample.value
        for name, family in families.items():
            metric = Metric(family.name, family.documentation, family.type)
            for (sample_name, labels), value in values[name].items():
                metric.add_sample(sample_name, dict(labels), value)
            yield metric


def _reserve_port(config: KeyServerConfig) -> tuple[socket.socket, int]:
    family = socket.AF_INET6 if ":" in config.listen else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((config.listen, config.port))
    return sock, sock.getsockname()[1]


def _start_worker(config: KeyServerConfig, index: int) -> tuple[int, int]:
    """Fork one worker; returns (pid, read end of its ready pipe)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.close(read_fd)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)
        from keyless.server.main import run_single

        def ready(port: int, metrics_port: int, keys: int) -> None:
            os.write(write_fd, f"{metrics_port} {keys}\n".encode())
            os.close(write_fd)

        code = 1
        try:
            code = run_single(config, metrics_port=0, on_ready=ready)
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def run_workers(config: KeyServerConfig) -> int:
    try:
        reserved, port = _reserve_port(config)
    except OSError as exc:  # a port in use: one line, as with one process
        from keyless.runtime.config import listen_error

        error = listen_error(exc, config.listen, config.port, "port", config.source)
        print(f"keyless keyserver: cannot start: {error}", file=sys.stderr)
        return 2
    worker_config = dataclasses.replace(config, port=port)
    # Signals arriving while workers start are held, not lost, and not inherited half-way.
    signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    workers: dict[int, int] = {}
    metrics_ports: list[int] = []
    key_counts: list[int] = []
    try:
        # One worker at a time: each loads the keys before the next starts, because key stores shared
        # between processes (a PKCS#11 token such as SoftHSM2) were seen to show a worker a partial key set
        # when several opened them at once.
        for index in range(config.workers):
            pid, read_fd = _start_worker(worker_config, index)
            workers[pid] = index
            with os.fdopen(read_fd) as pipe:
                line = pipe.readline().split()
            if len(line) != 2:
                raise RuntimeError("a worker exited before it was ready")
            metrics_ports.append(int(line[0]))
            key_counts.append(int(line[1]))
    except RuntimeError as exc:
        print(f"keyless keyserver: {exc}", file=sys.stderr)
        _stop(workers, signal.SIGTERM)
        return 1
    registry = CollectorRegistry()
    registry.register(_WorkerScrape(metrics_ports))
    http, bound = start_metrics_server(config.metrics_host, config.metrics_port, registry,
                                       {"workers": lambda: all(_alive(pid) for pid in workers)})
    log.info("%d workers serving port %d", len(workers), port)
    if len(set(key_counts)) > 1:
        log.warning("workers loaded different numbers of keys: %s (check the key stores)", key_counts)
    print_ready_line(port, bound, min(key_counts))
    code = _supervise(workers)
    http.shutdown()
    reserved.close()
    return code


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _stop(workers: dict[int, int], sig: int) -> None:
    for pid in workers:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _supervise(workers: dict[int, int]) -> int:
    stopping = False
    code = 0
    while workers:
        sig = signal.sigwait(_WATCHED)
        if sig == signal.SIGHUP:
            log.info("forwarding SIGHUP to %d workers", len(workers))
            _stop(workers, signal.SIGHUP)
        elif sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
            _stop(workers, signal.SIGTERM)
        while True:  # reap every exited worker (SIGCHLD may stand for several)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                workers.clear()
                break
            if pid == 0:
                break
            workers.pop(pid, None)
            exit_code = os.waitstatus_to_exitcode(status)
            if not stopping:
                log.error("worker %d exited unexpectedly (%d); stopping the others", pid, exit_code)
                stopping = True
                code = 1
                _stop(workers, signal.SIGTERM)
    return code
