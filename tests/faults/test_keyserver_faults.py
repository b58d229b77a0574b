"""One of two key servers fails while full TLS handshakes run through a real edge: every fault must cost
zero failed handshakes (issue 18). Real processes on 127.0.0.1: two key servers, an edge, an origin, and
Python's ssl as the TLS client; slowness and resets come from a TCP proxy the test owns."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyless.pki import DemoPKI
from tests.edge.edgeproc import EdgeProcess
from tests.edge.support import OriginProcess
from tests.faults.support import FaultProxy, HandshakeLoad, edge_config, keyserver_label
from tests.support.keyserver import KeyServerProcess, start_keyserver
from tests.support.waiting import wait_until


@pytest.fixture()
def two_keyservers(fault_pki: DemoPKI, tmp_path: Path) -> Iterator[tuple[KeyServerProcess, KeyServerProcess]]:
    a = start_keyserver(fault_pki, tmp_path)
    b = start_keyserver(fault_pki, tmp_path)
    try:
        yield a, b
    finally:
        for server in (a, b):
            if server.proc.poll() is None:
                os.kill(server.proc.pid, signal.SIGCONT)  # a test that failed while A was frozen
            server.kill()


def start_edge(pki: DemoPKI, origin: OriginProcess, ports: list[int], tmp_path: Path, **tls: object) -> EdgeProcess:
    edge = EdgeProcess(edge_config(pki, origin.port, [keyserver_label(p) for p in ports], **tls), tmp_path)
    wait_until(lambda: edge.status("/readyz") == 200, "the edge to be ready")
    return edge


def out_of_rotation(edge: EdgeProcess, port: int) -> bool:
    return edge.metric("keyless_edge_keyserver_out_of_rotation", keyserver=keyserver_label(port)) == 1.0


def test_sigstop_of_one_key_server_costs_no_handshake(
    fault_pki: DemoPKI, origin: OriginProcess, two_keyservers: tuple[KeyServerProcess, KeyServerProcess],
    tmp_path: Path,
) -> None:
    """A hung key server (connections open, nothing answers): its operations are hedged to the other
    one, it is ejected, and after SIGCONT it is probed back in and takes load again. Before hedging,
    the operations sent to it waited for the 5 s timeout and failed."""
    a, b = two_keyservers
    with start_edge(fault_pki, origin, [a.port, b.port], tmp_path) as edge, HandshakeLoad(edge, fault_pki) as load:
        load.wait_for_more(20, "handshakes before the fault")
        wait_until(lambda: a.sign_count() > 0 and b.sign_count() > 0, "both key servers to carry load")
        os.kill(a.proc.pid, signal.SIGSTOP)
        try:
            load.wait_for_more(60, "60 handshakes while A is frozen")
            wait_until(lambda: out_of_rotation(edge, a.port) or load.failures, "A to be ejected")
            assert edge.metric("keyless_edge_keyserver_ejected_total", keyserver=keyserver_label(a.port)) >= 1
        finally:
            os.kill(a.proc.pid, signal.SIGCONT)
        wait_until(lambda: not out_of_rotation(edge, a.port) or load.failures, "A to be probed back in")
        signed = a.sign_count()
        wait_until(lambda: a.sign_count() > signed + 10 or load.failures, "A to take load again")
        load.wait_for_more(20, "handshakes after the thaw")
    assert load.failures == []
    assert edge.proc.returncode is not None


def test_sigkill_and_restart_on_the_same_port_cost_no_handshake(
    fault_pki: DemoPKI, origin: OriginProcess, two_keyservers: tuple[KeyServerProcess, KeyServerProcess],
    tmp_path: Path,
) -> None:
    a, b = two_keyservers
    restarted: KeyServerProcess | None = None
    try:
        with start_edge(fault_pki, origin, [a.port, b.port], tmp_path) as edge, \
                HandshakeLoad(edge, fault_pki) as load:
            load.wait_for_more(20, "handshakes before the fault")
            a.kill()
            load.wait_for_more(40, "40 handshakes with A dead")
            restarted = start_keyserver(fault_pki, tmp_path, port=a.port)
            wait_until(lambda: (restarted is not None and restarted.sign_count() > 10) or load.failures,
                       "the restarted A to take load")
            load.wait_for_more(20, "handshakes after the restart")
        assert load.failures == []
    finally:
        if restarted is not None:
            restarted.stop()


def test_graceful_restart_on_the_same_port_costs_no_handshake(
    fault_pki: DemoPKI, origin: OriginProcess, two_keyservers: tuple[KeyServerProcess, KeyServerProcess],
    tmp_path: Path,
) -> None:
    a, b = two_keyservers
    restarted: KeyServerProcess | None = None
    try:
        with start_edge(fault_pki, origin, [a.port, b.port], tmp_path) as edge, \
                HandshakeLoad(edge, fault_pki) as load:
            load.wait_for_more(20, "handshakes before the restart")
            a.stop()  # SIGTERM: A drains and exits
            restarted = start_keyserver(fault_pki, tmp_path, port=a.port)
            wait_until(lambda: (restarted is not None and restarted.sign_count() > 10) or load.failures,
                       "the restarted A to take load")
            load.wait_for_more(20, "handshakes after the restart")
        assert load.failures == []
    finally:
        if restarted is not None:
            restarted.stop()


def test_slow_key_server_is_hedged_around(
    fault_pki: DemoPKI, origin: OriginProcess, two_keyservers: tuple[KeyServerProcess, KeyServerProcess],
    tmp_path: Path,
) -> None:
    """A's answers take 3 s more (a saturated link, an HSM stall) but come before the 5 s timeout: the
    handshakes that asked A are answered by B after the hedge delay, and A is ejected."""
    a, b = two_keyservers
    proxy = FaultProxy(("127.0.0.1", a.port))
    try:
        with start_edge(fault_pki, origin, [proxy.port, b.port], tmp_path) as edge, \
                HandshakeLoad(edge, fault_pki) as load:
            load.wait_for_more(20, "handshakes before the fault")
            # A must be carrying operations when it turns slow (the balancer favours the faster server, and
            # one that gets none has none to hedge).
            signed = a.sign_count()
            wait_until(lambda: a.sign_count() >= signed + 5 or load.failures, "A to carry load", timeout=120)
            proxy.delay = 3.0
            load.wait_for_more(60, "60 handshakes while A is slow")
            label = keyserver_label(proxy.port)
            # Generous failure-only deadlines: on a loaded machine A may be ejected (by a ping that timed out)
            # and readmitted a few times before one of its operations is hedged.
            wait_until(lambda: edge.metric("keyless_edge_keyserver_hedged_total", keyserver=label) >= 1
                       or load.failures, "an operation of A to be hedged", timeout=120)
            wait_until(lambda: edge.metric("keyless_edge_keyserver_ejected_total", keyserver=label) >= 1
                       or load.failures, "A to be ejected", timeout=120)
            wait_until(lambda: edge.metric("keyless_edge_keyserver_hedge_won_total", keyserver=keyserver_label(b.port))
                       >= 1 or load.failures, "B to win a hedge", timeout=120)
            proxy.delay = 0.0
            wait_until(lambda: not out_of_rotation(edge, proxy.port) or load.failures, "A to be let back in",
                       timeout=120)
            load.wait_for_more(20, "handshakes after A recovered")
        assert load.failures == []
    finally:
        proxy.close()


def test_connection_reset_mid_operation_costs_no_handshake(
    fault_pki: DemoPKI, origin: OriginProcess, two_keyservers: tuple[KeyServerProcess, KeyServerProcess],
    tmp_path: Path,
) -> None:
    """Five requests reach A and then their connection is reset (RST) before the answer: those
    operations are retried, nothing fails. Hedging is off here, so the retry is what is tested."""
    a, b = two_keyservers
    proxy = FaultProxy(("127.0.0.1", a.port))
    try:
        with start_edge(fault_pki, origin, [proxy.port, b.port], tmp_path, hedge_budget_percent=0) as edge, \
                HandshakeLoad(edge, fault_pki) as load:
            load.wait_for_more(20, "handshakes before the fault")
            proxy.reset_requests(5)
            wait_until(lambda: proxy.resets_done >= 5 or load.failures, "five requests to A to be cut", timeout=120)
            load.wait_for_more(20, "handshakes after the resets")
        assert load.failures == []
    finally:
        proxy.close()
