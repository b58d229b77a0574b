"""A real process running ``keyless.runtime.supervisor.Supervisor`` over tiny real workers, for tests.

    python supervisor_driver.py EVENTS_FILE WORKERS MAX_CRASHES INITIAL_BACKOFF

Each worker appends ``<event> <index> <pid>`` lines to EVENTS_FILE (``start``, ``hup``, ``term``), prints its
ready line and waits for signals. The driver prints ``supervisor ready pids=<p1>,<p2>`` and exits with the
supervisor's exit code.
"""

from __future__ import annotations

import logging
import os
import sys

from keyless.runtime.supervisor import RestartPolicy, Supervisor, WorkerCommand

WORKER = r"""
import os, signal, sys
events, index = sys.argv[1], os.environ["KEYLESS_WORKER_INDEX"]
def note(what):
    with open(events, "a") as f:
        f.write(f"{what} {index} {os.getpid()}\n")
def on_hup(signum, frame):
    note("hup")
def on_term(signum, frame):
    note("term")
    sys.exit(0)
signal.signal(signal.SIGHUP, on_hup)
signal.signal(signal.SIGTERM, on_term)
note("start")
print(f"keyless test worker ready pid={os.getpid()} index={index}", flush=True)
while True:
    signal.pause()
"""


def main() -> int:
    events, workers, max_crashes, backoff = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    supervisor = Supervisor(
        "test", workers, lambda index: WorkerCommand([sys.executable, "-c", WORKER, events]),
        policy=RestartPolicy(max_crashes=max_crashes, window=600.0, initial_backoff=backoff, max_backoff=60.0),
        drain_timeout=10.0,
    )
    ready = supervisor.start()
    print(f"supervisor ready pids={','.join(fields['pid'] for fields in ready)}", flush=True)
    code = supervisor.run()
    logging.info("supervisor exits with %d (metrics dir removed: %s)", code, not os.path.exists(supervisor.metrics_dir))
    return code


if __name__ == "__main__":
    sys.exit(main())
