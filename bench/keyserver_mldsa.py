"""Key-server ML-DSA-65 signatures per CPU-second (opcode 0xC1, external μ) against raw ``sign_mu``, one run.

1. raw: ``MLDSA65PrivateKey.sign_mu`` over the same 64-byte μ in a loop in this process for ``--seconds``;
   signatures per CPU-second of this thread;
2. key server: a real ``keyless keyserver`` process (one worker) saturated with 0xC1 requests over a few
   mutual-TLS connections (the closed loop of ``bench/keyserver.py``); signatures per CPU-second of the
   key-server process, and per wall second.

The ratio is what the key server keeps of the raw rate. An ML-DSA-65 signature costs several times an ECDSA
P-256 one (and its rejection loop makes single signatures vary), so the protocol's fixed costs weigh less
here than in the ECDSA figure. No target: the issue asks for the figure.

    .venv/bin/python bench/keyserver_mldsa.py [--seconds 5] [--connections 4] [--window 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.keyserver as classical
from bench.keyserver import connect, saturate
from tests.support.keyserver import start_keyserver

from keyless.keys.mldsa import external_mu
from keyless.keys.ski import ski_of
from keyless.pki import create_demo_pki
from keyless.protocol import Message, Opcode, encode_message


def raw_sign_mu_rate(key: mldsa.MLDSA65PrivateKey, mu: bytes, seconds: float) -> float:
    """``sign_mu`` calls per CPU-second of this thread, for ``seconds`` of wall time."""
    count = 0
    cpu0 = time.thread_time()
    wall_end = time.monotonic() + seconds
    while time.monotonic() < wall_end:
        for _ in range(20):
            key.sign_mu(mu)
        count += 20
    return count / (time.thread_time() - cpu0)


def reply_size(pki_dir: Path, port: int, request: bytes) -> int:
    """The length of the key server's reply to ``request`` (8-byte header + body), which must succeed."""
    with connect(pki_dir, port) as sock:
        sock.sendall(request)
        data = b""
        while len(data) < 8 or len(data) < 8 + int.from_bytes(data[2:4], "big"):
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the key server closed the connection")
            data += chunk
    size = 8 + int.from_bytes(data[2:4], "big")
    if len(data) != size or b"\x11\x00\x01\xf0" not in data[:size]:  # one reply, opcode item = 0xF0 response
        raise RuntimeError("the key server did not answer one successful response")
    return size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--window", type=int, default=64, help="requests in flight per connection")
    args = parser.parse_args()
    print(f"keyless key-server ML-DSA-65 bench: {os.cpu_count()} CPUs, 1 worker, {args.connections} connections x "
          f"{args.window} in flight, {args.seconds:.0f} s per phase")
    with tempfile.TemporaryDirectory() as tmp:
        pki = create_demo_pki(Path(tmp) / "pki", site_keys=("ecdsa-p256",), pq=True)
        key = load_pem_private_key(pki.site_key("mldsa65").read_bytes(), None)
        assert isinstance(key, mldsa.MLDSA65PrivateKey)
        mu = external_mu(key.public_key(), b"\x20" * 64 + b"TLS 1.3, server CertificateVerify\x00" + bytes(32))
        raw = raw_sign_mu_rate(key, mu, args.seconds)
        request = encode_message(Message(0, Opcode.MLDSA65_SIGN_MU, mu, ski=ski_of(key.public_key())))
        with start_keyserver(pki, Path(tmp), loglevel="warning", workers=1) as server:
            # saturate() counts replies by a fixed frame size: an ML-DSA-65 reply (3309-byte signature) is
            # longer than the 1024-byte frames of ECDSA, so take its size from one real reply first.
            classical.FRAME = reply_size(pki.directory, server.port, request)
            wall, per_cpu = saturate(pki.directory, server.port, request, args.connections, args.window,
                                     args.seconds, server.proc.pid)
    print(f"ML-DSA-65 sign μ (0xC1): raw sign_mu {raw:.0f} ops/CPU-s | key server {per_cpu:.0f} ops/CPU-s "
          f"({wall:.0f} ops/s wall) | ratio {per_cpu / raw:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
