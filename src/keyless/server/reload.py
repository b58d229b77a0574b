"""SIGHUP for the key server: read the configuration again, apply what a running process can change, and
say by key what needs a restart.

Applied at once: the key sources (``private_key_dirs``, ``private_key_stores``, then the keys themselves,
by ``KeyServer.reload``), ``strict``, ``loglevel``, the timeouts, ``max_in_flight``, and the TLS files
(``auth_cert``, ``auth_key``, the CA), which new connections use while open ones keep theirs. The keys in
``RESTART_KEYS`` keep their running values, with one warning each, until the next start. A file that
no longer loads changes nothing: the error is logged and the running configuration stays.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import Callable
from typing import Protocol

from keyless.runtime.config import ConfigError, changed_keys
from keyless.runtime.logging import speaks_for_all
from keyless.server.config import KeyServerConfig, check_material, load_config

log = logging.getLogger("keyless.keyserver")

# Attribute -> configuration key, for what lives in sockets, processes or threads made at start.
RESTART_KEYS = {
    "listen": "listen", "port": "port", "metrics_host": "metrics_addr", "metrics_port": "metrics_port",
    "workers": "workers", "rsa_threads": "rsa_threads", "log_format": "log_format",
}


def reread(running: KeyServerConfig) -> KeyServerConfig:
    """The configuration file as start-up would read it now (same command-line overrides); raises ConfigError."""
    config = load_config(running.source, **dict(running.cli_overrides))
    problems = check_material(config)
    if problems:
        raise problems[0]
    return config


def merge(running: KeyServerConfig, loaded: KeyServerConfig) -> KeyServerConfig:
    """``loaded`` with the restart-only keys of ``running``; logs each of those that changed (once per daemon:
    in the first worker of ``--workers N``)."""
    for key in changed_keys(running, loaded, RESTART_KEYS) if speaks_for_all() else ():
        if key == "port" and loaded.port == 0:
            continue  # port 0 asks for any free port: the one this process holds is one
        log.warning("reload: %s changed in %s but needs a restart; keeping the running value", key, loaded.source)
    return dataclasses.replace(loaded, **{attribute: getattr(running, attribute) for attribute in RESTART_KEYS})


class Reloadable(Protocol):
    """What a reload changes in a running key server (``keyless.server.service.KeyServer``)."""

    config: KeyServerConfig
    tls_context: ssl.SSLContext


async def reload_settings(server: Reloadable, make_tls_context: Callable[[KeyServerConfig], ssl.SSLContext]) -> bool:
    """Re-read the configuration into ``server``; False (and nothing changed) if it cannot be used."""
    try:
        loaded = await asyncio.get_running_loop().run_in_executor(None, reread, server.config)
        config = merge(server.config, loaded)
        context = make_tls_context(config)
    except (ConfigError, ssl.SSLError, OSError, ValueError) as exc:
        log.error("reload failed, keeping the running configuration: %s", exc)
        return False
    server.tls_context = context
    server.config = config
    logging.getLogger().setLevel(config.loglevel)
    log.info("configuration reloaded from %s", config.source)
    return True


__all__ = ["RESTART_KEYS", "Reloadable", "merge", "reload_settings", "reread"]
