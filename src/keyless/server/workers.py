"""``--workers N``: N key-server processes on one port (SO_REUSEPORT) under ``keyless.runtime.supervisor``.

Python runs one event loop per core at best, so the key server scales across cores with processes. This
process, the supervisor,

- reserves the port first (when ``port: 0``) with a bound, non-listening SO_REUSEPORT socket, so every
  worker gets the same ephemeral port, and binds the public metrics endpoint (a port in use stops
  start-up before any worker runs);
- starts the workers (``keyless keyserver --worker-child``, each handed the port over its stdin), one
  at a time, and prints the public ready line with the smallest key count any worker loaded;
- serves the merge of every worker's metrics (prometheus-client multiprocess mode: counters and
  histogram buckets summed, ``keyless_keys_loaded`` the smallest, latency quantiles computed over all
  requests of all workers);
- restarts a crashed worker with back-off, gives up (exit 1) after repeated crashes, forwards SIGHUP
  and drains on SIGTERM/SIGINT: the policy of ``keyless.runtime.supervisor``.
"""

from __future__ import annotations

import json
import logging
import sys

from keyless.runtime.config import listen_error
from keyless.runtime.loop import print_ready_line, reserve_port
from keyless.runtime.metrics import MetricsEndpoint, daemon_registry, multiprocess_collector
from keyless.runtime.supervisor import StartInterrupted, Supervisor, WorkerCommand, WorkerStartError
from keyless.server.config import KeyServerConfig
from keyless.server.metrics import serving_registry

log = logging.getLogger("keyless.keyserver")

DRAIN_TIMEOUT = 30.0  # KeyServer.drain's default


def run_workers(config: KeyServerConfig, worker_argv: list[str]) -> int:
    try:
        reserved = reserve_port(config.listen, config.port)
    except OSError as exc:  # a port in use: one line, as with one process
        error = listen_error(exc, config.listen, config.port, "port", config.source)
        print(f"keyless keyserver: cannot start: {error}", file=sys.stderr)
        return 2
    port: int = reserved.getsockname()[1]
    handoff: dict[str, int] = {"port": port, "metrics_port": 0}
    supervisor = Supervisor(
        "keyserver", config.workers,
        lambda index: WorkerCommand(worker_argv, (json.dumps(handoff) + "\n").encode()),
        drain_timeout=DRAIN_TIMEOUT,
    )
    merged = multiprocess_collector(supervisor.metrics_dir)

    def keys_loaded() -> bool:
        """As one process answers: ready only with keys (the merge holds the smallest count of any worker)."""
        return any(sample.value > 0 for family in merged.collect() if family.name == "keyless_keys_loaded"
                   for sample in family.samples)

    endpoint = MetricsEndpoint(
        daemon_registry("keyserver", serving_registry(merged), workers=supervisor.worker_pids),
        {"keys_loaded": keys_loaded, "workers": lambda: len(supervisor.pids()) == config.workers},
    )
    try:
        handoff["metrics_port"] = endpoint.start(config.metrics_host, config.metrics_port)
    except OSError as exc:
        error = listen_error(exc, config.metrics_host, config.metrics_port, "metrics_addr (or metrics_port)",
                             config.source)
        print(f"keyless keyserver: cannot start: {error}", file=sys.stderr)
        supervisor.close()
        reserved.close()
        return 2
    try:
        try:
            ready = supervisor.start()
        except StartInterrupted:
            return 0
        except WorkerStartError as exc:
            print(f"keyless keyserver: {exc}", file=sys.stderr)
            return 1
        key_counts = [int(fields.get("keys", "0")) for fields in ready]
        log.info("%d workers serving port %d", len(ready), port)
        if len(set(key_counts)) > 1:
            log.warning("workers loaded different numbers of keys: %s (check the key stores)", key_counts)
        print_ready_line("keyserver", port=port, metrics_port=handoff["metrics_port"], keys=min(key_counts))
        return supervisor.run()
    finally:
        endpoint.close()
        reserved.close()
