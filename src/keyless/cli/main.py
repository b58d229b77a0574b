"""The ``keyless`` command: one sub-command per part of the system.

Each sub-command lives in its own module ``keyless.cli.<name>`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their
sub-command runs, so ``keyless ping`` does not pay for the TLS engine's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from keyless import __version__

SUBCOMMANDS: dict[str, str] = {
    "keyserver": "run a key server: perform private-key operations for trusted edges",
    "edge": "run a keyless TLS-terminating reverse proxy",
    "demo": "run a key server, an edge and an origin on loopback and show keyless handshakes",
    "pki": "create a throwaway PKI (CA, key-server, edge-client and site certificates)",
    "ping": "check a key server: ping it and ask one signature per key",
    "bench": "load-test a key server",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keyless", description="Keyless SSL in Python.")
    parser.add_argument("--version", action="version", version=f"keyless {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in SUBCOMMANDS.items():
        module = _load(name)
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if module is not None:
            module.add_arguments(sub_parser)
    return parser


def _load(name: str):  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module(f"keyless.cli.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"keyless.cli.{name}":
            return None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = _load(args.command)
    if module is None:
        print(f"keyless {args.command}: not available in this build", file=sys.stderr)
        return 2
    result: int = module.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
