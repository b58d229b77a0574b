"""Edge (TLS 1.3 engine) CPU per full handshake: X25519 against the hybrid X25519MLKEM768, in one run.

    .venv/bin/python bench/hybrid_groups.py [--handshakes 100] [--rounds 3] [--groups x25519,x25519mlkem768]

The client is tlslite-ng (the only client here that speaks the hybrid groups; pure Python, so slow) in its own
thread over a socket pair; the server is the edge's engine (``TLSServerConnection``, ECDSA P-256 certificate,
key in process, no tickets) in this thread. Only the server's calls are timed (``time.thread_time_ns``: CPU of
this thread), so neither the client's work nor waiting counts: what remains is the handshake logic and the
server's crypto — for X25519MLKEM768 one ML-KEM-768 encapsulation (with the encapsulation key's checks) on top
of the X25519 agreement. Rounds interleave the rows; the median is reported and the ratio is against X25519
measured in the same run. The asyncio adapter and proxy around the engine cost the same for both groups.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyless.keys.local import LocalKey
from keyless.pki import create_demo_pki
from keyless.tls.config import CertifiedKey, ServerConfig, static_certificate
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import NEED_DATA, ConnectionClosed, HandshakeComplete, KeyOperationRequired

NAME = "bench.keyless.test"


def server_config(directory: Path) -> ServerConfig:
    site = create_demo_pki(directory, NAME, site_keys=("ecdsa-p256",))
    cert = x509.load_pem_x509_certificate(site.site_cert("ecdsa-p256").read_bytes())
    key = serialization.load_pem_private_key(site.site_key("ecdsa-p256").read_bytes(), None)
    return ServerConfig(certificate_callback=static_certificate(CertifiedKey(chain=(cert,), key=LocalKey(key))))


def tlslite_client(sock: socket.socket, group: str, failures: list[BaseException]) -> None:
    from tlslite.api import HandshakeSettings, TLSConnection

    settings = HandshakeSettings()
    settings.minVersion = (3, 4)
    settings.eccCurves = [group]
    settings.keyShares = [group]
    try:
        conn = TLSConnection(sock)
        conn.handshakeClientCert(serverName=NAME, settings=settings)
        conn.close()
    except BaseException as exc:  # reported by the server side
        failures.append(exc)
    finally:
        sock.close()


def one_handshake(config: ServerConfig, group: str) -> tuple[int, str]:
    """One full handshake; the server's CPU nanoseconds and the group it negotiated."""
    ours, theirs = socket.socketpair()
    failures: list[BaseException] = []
    client = threading.Thread(target=tlslite_client, args=(theirs, group, failures), daemon=True)
    client.start()
    conn = TLSServerConnection(config)
    clock = time.thread_time_ns
    spent, negotiated = 0, ""
    try:
        while not negotiated:
            data = ours.recv(65536)
            start = clock()
            conn.receive_data(data)
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, KeyOperationRequired):
                    key: Any = event.key
                    conn.complete_key_operation(event.op_id, key.sign_sync(event.scheme, event.data))
                elif isinstance(event, HandshakeComplete):
                    negotiated = event.group or "none"
                elif isinstance(event, ConnectionClosed) and not negotiated:  # close_notify after Finished is fine
                    raise RuntimeError(f"handshake failed: {event.reason} {failures}")
            out = conn.data_to_send()
            spent += clock() - start
            if out:
                ours.sendall(out)
            if not data:
                raise RuntimeError(f"client went away: {failures}")
    finally:
        ours.close()
        client.join(60)
    return spent, negotiated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--handshakes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--groups", default="x25519,x25519mlkem768", help="tlslite-ng group names, first = baseline")
    args = parser.parse_args()
    groups = args.groups.split(",")
    measurements: dict[str, list[float]] = {group: [] for group in groups}
    names: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="keyless-bench-hybrid-") as tmp:
        config = server_config(Path(tmp))
        for group in groups:  # warm-up, and a check that the group is what was negotiated
            for _ in range(5):
                _, names[group] = one_handshake(config, group)
        for round_number in range(args.rounds):
            for group in groups:  # interleaved, so background load hits every row alike
                total = sum(one_handshake(config, group)[0] for _ in range(args.handshakes))
                measurements[group].append(total / args.handshakes / 1e6)
            print(f"# round {round_number + 1}/{args.rounds}", file=sys.stderr, flush=True)
    base = statistics.median(measurements[groups[0]])
    print(f"\nTLS 1.3 engine CPU per full handshake, ECDSA P-256 key in process, no I/O "
          f"(median of {args.rounds} rounds x {args.handshakes})")
    print(f"{'group':22} {'ms CPU':>8} {'(min)':>7} {'vs ' + names[groups[0]]:>18}")
    for group in groups:
        values = measurements[group]
        median = statistics.median(values)
        print(f"{names[group]:22} {median:8.3f} {min(values):7.3f} {median / base:17.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
