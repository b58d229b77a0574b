"""Peers we did not write: ``openssl s_client`` against the key server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyless.pki import DemoPKI
from keyless.protocol import Message, Opcode, encode_message
from tests.conftest import require_tool
from tests.support.keyserver import KeyServerProcess, start_keyserver


@pytest.fixture(scope="module")
def keyserver(server_pki: DemoPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyServerProcess]:
    with start_keyserver(server_pki, tmp_path_factory.mktemp("interop"), idle_timeout=2) as ks:
        yield ks


def s_client(pki: DemoPKI, port: int, *extra: str, cert: bool = True) -> subprocess.Popen[bytes]:
    openssl = require_tool("openssl", "openssl")
    args = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca), "-verify_return_error",
            "-quiet", *extra]
    if cert:
        args += ["-cert", str(pki.edge_cert), "-key", str(pki.edge_key)]
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("flags", [
    ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"),  # what the reference server speaks
    ("-tls1_3",),
])
def test_openssl_client_pings(server_pki: DemoPKI, keyserver: KeyServerProcess, flags: tuple[str, ...]) -> None:
    proc = s_client(server_pki, keyserver.port, *flags)
    ping = encode_message(Message(9, Opcode.PING, b"from openssl"))
    out, err = proc.communicate(ping, timeout=30)  # the server closes the idle connection after 2 s
    assert out == encode_message(Message(9, Opcode.PONG, b"from openssl")), err.decode(errors="replace")


def test_openssl_client_without_certificate_gets_nothing(server_pki: DemoPKI, keyserver: KeyServerProcess) -> None:
    proc = s_client(server_pki, keyserver.port, "-tls1_3", cert=False)
    out, err = proc.communicate(encode_message(Message(1, Opcode.PING, b"x")), timeout=60)  # decides failure only
    assert out == b""
    assert b"alert" in err.lower() or proc.returncode != 0


def test_example_files_exist() -> None:
    root = Path(__file__).resolve().parents[2]
    assert (root / "deploy" / "keyless-keyserver.service").read_text().count("ExecReload=/bin/kill -HUP") == 1
