"""Options shared by ``keyless ping`` and ``keyless bench``: which key servers, and the mutual-TLS files.

``--pki DIR`` (a directory made by ``keyless pki init DIR``) stands for ``--ca DIR/ca.pem --cert
DIR/edge.pem --key DIR/edge-key.pem`` and, for ``ping``, ``--keys DIR/certs``; explicit options win.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("key server")
    group.add_argument("-s", "--server", action="append", default=[], metavar="HOST[:PORT]",
                       help="key server address (repeatable; a name resolving to several addresses gives several "
                            "servers; port default 2407)")
    group.add_argument("--pki", metavar="DIR", help="a `keyless pki init` directory: default for --ca/--cert/--key")
    group.add_argument("--ca", metavar="FILE", help="CA certificate(s) that signed the key server's certificate")
    group.add_argument("--cert", metavar="FILE", help="our client certificate (PEM)")
    group.add_argument("--key", metavar="FILE", help="our client certificate's private key (PEM)")
    group.add_argument("--server-name", metavar="NAME",
                       help="name to verify in the key server's certificate (default: the host given)")
    group.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                       help="per-operation timeout (default 10)")


class UsageError(Exception):
    """A bad or missing option; the message says which and what to do."""


def tls_files(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """(ca, client cert, client key) from the options, or ``UsageError``."""
    pki = Path(args.pki) if args.pki else None
    ca = Path(args.ca) if args.ca else (pki / "ca.pem" if pki else None)
    cert = Path(args.cert) if args.cert else (pki / "edge.pem" if pki else None)
    key = Path(args.key) if args.key else (pki / "edge-key.pem" if pki else None)
    if ca is None or cert is None or key is None:
        raise UsageError("give --pki DIR, or all of --ca, --cert and --key")
    for label, path in (("--ca", ca), ("--cert", cert), ("--key", key)):
        if not path.is_file():
            raise UsageError(f"{label} {path}: no such file")
    return ca, cert, key


def servers(args: argparse.Namespace) -> list[str]:
    if not args.server:
        raise UsageError("give at least one --server HOST[:PORT]")
    return list(args.server)


def format_ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


__all__ = ["UsageError", "add_connection_arguments", "format_ms", "servers", "tls_files"]
