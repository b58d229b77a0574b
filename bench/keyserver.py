"""Key-server throughput per CPU-second against raw ``cryptography`` signing, measured in one run.

For ECDSA P-256 (opcode 0x15) and RSA-2048 PSS-SHA256 (opcode 0x35):

1. raw: sign the same digest in a loop in this process for ``--seconds``; ops per CPU-second,
   on one thread and on as many threads as the key server signs on at once (its RSA pool, or one
   event loop per worker for ECDSA);
2. peak: a real ``keyless keyserver`` process (one worker) under many requests in flight over a few
   mutual-TLS connections; ops per CPU-second of the key-server process (user+system time of all
   its threads, from /proc) and ops per wall second;
3. latency: the same server offered half the peak rate, paced; p50 and p99 of request→reply.

Targets (issue #2): ECDSA ratio >= 0.6 of raw per core, RSA-2048 >= 0.95. The ratio is taken
against raw signing on the same number of threads as the server signs on: on this 2-vCPU machine
two threads signing RSA-2048 at once each get about 2.5% fewer signatures per CPU-second than one
alone (shared caches and memory), a cost of the hardware that any server using both cores pays,
not overhead of the key server. The ratio against one raw thread is printed next to it.

    .venv/bin/python bench/keyserver.py [--seconds 5] [--connections 4] [--window 256]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import ssl
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import load_pem_private_key

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.keyserver import KeyServerProcess, start_keyserver

from keyless.keys.ski import ski_of
from keyless.pki import DemoPKI, create_demo_pki
from keyless.protocol import Message, Opcode, encode_message

FRAME = 1024  # every request and reply here is exactly one padded frame
DIGEST = hashlib.sha256(b"keyless bench").digest()
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system time of ``pid``'s threads and of its live child processes (``--workers``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        total += sum(process_cpu_seconds(int(child)) for child in children)
    return total


def raw_rate(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, seconds: float, threads: int = 1) -> float:
    """Signatures per CPU-second, signing in a plain loop on ``threads`` threads at once."""
    if threads > 1:
        results: list[tuple[int, float]] = []
        workers = [threading.Thread(target=lambda: results.append(_raw_loop(key, seconds))) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return sum(count for count, _ in results) / sum(cpu for _, cpu in results)
    count, cpu = _raw_loop(key, seconds)
    return count / cpu


def _raw_loop(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, seconds: float) -> tuple[int, float]:
    """(signatures, CPU-seconds of this thread) signing for ``seconds`` of wall time."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm = ec.ECDSA(utils.Prehashed(hashes.SHA256()))

        def sign() -> bytes:
            return key.sign(DIGEST, algorithm)
    else:
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        prehashed = utils.Prehashed(hashes.SHA256())

        def sign() -> bytes:
            return key.sign(DIGEST, pss, prehashed)

    count = 0
    cpu0 = time.thread_time()
    wall_end = time.monotonic() + seconds
    while time.monotonic() < wall_end:
        for _ in range(50):
            sign()
        count += 50
    return count, time.thread_time() - cpu0


def connect(pki_dir: Path, port: int) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    context.load_cert_chain(str(pki_dir / "edge.pem"), str(pki_dir / "edge-key.pem"))
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return context.wrap_socket(sock, server_hostname="localhost")


def saturate(pki_dir: Path, port: int, request: bytes, connections: int, window: int, seconds: float,
             server_pid: int) -> tuple[float, float]:
    """Closed loop, ``window`` requests in flight per connection. Returns (ops/s wall, ops per server CPU-s)."""
    socks = [connect(pki_dir, port) for _ in range(connections)]
    stop = threading.Event()
    counts = [0] * connections
    measuring = threading.Event()

    def run(index: int, sock: ssl.SSLSocket) -> None:
        sock.sendall(request * window)
        pending = b""
        while not stop.is_set():
            try:
                data = sock.recv(1 << 20)
            except (OSError, ssl.SSLError):
                return
            if not data:
                return
            pending += data
            done = len(pending) // FRAME
            pending = pending[done * FRAME :]
            if measuring.is_set():
                counts[index] += done
            if not stop.is_set():
                sock.sendall(request * done)

    threads = [threading.Thread(target=run, args=(i, s), daemon=True) for i, s in enumerate(socks)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # warm up
    measuring.set()
    cpu0, wall0 = process_cpu_seconds(server_pid), time.monotonic()
    time.sleep(seconds)
    cpu1, wall1 = process_cpu_seconds(server_pid), time.monotonic()
    measuring.clear()
    total = sum(counts)
    stop.set()
    for t in threads:  # each thread sees `stop` after its next reply (the window keeps replies coming)
        t.join(5)
    for s in socks:
        s.close()
    return total / (wall1 - wall0), total / max(cpu1 - cpu0, 1e-9)


def paced_latency(pki_dir: Path, port: int, message: Message, connections: int, rate: float,
                  seconds: float) -> tuple[float, float, int]:
    """Offer ``rate`` requests/s spread over the connections; returns (p50 ms, p99 ms, samples)."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_connection = rate / connections
    template = bytearray(encode_message(message))

    def run(index: int) -> None:
        try:
            paced(index)
        except OSError:  # ssl.SSLError included: the run is over
            return

    def paced(index: int) -> None:
        sock = connect(pki_dir, port)
        sent_at: dict[int, float] = {}
        done = threading.Event()

        def receive() -> None:
            pending = b""
            while not done.is_set() or sent_at:
                try:
                    data = sock.recv(1 << 20)
                except OSError:
                    return
                if not data:
                    return
                pending += data
                now = time.perf_counter()
                while len(pending) >= FRAME:
                    (message_id,) = struct.unpack_from(">I", pending, 4)
                    pending = pending[FRAME:]
                    started = sent_at.pop(message_id, None)
                    if started is not None:
                        with lock:
                            latencies.append(now - started)

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        interval = 1.0 / per_connection
        start = time.perf_counter()
        next_id = 0
        end = start + seconds
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            due = int((now - start) / interval) + 1
            frames = []
            while next_id < due:
                struct.pack_into(">I", template, 4, next_id)
                sent_at[next_id] = time.perf_counter()
                frames.append(bytes(template))
                next_id += 1
            if frames:
                sock.sendall(b"".join(frames))
            time.sleep(max(0.0, start + next_id * interval - time.perf_counter()))
        done.set()
        receiver.join(5)
        sock.close()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 15)
    ordered = sorted(latencies)
    if not ordered:
        return float("nan"), float("nan"), 0
    return (statistics.median(ordered) * 1e3, ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3,
            len(ordered))


def settle(server: KeyServerProcess, quiet: float = 0.3, limit: float = 10.0) -> None:
    """Wait until the server has worked off the saturation phase's backlog (its sign count stops
    moving), so the latency phase does not queue behind it."""
    deadline = time.monotonic() + limit
    last = server.sign_count()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = server.sign_count()
        if now == last:
            return
        last = now


def server_quantiles(server: KeyServerProcess) -> tuple[float, float]:
    """The key server's own p50/p99 (ms) of request read -> answer ready."""
    values = {}
    for q in ("0.5", "0.99"):
        values[q] = server.metric_value("keyless_sign_request_duration_seconds", f'quantile="{q}"') * 1e3
    return values["0.5"], values["0.99"]


def bench_one(name: str, opcode: Opcode, key_name: str, target: float, pki: DemoPKI, tmp: Path,
              args: argparse.Namespace) -> bool:
    key = load_pem_private_key(pki.site_key(key_name).read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    message = Message(0, opcode, DIGEST, ski=ski_of(key.public_key()))
    request = encode_message(message)
    # Threads the key server signs this key type on at once: the RSA pool of each worker, or the
    # event loop of each worker (ECDSA runs inline).
    if isinstance(key, rsa.RSAPrivateKey):
        signers = args.workers * (args.rsa_threads or max(1, (os.cpu_count() or 1) // args.workers))
    else:
        signers = args.workers
    raw_one = raw_rate(key, args.seconds)
    raw = raw_rate(key, args.seconds, signers) if signers > 1 else raw_one
    options = {"loglevel": "warning", "rsa_threads": args.rsa_threads, "workers": args.workers}
    with start_keyserver(pki, tmp, **options) as server:
        peak, per_cpu = saturate(pki.directory, server.port, request, args.connections, args.window, args.seconds,
                                 server.proc.pid)
    # A fresh server for the latency phase: no backlog from saturation, and its latency summary
    # covers only the paced requests.
    with start_keyserver(pki, tmp, **options) as server:
        rate = args.latency_rate or peak / 2
        p50, p99, samples = paced_latency(pki.directory, server.port, message, args.connections, rate,
                                          args.seconds)
        server_p50, server_p99 = server_quantiles(server)
    ratio = per_cpu / raw
    verdict = "ok" if ratio >= target else "BELOW TARGET"
    print(f"{name}: raw {raw:.0f} ops/CPU-s on {signers} thread(s) ({raw_one:.0f} on one) | key server "
          f"{per_cpu:.0f} ops/CPU-s ({peak:.0f} ops/s wall) | ratio {ratio:.3f} (target >= {target}) {verdict}; "
          f"against one raw thread {per_cpu / raw_one:.3f}\n"
          f"    at {'a fixed' if args.latency_rate else 'half peak'} rate ({rate:.0f}/s): "
          f"client-observed p50 {p50:.2f} ms p99 {p99:.2f} ms "
          f"({samples} samples); server-side p50 {server_p50:.2f} ms p99 {server_p99:.2f} ms")
    return ratio >= target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--window", type=int, default=256, help="requests in flight per connection")
    parser.add_argument("--only", choices=["ecdsa", "rsa"])
    parser.add_argument("--rsa-threads", type=int, default=0, help="key-server thread pool size (0: one per CPU)")
    parser.add_argument("--workers", type=int, default=1, help="key-server processes (--workers)")
    parser.add_argument("--latency-rate", type=float, default=0.0,
                        help="requests/s offered in the latency phase (default: half the measured peak); "
                             "fix it to compare two builds at the same load")
    args = parser.parse_args()
    # The load generator's threads share one GIL: a short switch interval keeps a receiving thread
    # from waiting up to 5 ms to timestamp a reply, which would inflate the measured tail latency.
    sys.setswitchinterval(0.0002)
    print(f"keyless key-server bench: {os.cpu_count()} CPUs, {args.workers} worker(s), rsa_threads={args.rsa_threads}, "
          f"{args.connections} connections x {args.window} in flight, {args.seconds:.0f} s per phase")
    with tempfile.TemporaryDirectory() as tmp:
        pki = create_demo_pki(Path(tmp) / "pki", site_keys=("ecdsa-p256", "rsa-2048"))
        ok = True
        if args.only in (None, "ecdsa"):
            ok &= bench_one("ECDSA P-256 (0x15)", Opcode.ECDSA_SIGN_SHA256, "ecdsa-p256", 0.6, pki, Path(tmp), args)
        if args.only in (None, "rsa"):
            ok &= bench_one("RSA-2048 PSS (0x35)", Opcode.RSA_PSS_SIGN_SHA256, "rsa-2048", 0.95, pki, Path(tmp),
                            args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
