"""A finished TLS 1.3 connection is freed by reference counting alone (no cycle for the cyclic GC)."""

from __future__ import annotations

import gc
import weakref

from tests.tls.tls13_helpers import exchange, server_config


def test_connection_is_freed_without_the_cyclic_gc() -> None:
    config = server_config()
    gc.collect()
    gc.disable()
    try:
        ex = exchange(config)
        ex.handshake()
        assert ex.conn.handshake_complete
        connection = weakref.ref(ex.conn)
        driver = weakref.ref(getattr(ex.conn, "_driver"))  # noqa: B009 - the engine's private driver
        del ex
        assert connection() is None, "the connection is kept alive by a reference cycle"
        assert driver() is None, "the handshake driver is kept alive by a reference cycle"
    finally:
        gc.enable()
