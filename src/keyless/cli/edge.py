"""``keyless edge --config edge.yaml``: the keyless TLS-terminating reverse proxy."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="edge configuration file (YAML; see examples/edge.yaml)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes on one port (overrides workers:)")
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="load and check the configuration and every file it names as start-up does, without binding ports "
        "or connecting to key servers, then exit (0: OK; 2: one line per problem)",
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="text lines with the pid (default), or one JSON object per line")
    parser.add_argument("--worker-child", action="store_true", help=argparse.SUPPRESS)


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
    from keyless.edge.config import check_material, load_config
    from keyless.edge.sites import build_sites
    from keyless.runtime.config import ConfigError, problems_of, report

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return report("edge", problems_of(exc), [], "", sys.stdout, sys.stderr)
    problems, warnings = check_material(config)
    if not problems:
        try:
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


def _no_connect(servers, tls):  # type: ignore[no-untyped-def]
    """A key-server group that only stands in during --check-config (no connection is made)."""

    class Offline:
        def remote_key(self, certificate):  # type: ignore[no-untyped-def]
            return certificate.public_key()

        async def ping_each(self) -> dict[str, float | None]:
            return {}

        async def close(self) -> None:
            return None

    return Offline()
