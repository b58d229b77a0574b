"""``keyless edge --config edge.yaml``: the keyless TLS-terminating reverse proxy."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="edge configuration file (YAML; see examples/edge.yaml)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes on one port (overrides workers:)")
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="text lines with the pid (default), or one JSON object per line")
    parser.add_argument("--worker-child", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.check_config:
        from keyless.edge.config import ConfigError, load_config
        from keyless.edge.sites import build_sites

        try:
            config = load_config(args.config)
            build_sites(config, group_factory=_no_connect)
        except (ConfigError, ValueError) as exc:
            print(f"keyless edge: configuration error: {exc}")
            return 2
        print(
            f"configuration OK: {len(config.sites)} certificates, origin {config.origin.mode} "
            f"{config.origin.host}:{config.origin.port}"
        )
        return 0
    if args.workers is not None and not 1 <= args.workers <= 256:
        print("keyless edge: --workers must be 1..256")
        return 2
    from keyless.edge.process import run as run_edge

    return run_edge(args.config, workers=args.workers, worker_child=args.worker_child, log_format=args.log_format)


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
