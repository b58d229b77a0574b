"""Our TLS 1.3 engine on a real socket against clients we did not write: openssl s_client, curl, tlslite-ng."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest

from keyless.tls.events import ApplicationData
from tests.conftest import require_tool
from tests.interop.tls13_server_driver import EngineServer
from tests.support.waiting import wait_until
from tests.tls.tls13_helpers import HOSTNAME, KEY_KINDS, pki, server_config


def s_client(port: int, *args: str, stdin: bytes = b"", timeout: float = 20) -> str:
    openssl = require_tool("openssl")
    cmd = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", HOSTNAME,
           "-CAfile", str(pki().ca_pem), "-verify_return_error", *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def ticket_config(**overrides: object) -> object:
    from keyless.tls.tickets import TicketKey, TicketKeyRing

    return server_config(ticket_keys=TicketKeyRing([TicketKey.generate()]), **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_openssl_s_client_each_key_type(kind: str) -> None:
    with EngineServer(server_config(kind)) as server:
        out = s_client(server.port, "-tls1_3", "-quiet", stdin=b"hello\n")
    assert "hello" in out, out
    assert server.connections and server.connections[0].complete is not None


def test_openssl_s_client_verifies_and_reports_tls13() -> None:
    with EngineServer(server_config()) as server:
        out = s_client(server.port, "-tls1_3", "-brief", stdin=b"")
    assert "Protocol version: TLSv1.3" in out, out
    assert "Verification: OK" in out, out


def test_openssl_s_client_resumption(tmp_path: Path) -> None:
    session = tmp_path / "session.pem"
    with EngineServer(ticket_config()) as server:
        first = s_client(server.port, "-tls1_3", "-ign_eof", "-sess_out", str(session), stdin=b"hello\n")
        assert "New, TLSv1.3" in first, first
        second = s_client(server.port, "-tls1_3", "-ign_eof", "-sess_in", str(session), stdin=b"hello\n")
        assert "Reused, TLSv1.3" in second, second
        wait_until(lambda: len([c for c in server.connections if c.complete]) >= 2, "both handshakes to complete")
    full, resumed = (c.complete for c in server.connections[:2])
    assert full is not None and not full.resumed and full.key_operations == 1 and full.session_ticket_sent
    assert resumed is not None and resumed.resumed and resumed.key_operations == 0


def test_openssl_s_client_hello_retry_request() -> None:
    # The client's first share is X25519; the server only takes P-384, so it must send a HelloRetryRequest.
    with EngineServer(server_config(groups=(0x0018,))) as server:
        out = s_client(server.port, "-tls1_3", "-groups", "X25519:P-384", "-msg", stdin=b"")
    assert "Verification: OK" in out or "Verify return code: 0 (ok)" in out, out
    assert out.count("ServerHello") >= 2 or "HelloRetryRequest" in out, out
    info = server.connections[0].complete
    assert info is not None and info.group == "secp384r1"


def _collect(stream: IO[bytes], into: bytearray) -> None:
    while chunk := stream.read1(4096):  # type: ignore[attr-defined]
        into += chunk


def test_openssl_s_client_key_update() -> None:
    # s_client sends a KeyUpdate (update_requested) for a line "K" read on its own; the next line is sent
    # only once it reported the KeyUpdate. Our reply must then decrypt under the updated keys on both sides.
    openssl = require_tool("openssl")
    with EngineServer(server_config()) as server:
        proc = subprocess.Popen(
            [openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername", HOSTNAME,
             "-CAfile", str(pki().ca_pem), "-tls1_3", "-no_ign_eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            streams: dict[str, bytearray] = {"out": bytearray(), "err": bytearray()}
            readers = [
                threading.Thread(target=_collect, args=(stream, buffer), daemon=True)
                for stream, buffer in ((proc.stdout, streams["out"]), (proc.stderr, streams["err"]))
            ]
            for reader in readers:
                reader.start()
            proc.stdin.write(b"K\n")
            proc.stdin.flush()
            wait_until(lambda: b"KEYUPDATE" in streams["err"], lambda: f"s_client's KeyUpdate: {streams['err']!r}")
            proc.stdin.write(b"after-update\n")
            proc.stdin.flush()
            proc.wait(60)  # the server closes after echoing the line; the timeout only decides failure
            for reader in readers:
                reader.join(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdin.close()
            proc.stdout.close()
            proc.stderr.close()
    out, err = streams["out"].decode(errors="replace"), streams["err"].decode(errors="replace")
    assert "KEYUPDATE" in err, err
    echoed = [e.data for e in server.connections[0].events if isinstance(e, ApplicationData)]
    assert b"after-update\n" in b"".join(echoed), echoed
    # The echo was sent after our answering KeyUpdate: the client could only read it under the new key.
    assert "after-update" in out.split("Verify return code", 1)[1], out
    assert "closed" in out and "error" not in err.lower(), err


def test_curl_fetches_over_tls13() -> None:
    curl = require_tool("curl")
    with EngineServer(server_config(alpn_protocols=("http/1.1",)), http=True) as server:
        proc = subprocess.run(
            [curl, "-sS", "--tlsv1.3", "--cacert", str(pki().ca_pem), "--resolve",
             f"{HOSTNAME}:{server.port}:127.0.0.1", f"https://{HOSTNAME}:{server.port}/"],
            capture_output=True, timeout=20,
        )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"keyless"
    info = server.connections[0].complete
    assert info is not None and info.alpn == "http/1.1" and info.sni == HOSTNAME


TLSLITE_CLIENT = r"""
import socket, sys
from tlslite.api import TLSConnection, HandshakeSettings
port = int(sys.argv[1])
settings = HandshakeSettings()
settings.minVersion = (3, 4)
settings.maxVersion = (3, 4)
conn = TLSConnection(socket.create_connection(("127.0.0.1", port)))
conn.handshakeClientCert(serverName=sys.argv[2], settings=settings)
conn.write(b"tlslite says hi")
print(conn.read(max=100).decode(), conn.version, conn.session.cipherSuite)
conn.close()
"""


@pytest.mark.parametrize("kind", ["ecdsa-p256", "rsa-2048", "ed25519"])
def test_tlslite_ng_client(kind: str) -> None:
    with EngineServer(server_config(kind)) as server:
        proc = subprocess.run([sys.executable, "-c", TLSLITE_CLIENT, str(server.port), HOSTNAME],
                              capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.startswith(b"tlslite says hi (3, 4)"), proc.stdout


def test_one_bad_connection_does_not_affect_the_next() -> None:
    with EngineServer(server_config()) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            raw.sendall(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")
            raw.settimeout(30)
            alert = raw.recv(100)
        assert alert == b"\x15\x03\x03\x00\x02\x02\x32"
        out = s_client(server.port, "-tls1_3", "-quiet", stdin=b"still fine\n")
    assert "still fine" in out


TLSLITE_RECORD_LIMIT_CLIENT = r"""
import socket, sys
from tlslite.api import TLSConnection, HandshakeSettings
from tlslite.constants import KeyUpdateMessageType
settings = HandshakeSettings()
settings.minVersion = (3, 4)
settings.record_size_limit = 256
conn = TLSConnection(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
conn.handshakeClientCert(serverName=sys.argv[2], settings=settings)
for _ in conn.send_keyupdate_request(KeyUpdateMessageType.update_requested):
    pass
payload = b"x" * 3000 + b"\n"
conn.write(payload)
got = b""
while len(got) < len(payload):
    got += conn.read(max=10000)
print(got == payload, conn._recordLayer.send_record_limit, conn._recordLayer.recv_record_limit)
conn.close()
"""


def test_tlslite_ng_record_size_limit_and_key_update() -> None:
    # tlslite-ng enforces the 256-byte limit it announced on every record we send; it also asks for a
    # KeyUpdate that we must answer.
    with EngineServer(server_config(record_size_limit=1024)) as server:
        proc = subprocess.run([sys.executable, "-c", TLSLITE_RECORD_LIMIT_CLIENT, str(server.port), HOSTNAME],
                              capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.split() == [b"True", b"1023", b"255"], proc.stdout  # limits minus the type byte


TLSLITE_RESUME_CLIENT = r"""
import socket, sys
from tlslite.api import TLSConnection, HandshakeSettings
port, name, modes = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
settings = HandshakeSettings()
settings.minVersion = (3, 4)
first = TLSConnection(socket.create_connection(("127.0.0.1", port)))
first.handshakeClientCert(serverName=name, settings=settings)
first.write(b"one\n")
first.read(max=100)
session = first.session
first.close()
settings.psk_modes = modes
second = TLSConnection(socket.create_connection(("127.0.0.1", port)))
second.handshakeClientCert(serverName=name, settings=settings, session=session)
second.write(b"two\n")
print(second.read(max=100).decode().strip(), second.resumed)
second.close()
"""


@pytest.mark.parametrize(("modes", "allow_psk_ke", "resumed"), [
    ("psk_dhe_ke", False, True),
    ("psk_ke", True, True),
    ("psk_ke", False, False),
])
def test_tlslite_ng_resumption_modes(modes: str, allow_psk_ke: bool, resumed: bool) -> None:
    with EngineServer(ticket_config(allow_psk_ke=allow_psk_ke)) as server:  # type: ignore[arg-type]
        proc = subprocess.run([sys.executable, "-c", TLSLITE_RESUME_CLIENT, str(server.port), HOSTNAME, modes],
                              capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.split() == [b"two", str(resumed).encode()], proc.stdout
    second = server.connections[1].complete
    assert second is not None and second.resumed is resumed
    assert second.key_operations == (0 if resumed else 1)
    if modes == "psk_ke" and resumed:
        assert second.group is None


@pytest.mark.parametrize("suite", ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"])
def test_openssl_s_client_each_suite(suite: str) -> None:
    with EngineServer(server_config()) as server:
        out = s_client(server.port, "-tls1_3", "-ciphersuites", suite, "-ign_eof", stdin=b"data\n")
    assert f"Cipher is {suite}" in out, out
    info = server.connections[0].complete
    assert info is not None and info.cipher_suite == suite


@pytest.mark.parametrize(("group", "name"), [("X25519", "x25519"), ("P-256", "secp256r1"), ("P-384", "secp384r1")])
def test_openssl_s_client_each_group(group: str, name: str) -> None:
    with EngineServer(server_config()) as server:
        out = s_client(server.port, "-tls1_3", "-groups", group, "-ign_eof", stdin=b"data\n")
    assert "Verify return code: 0 (ok)" in out, out
    info = server.connections[0].complete
    assert info is not None and info.group == name
