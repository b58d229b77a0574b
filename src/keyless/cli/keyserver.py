"""``keyless keyserver``: run a key server (see docs/keyserver.md)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="YAML configuration (default: ./gokeyless.yaml, then /etc/keyless/gokeyless.yaml)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="run N processes sharing the port (SO_REUSEPORT); overrides `workers`")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="refuse to start when any key file cannot be loaded")
    parser.add_argument("--loglevel", metavar="LEVEL", help="debug, info, warning, error; overrides `loglevel`")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="text lines with the pid (default), or one JSON object per line")
    parser.add_argument("--worker-child", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from keyless.server.main import main

    return main(config_path=args.config, workers=args.workers, strict=args.strict, loglevel=args.loglevel,
                log_format=args.log_format, worker_child=args.worker_child)
