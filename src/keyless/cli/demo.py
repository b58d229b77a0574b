"""``keyless demo``: key server + origin + edge on loopback, real clients, and the key server's counters."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check", action="store_true", help="run the checks, print the table and exit (non-zero on failure)"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="work directory (default: a temporary one, removed at exit)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory (PKI, configs, logs)")


def run(args: argparse.Namespace) -> int:
    from keyless.edge.demo import run_demo

    return run_demo(check=args.check, directory=args.dir, keep=args.keep)
