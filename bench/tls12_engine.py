"""TLS 1.2 server CPU per full handshake without I/O: our sans-IO engine against Python's ``ssl`` (OpenSSL)
driven through ``MemoryBIO``s, in one run, by the same in-memory Python ``ssl`` client.

    .venv/bin/python bench/tls12_engine.py [--handshakes 1000] [--rounds 5]

Only the server's calls are timed (``time.thread_time_ns``: CPU of this thread), so the client's work and any
event loop are left out: what remains is handshake logic plus the server's crypto (ECDHE key generation and
agreement, the private-key operation done in-process, PRF, AEAD for the Finished messages). bench/tls.py
measures the same suites end to end through the asyncio adapter and real sockets.

Rows: ECDHE-ECDSA-AES128-GCM-SHA256 (P-256 certificate, x25519), ECDHE-RSA-AES128-GCM-SHA256 and
AES128-GCM-SHA256 RSA key exchange (RSA-2048 certificate); no tickets, no session cache.
"""

from __future__ import annotations

import argparse
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from keyless.keys.local import LocalKey
from keyless.pki import create_demo_pki
from keyless.tls.config import CertifiedKey, ServerConfig, static_certificate
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import NEED_DATA, HandshakeComplete, KeyOperationRequired

NAME = "bench.keyless.test"
SITE_KEYS = {"ecdsa": "ecdsa-p256", "rsa": "rsa-2048"}  # kind here -> keyless.pki key type
ROWS = (
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "ecdsa"),
    ("ECDHE-RSA-AES128-GCM-SHA256", "rsa"),
    ("AES128-GCM-SHA256", "rsa"),
)


def make_pki(directory: Path) -> dict[str, tuple[x509.Certificate, Any]]:
    """CA (ca.pem in ``directory``) + ECDSA P-256 and RSA-2048 certificates for NAME, from ``keyless.pki``."""
    site = create_demo_pki(directory / "site", NAME, site_keys=tuple(SITE_KEYS.values()))
    shutil.copyfile(site.ca, directory / "ca.pem")
    sites: dict[str, tuple[x509.Certificate, Any]] = {}
    for kind, key_type in SITE_KEYS.items():
        shutil.copyfile(site.site_cert(key_type), directory / f"{kind}.pem")  # for Python's ssl server
        shutil.copyfile(site.site_key(key_type), directory / f"{kind}.key")
        cert = x509.load_pem_x509_certificate(site.site_cert(key_type).read_bytes())
        sites[kind] = (cert, serialization.load_pem_private_key(site.site_key(key_type).read_bytes(), None))
    return sites


def client_context(pki: Path, cipher: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki / "ca.pem")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def new_client(ctx: ssl.SSLContext) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    return ctx.wrap_bio(incoming, outgoing, server_hostname=NAME), incoming, outgoing


def client_step(client: ssl.SSLObject) -> bool:
    try:
        client.do_handshake()
        return True
    except ssl.SSLWantReadError:
        return False


def ours_handshake(config: ServerConfig, ctx: ssl.SSLContext) -> int:
    """One handshake; returns the server's CPU nanoseconds."""
    client, to_client, from_client = new_client(ctx)
    conn = TLSServerConnection(config)
    clock = time.thread_time_ns
    spent = 0
    done = False
    for _ in range(20):
        client_done = client_step(client)
        data = from_client.read()
        start = clock()
        if data:
            conn.receive_data(data)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, KeyOperationRequired):
                key: Any = event.key
                result = key.decrypt_sync(event.data) if event.kind == "decrypt" else key.sign_sync(event.scheme,
                                                                                                    event.data)
                conn.complete_key_operation(event.op_id, result)
            elif isinstance(event, HandshakeComplete):
                done = True
            else:
                raise RuntimeError(f"unexpected event {event!r}")
        out = conn.data_to_send()
        spent += clock() - start
        if out:
            to_client.write(out)
        if done and client_done:
            return spent
    raise RuntimeError("handshake did not complete")


def python_ssl_handshake(server_ctx: ssl.SSLContext, ctx: ssl.SSLContext) -> int:
    client, to_client, from_client = new_client(ctx)
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(server_in, server_out, server_side=True)
    clock = time.thread_time_ns
    spent = 0
    server_done = False
    for _ in range(20):
        client_done = client_step(client)
        data = from_client.read()
        start = clock()
        if data:
            server_in.write(data)
        if not server_done:
            server_done = client_step(server)
        out = server_out.read()
        spent += clock() - start
        if out:
            to_client.write(out)
        if server_done and client_done:
            return spent
    raise RuntimeError("handshake did not complete")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--handshakes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keyless-bench12-") as tmp:
        pki = Path(tmp)
        sites = make_pki(pki)
        measurements: dict[str, list[float]] = {}
        runners: list[tuple[str, Callable[[], int]]] = []
        for cipher, kind in ROWS:
            cert, key = sites[kind]
            config = ServerConfig(
                certificate_callback=static_certificate(CertifiedKey(chain=(cert,), key=LocalKey(key))),
                enable_rsa_key_exchange=not cipher.startswith("ECDHE"),
            )
            server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server_ctx.load_cert_chain(pki / f"{kind}.pem", pki / f"{kind}.key")
            server_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            server_ctx.set_ciphers(cipher)
            server_ctx.options |= ssl.OP_NO_TICKET
            ctx = client_context(pki, cipher)
            runners.append((f"ours        {cipher}", lambda c=config, x=ctx: ours_handshake(c, x)))
            runners.append((f"python-ssl  {cipher}", lambda s=server_ctx, x=ctx: python_ssl_handshake(s, x)))
        for _name, run in runners:  # warm-up
            for _ in range(50):
                run()
        for round_number in range(args.rounds):
            for name, run in runners:  # interleaved, so background load hits every row alike
                total = sum(run() for _ in range(args.handshakes))
                measurements.setdefault(name, []).append(total / args.handshakes / 1e6)
            print(f"# round {round_number + 1}/{args.rounds}", file=sys.stderr, flush=True)
    print(f"\nTLS 1.2 server CPU per full handshake, no I/O (median of {args.rounds} rounds x {args.handshakes})")
    print(f"{'row':48} {'ms CPU':>8} {'(min)':>7} {'vs python-ssl':>14}")
    for cipher, _ in ROWS:
        base = statistics.median(measurements[f"python-ssl  {cipher}"])
        for who in ("ours       ", "python-ssl "):
            values = measurements[f"{who} {cipher}"]
            median = statistics.median(values)
            print(f"{who + ' ' + cipher:48} {median:8.3f} {min(values):7.3f} {median / base:13.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
