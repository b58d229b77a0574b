"""``keyless edge --config edge.yaml``: the keyless TLS-terminating reverse proxy."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from keyless.cli.daemon_options import add_daemon_arguments

if TYPE_CHECKING:
    from cryptography import x509

    from keyless.edge.sites import KeyServerGroup
    from keyless.keys.base import AsyncPrivateKey


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="edge configuration file (YAML; see examples/edge.yaml)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes on one port (overrides workers:)")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="load and check the configuration and every file it names as start-up does, without binding ports "
        "or connecting to key servers, then exit (0: OK; 2: one line per problem)",
    )
    add_daemon_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.check_config:
        return check_config(args.config)
    if args.workers is not None and not 1 <= args.workers <= 256:
        print("keyless edge: --workers must be 1..256")
        return 2
    from keyless.edge.process import run as run_edge

    return run_edge(args.config, workers=args.workers, worker_child=args.worker_child, log_format=args.log_format)


def check_config(config_path: str) -> int:
    """Everything start-up checks, short of binding ports and connecting to key servers."""
    from keyless.edge.config import check_material, environment_warnings, load_config
    from keyless.edge.sites import build_sites
    from keyless.runtime.config import ConfigError, problems_of, report

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return report("edge", problems_of(exc), environment_warnings(), "", sys.stdout, sys.stderr)
    problems, warnings = check_material(config)
    warnings += environment_warnings()
    if not problems:
        try:
            with _warnings_into(warnings):  # what start-up would log, as lines of this report
                build_sites(config, group_factory=_no_connect)
        except ConfigError as exc:
            problems.append(exc.located(config.source))
        except ValueError as exc:
            problems.append(ConfigError("certificates", str(exc), "see docs/edge.md", file=config.source))
    ok = (
        f"configuration OK: {len(config.sites)} certificates, origin {config.origin.mode} "
        f"{config.origin.host}:{config.origin.port}"
    )
    return report("edge", problems, warnings, ok, sys.stdout, sys.stderr)


@contextlib.contextmanager
def _warnings_into(lines: list[str]) -> Iterator[None]:
    """The warnings keyless logs meanwhile, appended to ``lines`` instead of printed bare."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("keyless")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _no_connect(servers: object, tls: object) -> KeyServerGroup:
    """A key-server group that only stands in during --check-config: its keys are real ``RemoteKey``s
    (so a certificate is checked as start-up checks it), and no connection is ever made."""
    from keyless.client.remote_key import RemoteKey

    class Offline:
        send_client_ip = False
        send_request_id = False

        def remote_key(self, certificate: x509.Certificate) -> AsyncPrivateKey:
            return RemoteKey(self, certificate)

        async def call(self, request: object, *, timeout: float | None = None,
                       deadline: float | None = None) -> bytes:
            raise RuntimeError("--check-config connects to no key server")

        async def ping_each(self) -> dict[str, float | None]:
            return {}

        async def close(self) -> None:
            return None

    return Offline()
