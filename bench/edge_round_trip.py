"""What a key server's round trip adds to a handshake at the edge: one round trip per full handshake, none per
resumed one — measured, where tests/interop/test_edge_keyless.py counts the requests.

    .venv/bin/python bench/edge_round_trip.py [--handshakes 5]

A real key server, origin and edge (processes on 127.0.0.1); the edge reaches the key server through a relay
that adds no delay, then through one that adds 50 ms each way (100 ms a round trip). Printed: the median
handshake time (Python ``ssl`` client) for full and resumed handshakes through each, and the difference,
which should be about 100 ms for full handshakes (not 200: one round trip) and about 0 for resumed ones.
Exit status 1 when it is not (on a quiet machine).
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.edge.edgeproc import EdgeProcess
from tests.edge.relay import DelayRelay
from tests.edge.support import LoopThread, OriginProcess
from tests.interop.test_edge_keyless import HOST, edge_config, handshake, python_handshake, wait_ready
from tests.support.keyserver import start_keyserver

from keyless.pki import create_demo_pki


def timed(port: int, pki: object, resume_from: tuple[ssl.SSLContext, ssl.SSLSession] | None) -> float:
    started = time.perf_counter()
    handshake(port, pki, resume_from)  # type: ignore[arg-type]
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=5, help="of each kind, per relay (median taken)")
    args = parser.parse_args()
    medians: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        pki = create_demo_pki(tmp_path / "pki", HOST)
        loop = LoopThread()
        with OriginProcess() as origin, start_keyserver(pki, tmp_path) as keyserver:
            for name, one_way in (("fast", 0.0), ("slow", 0.050)):
                relay = DelayRelay(loop, ("127.0.0.1", keyserver.port), one_way)
                try:
                    config = edge_config(pki, origin.port, [f"127.0.0.1:{relay.port}"])
                    with EdgeProcess(config, tmp_path, name=f"edge-{name}") as edge:
                        wait_ready(edge)
                        context = ssl.create_default_context(cafile=str(pki.ca))
                        session, _ = python_handshake(edge.port, pki, context=context)  # warms the link
                        assert session is not None
                        full = [timed(edge.port, pki, None) for _ in range(args.handshakes)]
                        resumed = [timed(edge.port, pki, (context, session)) for _ in range(args.handshakes)]
                        medians[name] = {"full": statistics.median(full), "resumed": statistics.median(resumed)}
                finally:
                    relay.close()
        loop.stop()
    extra_full = medians["slow"]["full"] - medians["fast"]["full"]
    extra_resumed = medians["slow"]["resumed"] - medians["fast"]["resumed"]
    for name, values in medians.items():
        print(f"{name:<5} relay: full {values['full'] * 1000:7.1f} ms   resumed {values['resumed'] * 1000:7.1f} ms")
    print(f"a 100 ms round trip adds {extra_full * 1000:.1f} ms to a full handshake, {extra_resumed * 1000:.1f} ms "
          "to a resumed one")
    ok = 0.080 <= extra_full <= 0.190 and extra_resumed < 0.040
    print("OK: one round trip per full handshake, none per resumed one" if ok else "UNEXPECTED (a quiet machine?)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
