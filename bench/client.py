"""End-to-end ECDSA P-256 signing through keyless: one client process -> one key-server process.

Reports, per concurrency level, the throughput and the CPU each side spends per operation: the client
(this process, ``time.process_time``) and the key server (``/proc/<pid>/stat`` utime+stime, all its
threads). Baseline measured in the same run: one in-process ECDSA P-256 SHA-256 signature with
``cryptography`` (what a key in a file would cost the edge). Target: client CPU/op < key-server CPU/op.

    .venv/bin/python bench/client.py [--duration 5] [--concurrency 1,32,256] [--no-uvloop] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from keyless.client import KeylessClient, make_ssl_context
from keyless.keys.schemes import SignatureScheme
from keyless.pki import DemoPKI, create_demo_pki

READY = re.compile(r"keyless keyserver ready port=(\d+)")
TICKS = os.sysconf("SC_CLK_TCK")


def start_keyserver(pki: DemoPKI, directory: Path) -> tuple[subprocess.Popen[str], int]:
    config = {
        "listen": "127.0.0.1", "port": 0, "metrics_addr": "127.0.0.1:0", "auth_cert": str(pki.keyserver_cert),
        "auth_key": str(pki.keyserver_key), "cloudflare_ca_cert": str(pki.ca),
        "private_key_dirs": [str(pki.keys_dir)], "loglevel": "warning",
    }
    path = directory / "keyserver.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "keyless", "keyserver", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = READY.search(line)
        if match:
            return proc, int(match.group(1))
    raise SystemExit("key server did not start")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def local_sign_baseline(seconds: float = 1.0) -> float:
    """CPU microseconds per in-process ECDSA P-256 SHA-256 signature (CPU time, like the other columns,
    so that other load on the machine does not inflate it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    algorithm = ec.ECDSA(hashes.SHA256())
    n = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        for _ in range(200):
            key.sign(b"baseline", algorithm)
        n += 200
    return (time.process_time() - start) / n * 1e6


async def measure(pki: DemoPKI, port: int, server_pid: int, concurrency: int, duration: float) -> dict[str, Any]:
    context = make_ssl_context(pki.edge_cert, pki.edge_key, pki.ca)
    cert = x509.load_pem_x509_certificate(pki.site_cert("ecdsa-p256").read_bytes())
    scheme = SignatureScheme.ECDSA_SECP256R1_SHA256
    async with KeylessClient([f"127.0.0.1:{port}"], context, server_name="localhost", connections_per_server=2,
                             health_interval=0) as client:
        key = client.remote_key(cert)
        await asyncio.gather(*(key.sign(scheme, b"warm-up") for _ in range(200)))
        done = 0
        running = True

        async def worker() -> None:
            nonlocal done
            while running:
                await key.sign(scheme, b"TLS 1.3, server CertificateVerify")
                done += 1

        client_cpu0, server_cpu0, wall0 = time.process_time(), process_cpu(server_pid), time.perf_counter()
        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(duration)
        running = False
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - wall0
        client_cpu = time.process_time() - client_cpu0
        server_cpu = process_cpu(server_pid) - server_cpu0
    return {
        "concurrency": concurrency, "ops": done, "seconds": wall, "ops_per_s": done / wall,
        "client_cpu_us_per_op": client_cpu / done * 1e6, "server_cpu_us_per_op": server_cpu / done * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,32,256")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    baseline = local_sign_baseline()
    loop_factory = None
    if not args.no_uvloop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
    with tempfile.TemporaryDirectory(prefix="keyless-bench-client-") as tmp:
        pki = create_demo_pki(Path(tmp) / "pki")
        proc, port = start_keyserver(pki, Path(tmp))
        try:
            rows = []
            for level in levels:
                with asyncio.Runner(loop_factory=loop_factory) as runner:
                    rows.append(runner.run(measure(pki, port, proc.pid, level, args.duration)))
        finally:
            proc.terminate()
            proc.wait(10)

    loop_name = "uvloop" if loop_factory else "asyncio"
    print(f"ECDSA P-256 sign through keyless, 1 client process ({loop_name}, 2 connections) -> 1 key-server process")
    print(f"baseline: in-process ECDSA P-256 SHA-256 sign = {baseline:.1f} us CPU/op (cryptography, same run)")
    print(f"{'in flight':>9}  {'ops/s':>8}  {'client CPU/op':>13}  {'server CPU/op':>13}  {'client/server':>13}  "
          f"{'client/baseline':>15}")
    for row in rows:
        ratio = row["client_cpu_us_per_op"] / row["server_cpu_us_per_op"]
        print(f"{row['concurrency']:>9}  {row['ops_per_s']:>8,.0f}  {row['client_cpu_us_per_op']:>10.1f} us  "
              f"{row['server_cpu_us_per_op']:>10.1f} us  {ratio:>13.2f}  "
              f"{row['client_cpu_us_per_op'] / baseline:>14.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline_local_sign_us": baseline, "event_loop": loop_name,
                                               "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
