"""``keyless pki init DIR``: a demo CA, key-server and edge certificates, and site keys."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pki_command", metavar="ACTION")
    init = sub.add_parser("init", help="write a demo PKI into DIR")
    init.add_argument("directory", metavar="DIR")
    init.add_argument("--hostname", default="keyless.test", help="host name of the site certificates")
    init.add_argument("--pq", action="store_true",
                      help="also an ML-DSA-65 CA and ML-DSA-44/65/87 site keys and certificates (post-quantum)")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "pki_command", None) != "init":
        print("usage: keyless pki init DIR [--hostname NAME] [--pq]")
        return 2
    from pathlib import Path

    from keyless.pki import create_demo_pki

    pki = create_demo_pki(Path(args.directory), args.hostname, pq=args.pq)
    print(f"demo PKI for {pki.hostname} written to {pki.directory}")
    print(f"  CA:               {pki.ca}")
    print(f"  key server:       {pki.keyserver_cert}")
    print(f"  edge client cert: {pki.edge_cert}")
    print(f"  site keys:        {pki.keys_dir}")
    print(f"  site certs:       {pki.certs_dir}")
    if args.pq:
        print(f"  ML-DSA CA:        {pki.pq_ca} (signs certs/mldsa*.pem)")
    print(f"start a key server: keyless keyserver --config {pki.keyserver_config}")
    return 0
