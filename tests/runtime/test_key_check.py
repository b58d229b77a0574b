"""The edge says, once per certificate, when no configured key server holds the certificate's key."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import yaml

from keyless.pki import DemoPKI
from tests.edge.edgeproc import EdgeProcess
from tests.runtime.daemons import edge_config, intermediate_chain
from tests.support.keyserver import start_keyserver

DEADLINE = 60.0


def test_a_certificate_whose_key_no_key_server_holds_is_named_once(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    chain, _, _ = intermediate_chain(tmp_path, runtime_pki)  # its key is on no key server
    with start_keyserver(runtime_pki, tmp_path) as ks:
        servers = [f"127.0.0.1:{ks.port}"]
        document = edge_config(runtime_pki, key_server_tls={
            "client_cert": str(runtime_pki.edge_cert), "client_key": str(runtime_pki.edge_key),
            "ca": str(runtime_pki.ca)}, certificates=[
            {"names": ["keyless.test"], "chain": str(runtime_pki.site_cert("ecdsa-p256")), "key_servers": servers},
            {"names": ["other.keyless.test"], "chain": str(chain), "key_servers": servers},
        ])
        with EdgeProcess(document, tmp_path) as edge:
            def warnings() -> list[str]:
                return [line for line in edge.stderr_path.read_text().splitlines() if "holds the key" in line]

            deadline = time.monotonic() + DEADLINE
            while not warnings():
                assert time.monotonic() < deadline, edge.stderr_path.read_text()
                time.sleep(0.05)
            assert len(warnings()) == 1 and "certificates[1] (other.keyless.test)" in warnings()[0]
            assert f"no configured key server (127.0.0.1:{ks.port})" in warnings()[0]
            assert "certificates[0]" not in edge.stderr_path.read_text()
            assert edge.status("/readyz") == 200  # the key servers answer: a missing key is a warning

            edge.config_path.write_text(yaml.safe_dump(document))  # a reload checks again
            edge.signal(signal.SIGHUP)
            while len(warnings()) < 2:
                assert time.monotonic() < deadline + DEADLINE, edge.stderr_path.read_text()
                time.sleep(0.05)
