"""``keyless bench``: load-test a key server with real key operations.

Two modes:
- ``latency`` (closed loop): ``--workers`` tasks, each sending its next operation when the previous
  one is answered. Shows the latency of a server that is not saturated by us.
- ``throughput`` (open loop): operations start at ``--rate`` per second whatever the answers do, up
  to ``--max-in-flight`` outstanding (starts beyond that are counted as skipped). Latency is measured
  from when an operation was due, so a server that falls behind shows it (no coordinated omission).

A progress line is printed every second (stderr), then throughput, p50/p90/p99/max latency and a
histogram; ``--json FILE`` (``-`` for stdout) writes the same figures for scripts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from keyless.cli.options import UsageError, add_connection_arguments, format_ms, servers, tls_files

if TYPE_CHECKING:
    from keyless.cli.bench_load import LoadResult

OPERATIONS = ("sign", "decrypt", "ping")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    load = parser.add_argument_group("load")
    load.add_argument("--key-cert", metavar="FILE",
                      help="certificate or public key (PEM) of the key to use (default with --pki: "
                           "DIR/certs/ecdsa-p256.pem)")
    load.add_argument("--op", choices=OPERATIONS, default="sign", help="operation (default sign)")
    load.add_argument("--scheme", metavar="NAME",
                      help="TLS signature scheme for --op sign, e.g. rsa_pss_rsae_sha256 (default: by key type)")
    load.add_argument("--mode", choices=("latency", "throughput"), default="latency",
                      help="latency: closed loop of --workers; throughput: open loop at --rate (default latency)")
    load.add_argument("-w", "--workers", type=int, default=32, help="latency mode: concurrent workers (default 32)")
    load.add_argument("-r", "--rate", type=float, default=5000.0,
                      help="throughput mode: operations started per second (default 5000)")
    load.add_argument("--max-in-flight", type=int, default=4096,
                      help="throughput mode: cap on outstanding operations (default 4096)")
    load.add_argument("-d", "--duration", type=float, default=10.0, help="seconds of load (default 10)")
    load.add_argument("-c", "--connections", type=int, default=2, help="connections per key server (default 2)")
    load.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE ('-' for stdout)")
    load.add_argument("--quiet", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    try:
        ca, cert, key = tls_files(args)
        addresses = servers(args)
        key_cert = Path(args.key_cert) if args.key_cert else (
            Path(args.pki) / "certs" / "ecdsa-p256.pem" if args.pki else None)
        if args.op != "ping" and key_cert is None:
            raise UsageError("give --key-cert FILE (the certificate or public key of the key to use)")
        if args.duration <= 0 or args.workers < 1 or args.rate <= 0 or args.connections < 1:
            raise UsageError("--duration, --workers, --rate and --connections must be positive")
        import asyncio

        from keyless.cli.bench_load import LoadSpec, build_operation, run_load
        from keyless.client import make_ssl_context

        context = make_ssl_context(cert, key, ca)
        spec = LoadSpec(
            servers=addresses, ssl_context=context, server_name=args.server_name, timeout=args.timeout,
            connections=args.connections, mode=args.mode, workers=args.workers, rate=args.rate,
            max_in_flight=args.max_in_flight, duration=args.duration,
        )
        operation_label, make_call = build_operation(args.op, key_cert, args.scheme)
    except UsageError as exc:
        print(f"keyless bench: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"keyless bench: {exc}", file=sys.stderr)
        return 2

    describe = (f"{args.workers} workers (closed loop)" if args.mode == "latency"
                else f"{args.rate:g} ops/s (open loop, at most {args.max_in_flight} in flight)")
    print(f"keyless bench: {operation_label} on {', '.join(addresses)}, {args.connections} connection(s) per "
          f"server, {describe}, {args.duration:g} s", file=sys.stderr)
    progress = None if args.quiet else progress_printer()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        result = runner.run(run_load(spec, make_call, progress))
    if progress is not None:
        print(file=sys.stderr)
    report = result.report(operation_label, args.mode)
    # With --json - the figures go to stdout alone (for scripts); the human report moves to stderr.
    print_report(report, sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        import json

        text = json.dumps(report, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0 if result.completed > 0 and not result.errors else 1


def loop_factory() -> Any:
    """The daemons' choice (``keyless.runtime.loop``): uvloop when installed, unless ``KEYLESS_NO_UVLOOP=1``."""
    from keyless.runtime.loop import new_event_loop

    return new_event_loop


def progress_printer() -> Any:
    tty = sys.stderr.isatty()

    def show(elapsed: float, result: LoadResult) -> None:
        p50 = result.percentile(50)
        line = (f"[{elapsed:5.1f}s] {result.completed:>9,} ops  {result.completed / max(elapsed, 1e-9):>9,.0f} op/s  "
                f"p50 {format_ms(p50) if p50 is not None else '-':>9}  in flight {result.in_flight:>5}  "
                f"errors {len(result.errors)}")
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    return show


def print_report(report: dict[str, Any], out: TextIO) -> None:
    latency = report["latency_ms"]
    print(f"operation     {report['operation']}", file=out)
    print(f"mode          {report['mode']}", file=out)
    print(f"duration      {report['duration_s']:.2f} s", file=out)
    print(f"completed     {report['completed']:,}", file=out)
    print(f"errors        {report['errors']:,}" + (f"  ({report['first_error']})" if report["first_error"] else ""),
          file=out)
    if report["mode"] == "throughput":
        print(f"skipped       {report['skipped']:,}  (would have exceeded --max-in-flight)", file=out)
    print(f"throughput    {report['throughput_per_s']:,.0f} ops/s", file=out)
    if latency:
        print("latency       p50 {p50:.3f} ms   p90 {p90:.3f} ms   p99 {p99:.3f} ms   max {max:.3f} ms".format(
            **latency), file=out)
    histogram = report["histogram"]
    if histogram:
        print("histogram (latency upper bound: operations)", file=out)
        peak = max(bucket["count"] for bucket in histogram)
        for bucket in histogram:
            bound, count = bucket["le_ms"], bucket["count"]
            bar = "#" * max(1 if count else 0, round(40 * count / peak))
            print(f"  <= {bound:>9.3f} ms  {count:>9,}  {bar}", file=out)
    for server in report["servers"]:
        ewma = f"{server['latency_ewma_ms']:.3f} ms" if server["latency_ewma_ms"] is not None else "-"
        print(f"server        {server['label']}: {server['completed']:,} ops, EWMA {ewma}, "
              f"{'healthy' if server['healthy'] else 'DOWN'}", file=out)
