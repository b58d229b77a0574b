"""Start-up of a key-server process: configuration, keys, metrics endpoint, listener, signals, workers."""

from __future__ import annotations

import asyncio
import datetime
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from keyless.keys.loader import KeyLoadError, load_keys
from keyless.keys.store import KeyStore
from keyless.metrics import start_metrics_server
from keyless.server.config import ConfigError, KeyServerConfig, find_config, load_config
from keyless.server.metrics import KeyServerMetrics
from keyless.server.service import KeyServer

log = logging.getLogger("keyless.keyserver")

READY_LINE = "keyless keyserver ready port={port} metrics_port={metrics_port} keys={keys}"


def main(config_path: str | None = None, workers: int | None = None, strict: bool | None = None,
         loglevel: str | None = None) -> int:
    try:
        path = find_config(config_path)
        config = load_config(path, workers=workers, strict=strict, loglevel=loglevel)
    except ConfigError as exc:
        print(f"keyless keyserver: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.loglevel, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("configuration from %s", path)
    if config.workers > 1:
        from keyless.server.workers import run_workers

        result: int = run_workers(config)
        return result
    return run_single(config)


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


ReadyCallback = Callable[[int, int, int], None]


def print_ready_line(port: int, metrics_port: int, keys: int) -> None:
    print(READY_LINE.format(port=port, metrics_port=metrics_port, keys=keys), flush=True)


def run_single(config: KeyServerConfig, metrics_port: int | None = None,
               on_ready: ReadyCallback = print_ready_line) -> int:
    """Run one key-server process until SIGTERM, then drain; ``on_ready(port, metrics_port, keys)``
    is called once the listener and the metrics endpoint are up."""
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

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(config, report.store, metrics, metrics_port, on_ready))
    finally:
        loop.close()


async def _serve(config: KeyServerConfig, store: KeyStore, metrics: KeyServerMetrics, metrics_port: int | None,
                 on_ready: ReadyCallback) -> int:
    try:
        server = KeyServer(config, store, metrics)
    except (OSError, ValueError) as exc:  # ssl errors are OSErrors: bad cert/key/CA file
        print(f"keyless keyserver: cannot set up TLS: {exc}", file=sys.stderr)
        return 2
    try:
        await server.start()
    except OSError as exc:
        print(f"keyless keyserver: cannot listen on {config.listen}:{config.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    try:
        http, bound_metrics_port = start_metrics_server(
            config.metrics_host, config.metrics_port if metrics_port is None else metrics_port, metrics.registry,
            {"keys_loaded": lambda: len(server.store) > 0, "listener": lambda: server.listening},
        )
    except OSError as exc:
        print(f"keyless keyserver: cannot serve metrics on {config.metrics_host}:{config.metrics_port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2

    def ready() -> None:
        log.info("listening on %s:%d (metrics on %s:%d) with %d keys", config.listen, server.port,
                 config.metrics_host, bound_metrics_port, len(server.store))
        on_ready(server.port, bound_metrics_port, len(server.store))

    try:
        await server.serve_until_signalled(ready)
    finally:
        http.shutdown()
    return 0


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


