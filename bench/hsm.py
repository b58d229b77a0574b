"""PKCS#11 key-store operations per second against raw ``cryptography`` signing, in one run.

Creates a throw-away SoftHSM2 token in a temporary directory, generates an ECDSA P-256 and an
RSA-2048 key pair on it, loads them through ``keyless.keys.loader`` (a ``uri:`` store, as the key
server does) and calls ``execute`` in a loop on one thread for ``--seconds``; then signs in a loop
with ``cryptography`` keys of the same types. Reports ops per wall second and per CPU second and
the ratio HSM / raw. Needs ``softhsm2`` (Debian) and python-pkcs11.

    .venv/bin/python bench/hsm.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "bench-pin-1234"


def rate(call: Callable[[], object], seconds: float) -> tuple[float, float]:
    """(ops per wall second, ops per CPU second of this process) of ``call`` in a loop."""
    count = 0
    wall, cpu = time.perf_counter(), time.process_time()
    deadline = wall + seconds
    while time.perf_counter() < deadline:
        call()
        count += 1
    return count / (time.perf_counter() - wall), count / max(time.process_time() - cpu, 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    util = shutil.which("softhsm2-util")
    if util is None or not Path(MODULE).exists():
        print("softhsm2 is not installed (apt-get install softhsm2)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "tokens").mkdir()
        conf = directory / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n"
                        "log.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        subprocess.run([util, "--init-token", "--free", "--label", "bench", "--so-pin", PIN, "--pin", PIN],
                       check=True, capture_output=True)
        import pkcs11
        from pkcs11 import Attribute, KeyType

        from keyless.keys.loader import KeySource, load_keys
        from keyless.keys.pkcs11_uri import parse_pkcs11_uri
        from keyless.protocol import Opcode

        with pkcs11.lib(MODULE).get_token(token_label="bench").open(rw=True, user_pin=PIN) as session:
            session.generate_keypair(KeyType.EC, 0, store=True, label="ec", id=b"\x01",
                                     public_template={Attribute.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107")})
            session.generate_keypair(KeyType.RSA, 2048, store=True, label="rsa", id=b"\x02")
        uri = parse_pkcs11_uri(f"pkcs11:token=bench?module-path={MODULE}&pin-value={PIN}")
        report = load_keys([KeySource("uri", Path(MODULE), uri)])
        handles = {handle.kind.name: handle for handle in report.store}
        digest = os.urandom(32)
        ec_key = ec.generate_private_key(ec.SECP256R1())
        rsa_key = rsa.generate_private_key(65537, 2048)
        prehashed = utils.Prehashed(hashes.SHA256())
        pss = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
        cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            ("ECDSA P-256 (0x15)", lambda: handles["ECDSA"].execute(Opcode.ECDSA_SIGN_SHA256, digest),
             lambda: ec_key.sign(digest, ec.ECDSA(prehashed))),
            ("RSA-2048 PSS (0x35)", lambda: handles["RSA"].execute(Opcode.RSA_PSS_SIGN_SHA256, digest),
             lambda: rsa_key.sign(digest, pss, prehashed)),
        ]
        print(f"{'operation':22} {'HSM ops/s':>10} {'HSM ops/cpu-s':>14} {'raw ops/s':>10} {'ratio':>6}")
        for name, hsm_call, raw_call in cases:
            hsm_wall, hsm_cpu = rate(hsm_call, args.seconds)
            raw_wall, _ = rate(raw_call, args.seconds)
            print(f"{name:22} {hsm_wall:10.0f} {hsm_cpu:14.0f} {raw_wall:10.0f} {hsm_wall / raw_wall:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
