"""``keyless edge --check-config`` on the configuration production uses — certificates whose keys are on key
servers — checks each certificate as start-up does (no connection made) and reports in the usual lines."""

from __future__ import annotations

from pathlib import Path

from keyless.pki import DemoPKI
from tests.runtime.daemons import Daemon

EDGE = Daemon("edge")


def key_server_site(pki: DemoPKI, names: list[str]) -> dict[str, object]:
    return {"names": names, "chain": str(pki.site_cert("ecdsa-p256")), "key_servers": ["127.0.0.1:9"]}


def test_check_config_with_key_servers_is_ok_without_connecting(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    tls = {"client_cert": str(runtime_pki.edge_cert), "client_key": str(runtime_pki.edge_key),
           "ca": str(runtime_pki.ca)}
    path = EDGE.write(tmp_path, EDGE.good(runtime_pki, key_server_tls=tls,
                                          certificates=[key_server_site(runtime_pki, ["keyless.test"])]))
    checked = EDGE.command(path, "--check-config")
    assert checked.returncode == 0, checked
    assert checked.stdout.startswith("configuration OK: 1 certificates")
    assert "Traceback" not in checked.stderr and checked.stderr == "", checked.stderr


def test_check_config_start_up_warnings_are_report_lines(runtime_pki: DemoPKI, tmp_path: Path) -> None:
    tls = {"client_cert": str(runtime_pki.edge_cert), "client_key": str(runtime_pki.edge_key),
           "ca": str(runtime_pki.ca)}
    path = EDGE.write(tmp_path, EDGE.good(runtime_pki, key_server_tls=tls,
                                          certificates=[key_server_site(runtime_pki, ["not-covered.test"])]))
    checked = EDGE.command(path, "--check-config")
    assert checked.returncode == 0, checked
    assert checked.stderr.splitlines() == [
        f"keyless edge: warning: certificate {runtime_pki.site_cert('ecdsa-p256')} does not cover configured "
        "name not-covered.test"]
