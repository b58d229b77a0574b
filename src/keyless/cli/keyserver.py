"""``keyless keyserver``: run a key server (see docs/keyserver.md)."""

from __future__ import annotations

import argparse
import sys

from keyless.cli.daemon_options import add_daemon_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="YAML configuration (default: ./gokeyless.yaml, then /etc/keyless/gokeyless.yaml)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="run N processes sharing the port (SO_REUSEPORT); overrides `workers`")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="refuse to start when any key file cannot be loaded")
    parser.add_argument("--loglevel", metavar="LEVEL",
                        help="debug, info, warning, error, critical or 0 (debug) to 5 (fatal); overrides `loglevel`")
    parser.add_argument("--check-config", action="store_true",
                        help="load and check the configuration, the TLS files and the keys as start-up does, "
                             "then exit (0: OK; 2: one line per problem)")
    add_daemon_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.check_config:
        return check_config(args)
    from keyless.server.main import main

    return main(config_path=args.config, workers=args.workers, strict=args.strict, loglevel=args.loglevel,
                log_format=args.log_format, worker_child=args.worker_child)


def check_config(args: argparse.Namespace) -> int:
    """Everything start-up checks, short of binding the ports."""
    from keyless.keys.loader import KeyLoadError, load_keys
    from keyless.runtime.config import ConfigError, problems_of, report
    from keyless.server.config import check_material, environment_warnings, find_config, load_config

    try:
        path = find_config(args.config)
        config = load_config(path, workers=args.workers, strict=args.strict, loglevel=args.loglevel,
                             log_format=args.log_format)
    except ConfigError as exc:
        return report("keyserver", problems_of(exc), environment_warnings(), "", sys.stdout, sys.stderr)
    problems = check_material(config)
    warnings = environment_warnings()
    keys = 0
    try:
        loaded = load_keys(list(config.key_sources), strict=config.strict,
                           strict_permissions=config.strict_permissions)
    except KeyLoadError as exc:
        problems.append(ConfigError("private_key_dirs", f"cannot load a key (strict: true): {exc}",
                                    "fix or remove the key file, or set strict: false", file=path))
    else:
        keys = len(loaded.store)
        warnings.extend(f"key skipped: {problem}" for problem in loaded.problems)
        if keys == 0:
            warnings.append("no private keys loaded: every key operation would answer 0x02 (key not found)")
    ok = (f"configuration OK: {keys} keys, listen {config.listen}:{config.port}, "
          f"metrics {config.metrics_host}:{config.metrics_port}")
    return report("keyserver", problems, warnings, ok, sys.stdout, sys.stderr)
