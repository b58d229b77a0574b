"""Options both daemons (``keyless keyserver``, ``keyless edge``) take, spelled and explained once."""

from __future__ import annotations

import argparse

from keyless.runtime.logging import FORMATS


def add_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=FORMATS, default=None,
                        help="text lines with the pid (the default), or one JSON object per line; "
                             "overrides log_format:")
    parser.add_argument("--worker-child", action="store_true", help=argparse.SUPPRESS)


__all__ = ["add_daemon_arguments"]
