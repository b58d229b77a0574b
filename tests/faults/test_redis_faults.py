"""Redis (the edge's shared ticket keys) stopped or hung: full handshakes go on, and tickets the edge
issued keep resuming, from the keys it already holds (issue 18). Real redis-server, key server and edge."""

from __future__ import annotations

import os
import signal
import socket
import ssl
from pathlib import Path

import pytest
import redis

from keyless.pki import DemoPKI
from tests.edge.edgeproc import EdgeProcess
from tests.edge.support import OriginProcess
from tests.faults.support import HOST, edge_config, full_handshake, keyserver_label
from tests.support.keyserver import start_keyserver
from tests.support.redis_server import redis_server
from tests.support.waiting import wait_until


def handshake(port: int, context: ssl.SSLContext, session: ssl.SSLSession | None) -> tuple[ssl.SSLSession, bool]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=60) as raw,
        context.wrap_socket(raw, server_hostname=HOST, session=session) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        while tls.recv(65536):
            pass  # the whole answer: the TLS 1.3 ticket arrives before it
        assert tls.session is not None
        return tls.session, tls.session_reused


@pytest.mark.parametrize("fault", ["sigkill", "sigstop"])
def test_redis_down_or_hung_costs_no_handshake(fault_pki: DemoPKI, origin: OriginProcess, tmp_path: Path,
                                               fault: str) -> None:
    with redis_server() as redis_port, start_keyserver(fault_pki, tmp_path) as ks:
        pid = int(redis.Redis(host="127.0.0.1", port=redis_port, socket_timeout=30).info("server")["process_id"])
        config = edge_config(fault_pki, origin.port, [keyserver_label(ks.port)])
        config["tickets"] = {"redis": f"redis://127.0.0.1:{redis_port}/0"}
        try:
            with EdgeProcess(config, tmp_path) as edge:
                wait_until(lambda: edge.status("/readyz") == 200, "the edge to be ready")
                context = ssl.create_default_context(cafile=str(fault_pki.ca))
                session, _ = handshake(edge.port, context, None)
                os.kill(pid, signal.SIGKILL if fault == "sigkill" else signal.SIGSTOP)
                for _ in range(20):
                    full_handshake(edge.port, ssl.create_default_context(cafile=str(fault_pki.ca)))
                _, reused = handshake(edge.port, context, session)
                assert reused  # the ticket issued before the fault still opens
                assert edge.status("/readyz") == 200
        finally:
            if fault == "sigstop":
                os.kill(pid, signal.SIGCONT)
