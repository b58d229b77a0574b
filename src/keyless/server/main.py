"""Start-up of a key-server process: configuration, keys, metrics endpoint, listener, signals, workers.

One process (``workers: 1``) serves everything itself. With ``--workers N`` this process becomes the
supervisor (``keyless.server.workers``) and each worker runs ``run_single(..., worker=True)``: no
metrics endpoint of its own (its metrics go to the supervisor's multiprocess directory) and a
``worker ready`` line for the supervisor instead of the public ready line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
import sys
from pathlib import Path

from cryptography import x509

from keyless.keys.loader import KeyLoadError, load_keys
from keyless.keys.store import KeyStore
from keyless.runtime import loop as runtime_loop
from keyless.runtime.config import Checked, listen_error, load_for_start
from keyless.runtime.logging import configure as configure_logging
from keyless.runtime.metrics import MetricsEndpoint, daemon_registry, in_multiprocess_mode
from keyless.server.config import (
    KeyServerConfig,
    check_material,
    environment_warnings,
    find_config,
    load_config,
)
from keyless.server.metrics import KeyServerMetrics, serving_registry
from keyless.server.service import KeyServer

log = logging.getLogger("keyless.keyserver")

PUBLISH_INTERVAL = 0.5  # seconds between a worker's copies of its metrics into the shared directory


def main(config_path: str | None = None, workers: int | None = None, strict: bool | None = None,
         loglevel: str | None = None, log_format: str | None = None, worker_child: bool = False) -> int:
    """``log_format``: ``--log-format``, which overrides ``log_format:`` (None: the configuration's)."""
    path: Path | None = None

    def load() -> Checked[KeyServerConfig]:
        nonlocal path
        path = find_config(config_path)
        config = load_config(path, workers=workers, strict=strict, loglevel=loglevel, log_format=log_format)
        return config, check_material(config)

    config = load_for_start("keyserver", load, environment_warnings(), sys.stderr, warn=not worker_child)
    if config is None:
        return 2
    configure_logging("keyserver", config.loglevel, config.log_format)
    if worker_child:
        handoff = json.loads(sys.stdin.readline())
        return run_single(dataclasses.replace(config, port=int(handoff["port"])), worker=True,
                          public_metrics_port=int(handoff["metrics_port"]))
    log.info("configuration from %s", path)
    if config.workers > 1:
        from keyless.server.workers import run_workers

        argv = [sys.executable, "-m", "keyless", "keyserver", "--config", str(path), "--worker-child",
                "--workers", str(config.workers), "--log-format", config.log_format]
        if strict:
            argv.append("--strict")
        if loglevel is not None:
            argv += ["--loglevel", loglevel]
        return run_workers(config, argv)
    return run_single(config)


def run_single(config: KeyServerConfig, *, worker: bool = False, public_metrics_port: int = 0) -> int:
    """Run one key-server process until SIGTERM, then drain."""
    metrics = KeyServerMetrics()
    try:
        report = load_keys(list(config.key_sources), strict=config.strict,
                           strict_permissions=config.strict_permissions)
    except KeyLoadError as exc:
        log.error("cannot load keys (strict): %s", exc)
        print(f"keyless keyserver: {exc}", file=sys.stderr)
        return 1
    metrics.key_load_duration.observe(report.seconds)
    metrics.keys_loaded.set(len(report.store))
    if len(report.store) == 0:
        log.warning("no private keys loaded: every key operation will answer 0x02 (key not found)")
    record_certificate_expiry(metrics, config)
    return runtime_loop.run(lambda: _serve(config, report.store, metrics, worker, public_metrics_port))


async def _serve(config: KeyServerConfig, store: KeyStore, metrics: KeyServerMetrics, worker: bool,
                 public_metrics_port: int) -> int:
    try:
        server = KeyServer(config, store, metrics)
    except (OSError, ValueError) as exc:  # ssl errors are OSErrors: bad cert/key/CA file
        print(f"keyless keyserver: cannot set up TLS: {exc}", file=sys.stderr)
        return 2
    try:
        await server.start()
    except OSError as exc:
        error = listen_error(exc, config.listen, config.port, "port", config.source)
        print(f"keyless keyserver: cannot start: {error}", file=sys.stderr)
        return 2
    endpoint: MetricsEndpoint | None = None
    if not worker:
        endpoint = MetricsEndpoint(
            daemon_registry("keyserver", serving_registry(metrics.registry)),
            {"keys_loaded": lambda: len(server.store) > 0, "listener": lambda: server.listening},
        )
        try:
            public_metrics_port = endpoint.start(config.metrics_host, config.metrics_port)
        except OSError as exc:
            error = listen_error(exc, config.metrics_host, config.metrics_port, "metrics_addr (or metrics_port)",
                                 config.source)
            print(f"keyless keyserver: cannot start: {error}", file=sys.stderr)
            return 2
    publishing = _publish_periodically(metrics) if in_multiprocess_mode() else None

    def ready() -> None:
        log.info("listening on %s:%d (metrics on %s:%d) with %d keys", config.listen, server.port,
                 config.metrics_host, public_metrics_port, len(server.store))
        if worker:
            print(runtime_loop.worker_ready_line("keyserver", port=server.port, keys=len(server.store)), flush=True)
        else:
            runtime_loop.print_ready_line("keyserver", port=server.port, metrics_port=public_metrics_port,
                                          keys=len(server.store))

    try:
        await server.serve_until_signalled(ready)
    finally:
        if publishing is not None:
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
        metrics.publisher.publish()  # the last requests of a draining worker still count
        if endpoint is not None:
            endpoint.close()
    return 0


def _publish_periodically(metrics: KeyServerMetrics) -> asyncio.Task[None]:
    async def publish() -> None:
        while True:
            metrics.publisher.publish()
            await asyncio.sleep(PUBLISH_INTERVAL)

    return asyncio.get_running_loop().create_task(publish())


def record_certificate_expiry(metrics: KeyServerMetrics, config: KeyServerConfig) -> None:
    for source, path in (("auth_cert", config.auth_cert), ("ca_cert", config.ca_cert)):
        try:
            cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
        except (OSError, ValueError):
            continue
        expires = cert.not_valid_after_utc
        metrics.certificate_expiration.labels(source, cert.subject.rfc4514_string()).set(expires.timestamp())
        left = expires - datetime.datetime.now(datetime.UTC)
        if left < datetime.timedelta(days=14):
            log.warning("%s %s expires in %s", source, path, left)


