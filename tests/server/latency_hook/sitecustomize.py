"""Test-only: a known sign-latency distribution per key-server worker (never installed, never imported by
keyless itself: a test puts this directory on PYTHONPATH and sets TEST_SIGN_LATENCY_DIR).

In a ``--workers`` worker, every latency the key server records for a key operation is replaced by a draw
from a log-normal distribution whose median depends on the worker index (1 ms for worker 0, 4 ms for
worker 1, ...), and the value is appended to ``TEST_SIGN_LATENCY_DIR/worker-<index>-<pid>.txt`` so the test
knows the exact distribution over all requests of all workers.
"""

import os

_directory = os.environ.get("TEST_SIGN_LATENCY_DIR")
_index = os.environ.get("KEYLESS_WORKER_INDEX", "")

if _directory and _index.isdigit():
    import random

    from keyless.server import metrics as _metrics

    _worker = int(_index)
    _rng = random.Random(_worker)
    _median = 0.001 * 4**_worker
    _record = open(os.path.join(_directory, f"worker-{_worker}-{os.getpid()}.txt"), "a", buffering=1)  # noqa: SIM115
    _original_init = _metrics.KeyServerMetrics.__init__

    def _init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _original_init(self, *args, **kwargs)
        real_observe = self.sign_duration.observe

        def observe(seconds: float) -> None:
            value = _rng.lognormvariate(0.0, 0.5) * _median
            _record.write(f"{value!r}\n")
            real_observe(value)

        self.sign_duration.observe = observe

    _metrics.KeyServerMetrics.__init__ = _init
