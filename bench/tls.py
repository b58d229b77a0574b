"""Server CPU per full handshake and bulk throughput per core: our engine against Python's ``ssl``, in one run.

    .venv/bin/python bench/tls.py [--handshakes 1000] [--rounds 5] [--bulk-mb 256] [--rows ours-local,...]
                                  [--uvloop] [--json]

Each row starts a separate server process (one asyncio loop, one core) and drives it from client threads in
this process (Python ``ssl``, i.e. OpenSSL, blocking sockets, TCP_NODELAY). The server process reports its
own CPU time (``time.process_time``: user + system, all threads) before and after, so client work never
counts. Rounds interleave the rows and the median is reported, so background load on a shared machine
hits every row alike; ratios are against Python ``ssl`` measured in the same run.

Rows (TLS 1.3 rows: x25519, ECDSA P-256 certificate, no session tickets on either side):
  ours-local      our engine, key in process (``LocalKey``)
  ours-remote     our engine, key behind a real ``python -m keyless keyserver`` process (skipped with a note
                  when the key server or the client library is not available); the key server's CPU is shown
  python-ssl      ``asyncio.start_server(ssl=...)`` with the key in a file — the baseline
  *-tls12-ecdhe   TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256 (ours and Python ssl)
  *-tls12-rsa     TLS 1.2 RSA key exchange, AES128-GCM-SHA256, RSA-2048 certificate
Bulk rows (TLS_AES_128_GCM_SHA256): MB the server moves per CPU-second, upload (server decrypts) and
download (server encrypts), 64 KiB application writes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
SERVER_NAME = "bench.keyless.test"
CHUNK = 65536
TLS13_ROWS = ("ours-local", "ours-remote", "python-ssl")
TLS12_ROWS = ("ours-tls12-ecdhe", "python-ssl-tls12-ecdhe", "ours-tls12-rsa", "python-ssl-tls12-rsa")
TLS12_ECDHE_CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"
TLS12_RSA_CIPHER = "AES128-GCM-SHA256"
SITE_KEYS = {"ecdsa": "ecdsa-p256", "rsa": "rsa-2048"}  # certificate name here -> keyless.pki key type


# ---- PKI ---------------------------------------------------------------------------------------------------


def make_pki(directory: Path) -> None:
    """CA + ECDSA P-256 and RSA-2048 server certificates for SERVER_NAME (``keyless.pki``), as ca.pem,
    {ecdsa,rsa}.pem and {ecdsa,rsa}.key in ``directory``."""
    from keyless.pki import create_demo_pki

    site = create_demo_pki(directory / "site", SERVER_NAME, site_keys=tuple(SITE_KEYS.values()))
    shutil.copyfile(site.ca, directory / "ca.pem")
    for name, kind in SITE_KEYS.items():
        shutil.copyfile(site.site_cert(kind), directory / f"{name}.pem")
        shutil.copyfile(site.site_key(kind), directory / f"{name}.key")


# ---- server process ----------------------------------------------------------------------------------------

Reader = Callable[[int], Awaitable[bytes]]


async def serve_one(read: Reader, write: Callable[[bytes], Awaitable[None]]) -> None:
    """The bench protocol: b"h" → b"k" (handshake only); b"u"+N → read N, b"k"; b"d"+N → send N bytes."""
    command = await read(1)
    if command == b"h":
        await write(b"k")
    elif command in (b"u", b"d"):
        header = b""
        while len(header) < 8:
            more = await read(8 - len(header))
            if not more:
                return
            header += more
        size = int.from_bytes(header, "big")
        if command == b"u":
            while size > 0:
                data = await read(CHUNK)
                if not data:
                    return
                size -= len(data)
            await write(b"k")
        else:
            block = bytes(CHUNK)
            while size > 0:
                await write(block[: min(size, CHUNK)])
                size -= CHUNK


def server_main(args: argparse.Namespace) -> None:
    mode: str = args.serve
    pki = Path(args.pki)
    cert_kind = "rsa" if mode.endswith("-rsa") else "remote-ecdsa" if mode == "ours-remote" else "ecdsa"
    if args.uvloop:
        import uvloop

        uvloop.install()

    async def run() -> None:
        if mode.startswith("python-ssl"):
            server = await start_python_ssl(mode, pki, cert_kind)
        else:
            server = await start_ours(mode, pki, cert_kind, args)
        port = server.sockets[0].getsockname()[1]
        print(f"port={port}", flush=True)
        threading.Thread(target=control_loop, daemon=True).start()
        await asyncio.Event().wait()

    asyncio.run(run())


def control_loop() -> None:
    for line in sys.stdin:
        if line.strip() == "cpu":
            print(f"cpu={time.process_time()!r}", flush=True)
        elif line.strip() == "quit":
            os._exit(0)
    os._exit(0)


async def start_python_ssl(mode: str, pki: Path, cert_kind: str) -> asyncio.Server:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / f"{cert_kind}.pem", pki / f"{cert_kind}.key")
    ctx.num_tickets = 0
    if "tls12" in mode:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(TLS12_RSA_CIPHER if cert_kind == "rsa" else TLS12_ECDHE_CIPHER)
        ctx.options |= ssl.OP_NO_TICKET

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def write(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            await serve_one(reader.read, write)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handler, HOST, 0, ssl=ctx, backlog=1024)


async def start_ours(mode: str, pki: Path, cert_kind: str, args: argparse.Namespace) -> asyncio.Server:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from keyless.tls.asyncio_adapter import TLSStream, start_tls_server
    from keyless.tls.config import CertifiedKey, ServerConfig, static_certificate

    chain = tuple(x509.load_pem_x509_certificates((pki / f"{cert_kind}.pem").read_bytes()))
    key: object
    if mode == "ours-remote":
        key = await remote_key(chain[0], args)
    else:
        from keyless.keys.local import LocalKey

        private = serialization.load_pem_private_key((pki / f"{cert_kind}.key").read_bytes(), None)
        key = LocalKey(private)  # type: ignore[arg-type]
    options: dict[str, Any] = {}
    if mode.endswith("-rsa"):
        options["enable_rsa_key_exchange"] = True
    config = ServerConfig(certificate_callback=static_certificate(CertifiedKey(chain=chain, key=key)),
                          ticket_keys=None, **options)

    async def handler(stream: TLSStream) -> None:
        try:
            await serve_one(stream.read, stream.write)
        except ConnectionError:
            pass

    return await start_tls_server(handler, HOST, 0, config)


async def remote_key(certificate: Any, args: argparse.Namespace) -> object:
    """A ``RemoteKey`` for ``certificate`` on the key server the parent started, through ``keyless.client``
    (one pooled, pipelined mutual-TLS client for the whole server process)."""
    from keyless.client import KeylessClient, make_ssl_context

    client = KeylessClient([f"{HOST}:{args.keyserver_port}"], make_ssl_context(args.edge_cert, args.edge_key,
                                                                             args.keyserver_ca))
    await client.start()
    _KEEP_ALIVE.append(client)
    return client.remote_key(certificate)


_KEEP_ALIVE: list[object] = []


# ---- client side -------------------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    port: int

    def cpu(self) -> float:
        if self.proc.stdin is None or self.proc.stdout is None:
            raise RuntimeError("no control pipe")
        self.proc.stdin.write("cpu\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line.startswith("cpu="):
            raise RuntimeError(f"server said {line!r}")
        return float(line[4:])

    def stop(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_server(mode: str, pki: Path, extra: list[str]) -> ServerProcess:
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(repo / "src"))
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", mode, "--pki", str(pki), *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("port="):
        proc.kill()
        raise RuntimeError(f"server {mode} did not start: {line!r}")
    return ServerProcess(proc, int(line[5:]))


def client_context(pki: Path, mode: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki / "ca.pem")
    if (pki / "remote-ca.pem").exists():
        ctx.load_verify_locations(pki / "remote-ca.pem")
    if "tls12" in mode:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(TLS12_RSA_CIPHER if mode.endswith("-rsa") else TLS12_ECDHE_CIPHER)
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def connect(ctx: ssl.SSLContext, port: int) -> ssl.SSLSocket:
    import socket

    raw = socket.create_connection((HOST, port))
    # Without TCP_NODELAY the client's first write after a TLS 1.3 handshake waits for the ACK of its
    # Finished (Nagle), which the server delays by 40 ms: the bench would measure timers, not TLS.
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(raw, server_hostname=SERVER_NAME)


def one_handshake(ctx: ssl.SSLContext, port: int) -> None:
    with connect(ctx, port) as tls:
        tls.sendall(b"h")
        if tls.recv(1) != b"k":
            raise RuntimeError("bad answer")


def run_handshakes(ctx: ssl.SSLContext, port: int, count: int, threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(one_handshake, ctx, port) for _ in range(count)]:
            future.result()
    return time.perf_counter() - started


def bulk(ctx: ssl.SSLContext, port: int, direction: bytes, size: int) -> None:
    with connect(ctx, port) as tls:
        tls.sendall(direction + size.to_bytes(8, "big"))
        if direction == b"u":
            block = bytes(CHUNK)
            left = size
            while left > 0:
                tls.sendall(block[: min(left, CHUNK)])
                left -= CHUNK
            if tls.recv(1) != b"k":
                raise RuntimeError("bad answer")
        else:
            left = size
            while left > 0:
                data = tls.recv(1 << 20)
                if not data:
                    raise RuntimeError("short download")
                left -= len(data)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class KeyServer:
    proc: subprocess.Popen[str]
    port: int
    extra_args: list[str]


def start_keyserver(pki: Path) -> KeyServer | str:
    """Start ``python -m keyless keyserver`` with a demo PKI on an ephemeral port; a string says why not."""
    import importlib.util

    for module in ("keyless.cli.keyserver", "keyless.pki", "keyless.client"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not available yet"
    import yaml

    from keyless.pki import create_demo_pki

    demo = create_demo_pki(pki / "demo", hostname=SERVER_NAME)
    config = {
        "listen": HOST, "port": 0, "metrics_addr": f"{HOST}:0", "auth_cert": str(demo.keyserver_cert),
        "auth_key": str(demo.keyserver_key), "cloudflare_ca_cert": str(demo.ca),
        "private_key_dirs": [str(demo.keys_dir)], "loglevel": "warning",
    }
    config_path = pki / "keyserver.yaml"
    config_path.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "keyless", "keyserver", "--config", str(config_path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready" not in line:
        proc.kill()
        proc.wait()
        return f"key server did not start: {line!r}"
    port = int(line.split("port=")[1].split()[0])
    # The remote row serves the demo's ECDSA P-256 site certificate, whose key only the key server holds.
    (pki / "remote-ecdsa.pem").write_bytes((demo.certs_dir / "ecdsa-p256.pem").read_bytes())
    (pki / "remote-ca.pem").write_bytes(Path(demo.ca).read_bytes())
    extra = ["--keyserver-port", str(port), "--keyserver-ca", str(demo.ca), "--edge-cert", str(demo.edge_cert),
             "--edge-key", str(demo.edge_key)]
    return KeyServer(proc, port, extra)


@dataclass
class Row:
    mode: str
    server: ServerProcess
    ctx: ssl.SSLContext
    keyserver_pid: int | None
    cpu_ms: list[float]
    keyserver_ms: list[float]
    wall_rate: list[float]


def measure_handshakes(row: Row, count: int, threads: int) -> None:
    ks_before = process_cpu(row.keyserver_pid) if row.keyserver_pid else 0.0
    before = row.server.cpu()
    wall = run_handshakes(row.ctx, row.server.port, count, threads)
    row.cpu_ms.append(1000 * (row.server.cpu() - before) / count)
    row.wall_rate.append(count / wall)
    if row.keyserver_pid:
        row.keyserver_ms.append(1000 * (process_cpu(row.keyserver_pid) - ks_before) / count)


def measure_bulk(row: Row, size: int) -> dict[str, float]:
    result: dict[str, float] = {}
    for direction, label in ((b"u", "upload"), (b"d", "download")):
        before = row.server.cpu()
        started = time.perf_counter()
        bulk(row.ctx, row.server.port, direction, size)
        wall = time.perf_counter() - started
        result[f"{label}_MB_per_cpu_s"] = size / 1e6 / (row.server.cpu() - before)
        result[f"{label}_MB_per_s_wall"] = size / 1e6 / wall
    return result


def client_main(args: argparse.Namespace) -> int:
    modes = [r for r in args.rows.split(",") if r]
    notes: list[str] = []
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="keyless-bench-") as tmp:
        pki = Path(tmp)
        make_pki(pki)
        keyserver: KeyServer | None = None
        if "ours-remote" in modes:
            started = start_keyserver(pki)
            if isinstance(started, str):
                notes.append(f"ours-remote skipped: {started}")
                modes.remove("ours-remote")
            else:
                keyserver = started
        try:
            for mode in modes:
                remote = keyserver is not None and mode == "ours-remote"
                extra = (keyserver.extra_args if keyserver is not None and remote else []) + (
                    ["--uvloop"] if args.uvloop else [])
                try:
                    server = start_server(mode, pki, extra)
                    ctx = client_context(pki, mode)
                    run_handshakes(ctx, server.port, min(100, args.handshakes), args.threads)  # warm-up
                except Exception as exc:
                    notes.append(f"{mode} failed to start: {type(exc).__name__}: {exc}")
                    continue
                pid = keyserver.proc.pid if keyserver is not None and remote else None
                rows.append(Row(mode, server, ctx, pid, [], [], []))
            # Rounds interleave the rows so background load on this shared machine hits them alike.
            for round_number in range(args.rounds):
                for row in rows:
                    measure_handshakes(row, args.handshakes, args.threads)
                print(f"# round {round_number + 1}/{args.rounds}: "
                      + ", ".join(f"{r.mode} {r.cpu_ms[-1]:.3f} ms" for r in rows), file=sys.stderr, flush=True)
            results: list[dict[str, Any]] = []
            for row in rows:
                result: dict[str, Any] = {
                    "row": row.mode,
                    "cpu_ms_per_handshake": statistics.median(row.cpu_ms),
                    "cpu_ms_min": min(row.cpu_ms),
                    "handshakes_per_s_wall": statistics.median(row.wall_rate),
                }
                if row.keyserver_ms:
                    result["keyserver_cpu_ms_per_handshake"] = statistics.median(row.keyserver_ms)
                if args.bulk_mb and row.mode in ("ours-local", "python-ssl"):
                    result.update(measure_bulk(row, args.bulk_mb * 1024 * 1024))
                results.append(result)
        finally:
            for row in rows:
                row.server.stop()
            if keyserver is not None:
                keyserver.proc.terminate()
                keyserver.proc.wait(timeout=10)
    report(results, notes, args)
    if args.json:
        print(json.dumps({"results": results, "notes": notes}, indent=1))
    return 0


def report(results: list[dict[str, Any]], notes: list[str], args: argparse.Namespace) -> None:
    by_row = {r["row"]: r for r in results}
    print(f"\nTLS server CPU per full handshake (median of {args.rounds} rounds x {args.handshakes} handshakes, "
          f"{args.threads} client threads, {'uvloop' if args.uvloop else 'asyncio'}; lower is better)")
    print(f"{'row':26} {'ms CPU/handshake':>17} {'(min)':>7} {'vs python-ssl':>14} {'handshakes/s wall':>18}")
    for r in results:
        baseline_name = "python-ssl" + ("-tls12" + r["row"].split("tls12")[1] if "tls12" in r["row"] else "")
        baseline = by_row.get(baseline_name)
        ratio = (f"{r['cpu_ms_per_handshake'] / baseline['cpu_ms_per_handshake']:.2f}x"
                 if baseline else "-")
        extra = (f"  (+ key server {r['keyserver_cpu_ms_per_handshake']:.3f} ms)"
                 if "keyserver_cpu_ms_per_handshake" in r else "")
        print(f"{r['row']:26} {r['cpu_ms_per_handshake']:17.3f} {r['cpu_ms_min']:7.3f} {ratio:>14} "
              f"{r['handshakes_per_s_wall']:18.0f}{extra}")
    if any("upload_MB_per_cpu_s" in r for r in results):
        print(f"\nBulk, TLS_AES_128_GCM_SHA256, {args.bulk_mb} MiB each way (MB per server CPU-second = per core)")
        print(f"{'row':26} {'upload MB/cpu-s':>16} {'download MB/cpu-s':>18} {'upload MB/s':>12} {'download MB/s':>14}")
        for r in results:
            if "upload_MB_per_cpu_s" in r:
                print(f"{r['row']:26} {r['upload_MB_per_cpu_s']:16.0f} {r['download_MB_per_cpu_s']:18.0f} "
                      f"{r['upload_MB_per_s_wall']:12.0f} {r['download_MB_per_s_wall']:14.0f}")
        ours, base = by_row.get("ours-local"), by_row.get("python-ssl")
        if ours and base and "upload_MB_per_cpu_s" in base:
            print(f"ratio ours/python-ssl per core: upload "
                  f"{ours['upload_MB_per_cpu_s'] / base['upload_MB_per_cpu_s']:.2f}x, download "
                  f"{ours['download_MB_per_cpu_s'] / base['download_MB_per_cpu_s']:.2f}x (higher is better)")
    for note in notes:
        print(f"note: {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--handshakes", type=int, default=1000, help="handshakes per row per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    parser.add_argument("--threads", type=int, default=2, help="client threads")
    parser.add_argument("--bulk-mb", type=int, default=256, help="MiB per bulk direction (0 skips bulk)")
    parser.add_argument("--rows", default=",".join(TLS13_ROWS + TLS12_ROWS))
    parser.add_argument("--uvloop", action="store_true", help="run the servers on uvloop")
    # server-process options (internal)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    parser.add_argument("--keyserver-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--keyserver-ca", help=argparse.SUPPRESS)
    parser.add_argument("--edge-cert", help=argparse.SUPPRESS)
    parser.add_argument("--edge-key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        server_main(args)
        return 0
    return client_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
