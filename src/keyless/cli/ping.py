"""``keyless ping``: is a key server up, does it trust us, and does it hold our keys?

For each key server: connect with our client certificate, ping, then for every certificate or public
key found in ``--keys DIR`` ask for one signature (and, for RSA keys, one decryption) and check the
answer locally against that certificate's public key. Prints one table row per check and exits 1 if
any check failed (2 for a usage error).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from keyless.cli.options import (
    UsageError,
    add_connection_arguments,
    format_ms,
    load_public_key,
    scheme_for,
    servers,
    tls_files,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

    from keyless.client import KeylessClient

KEY_FILE_SUFFIXES = (".pem", ".crt", ".cer", ".pub")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("--keys", metavar="DIR",
                        help="directory of certificates or public keys (PEM) to test: one signature each "
                             "(default with --pki: DIR/certs)")


def run(args: argparse.Namespace) -> int:
    try:
        ca, cert, key = tls_files(args)
        addresses = servers(args)
        keys_dir = Path(args.keys) if args.keys else (Path(args.pki) / "certs" if args.pki else None)
        keys = find_public_keys(keys_dir) if keys_dir is not None else []
    except UsageError as exc:
        print(f"keyless ping: {exc}", file=sys.stderr)
        return 2
    import asyncio

    from keyless.client import make_ssl_context

    try:
        context = make_ssl_context(cert, key, ca)
    except (OSError, ValueError) as exc:
        print(f"keyless ping: cannot load the TLS files: {exc}", file=sys.stderr)
        return 2
    rows = asyncio.run(check_all(addresses, context, args.server_name, args.timeout, keys))
    print_table(rows)
    failed = sum(1 for row in rows if not row.ok)
    if keys_dir is not None and not keys:
        print(f"no certificates or public keys found in {keys_dir}", file=sys.stderr)
        return 1
    print(f"\n{len(rows) - failed} of {len(rows)} checks passed")
    return 1 if failed else 0


class Row:
    __slots__ = ("detail", "key", "latency", "ok", "operation", "server", "ski")

    def __init__(self, server: str, key: str, ski: str, operation: str, latency: float | None, ok: bool,
                 detail: str) -> None:
        self.server, self.key, self.ski, self.operation = server, key, ski, operation
        self.latency, self.ok, self.detail = latency, ok, detail


HINTS = {
    "UNKNOWN_CA": "the key server does not trust our client certificate: is --cert signed by the CA it trusts?",
    "CERTIFICATE_VERIFY_FAILED": "the key server's certificate does not chain to --ca or does not carry the name "
                                 "verified (see --server-name)",
    "Connect call failed": "nothing listens there: is the key server running, on this address and port?",
}


def with_hint(detail: str) -> str:
    for marker, hint in HINTS.items():
        if marker in detail:
            return f"{detail} ({hint})"
    return detail


def find_public_keys(directory: Path) -> list[tuple[str, CertificatePublicKeyTypes]]:
    """(file name, public key) for each certificate or public key file in ``directory``; private keys
    are skipped (ping never needs one)."""
    if not directory.is_dir():
        raise UsageError(f"--keys {directory}: not a directory")
    found: list[tuple[str, CertificatePublicKeyTypes]] = []
    for path in sorted(directory.iterdir()):
        if path.suffix not in KEY_FILE_SUFFIXES or not path.is_file():
            continue
        data = path.read_bytes()
        if b"PRIVATE KEY-----" in data:
            print(f"skipping {path.name}: holds a private key (ping needs certificates or public keys)",
                  file=sys.stderr)
            continue
        try:
            public = load_public_key(data)
        except ValueError:
            print(f"skipping {path.name}: not a PEM certificate or public key", file=sys.stderr)
            continue
        found.append((path.name, public))
    return found


async def check_all(addresses: list[str], context: object, server_name: str | None, timeout: float,
                    keys: list[tuple[str, CertificatePublicKeyTypes]]) -> list[Row]:
    from keyless.client import KeylessClient

    rows: list[Row] = []
    for address in addresses:
        client = KeylessClient([address], context, server_name=server_name, timeout=timeout,  # type: ignore[arg-type]
                               connections_per_server=1, health_interval=0, retries=0)
        try:
            rows.extend(await check_server(client, address, keys))
        finally:
            await client.close()
    return rows


async def check_server(client: KeylessClient, address: str,
                       keys: list[tuple[str, CertificatePublicKeyTypes]]) -> list[Row]:
    from keyless.client import KeylessClientError

    try:
        pings = await client.ping(timeout=client.timeout)
    except KeylessClientError as exc:
        return [Row(address, "-", "-", "ping", None, False, str(exc))]
    rows = [
        Row(label, "-", "-", "ping", result if isinstance(result, float) else None, isinstance(result, float),
            "" if isinstance(result, float) else with_hint(str(result)))
        for label, result in pings.items()
    ]
    if not any(row.ok for row in rows):
        return rows  # no point asking for signatures
    label = rows[0].server if len(rows) == 1 else address
    for name, public in keys:
        rows.extend(await check_key(client, label, name, public))
    return rows


async def check_key(client: KeylessClient, address: str, name: str, public: CertificatePublicKeyTypes) -> list[Row]:
    import os
    import time

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from keyless.client import BadOpcodeError, KeyNotFoundError
    from keyless.keys.base import KeyOperationError
    from keyless.keys.ski import ski_of
    from keyless.keys.verify import verify_signature

    try:
        remote = client.remote_key(public)
    except TypeError as exc:
        return [Row(address, name, "-", "-", None, False, str(exc))]
    ski = ski_of(public).hex()
    rows = []
    scheme = scheme_for(public)
    message = b"keyless ping " + os.urandom(32)
    start = time.perf_counter()
    try:
        signature = await remote.sign(scheme, message)
        latency = time.perf_counter() - start
        verify_signature(public, scheme, message, signature)
        rows.append(Row(address, name, ski, scheme.name.lower(), latency, True, "signature verified"))
    except KeyNotFoundError:
        rows.append(Row(address, name, ski, scheme.name.lower(), None, False, "key not found on the key server"))
        return rows
    except BadOpcodeError as exc:
        hint = " (this key server has no ML-DSA: keyless opcodes 0xC0-0xC2)" if scheme.name.startswith("MLDSA") else ""
        rows.append(Row(address, name, ski, scheme.name.lower(), None, False, f"{exc}{hint}"))
    except KeyOperationError as exc:
        rows.append(Row(address, name, ski, scheme.name.lower(), None, False, str(exc)))
    except InvalidSignature:
        rows.append(Row(address, name, ski, scheme.name.lower(), time.perf_counter() - start, False,
                        "signature does NOT verify against this public key"))
    if isinstance(public, rsa.RSAPublicKey):
        secret = b"\x03\x03" + os.urandom(46)
        start = time.perf_counter()
        try:
            block = await remote.decrypt(public.encrypt(secret, padding.PKCS1v15()))
            latency = time.perf_counter() - start
            ok = block[:2] == b"\x00\x02" and block.endswith(b"\x00" + secret)
            rows.append(Row(address, name, ski, "rsa_decrypt", latency, ok,
                            "plaintext matches" if ok else "decrypted block does not match"))
        except KeyOperationError as exc:
            rows.append(Row(address, name, ski, "rsa_decrypt", None, False, str(exc)))
    return rows


def print_table(rows: list[Row]) -> None:
    header = ("SERVER", "KEY", "SKI", "OPERATION", "LATENCY", "RESULT")
    lines = [
        (row.server, row.key, row.ski, row.operation, format_ms(row.latency) if row.latency is not None else "-",
         ("OK" if row.ok else "FAIL") + (f": {row.detail}" if row.detail else ""))
        for row in rows
    ]
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(5)]
    for line in (header, *lines):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:5])) + "  " + line[5])

