"""Record real clients' ClientHellos for the seed corpora: ``python -m tests.fuzz.record_hellos OUT_DIR``.

A plain TCP listener on 127.0.0.1 reads the first handshake record(s) a client sends, then hangs up; the
clients are the ones the interop tests run (openssl s_client for TLS 1.3 and 1.2, curl for both, headless
Chromium, tlslite-ng, Python's ssl). Each hello is saved as OUT_DIR/<client>.bin (the handshake message, as
tests/tls/data/client_hello_*.bin). A client that is not installed is skipped with a note: the committed
corpus already holds its hello.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

HOST = "keyless.test"


def _read_hello(server: socket.socket, timeout: float) -> bytes:
    server.settimeout(timeout)
    conn, _ = server.accept()
    with conn:
        conn.settimeout(timeout)
        data = b""
        message = b""
        while True:
            while len(data) < 5:
                data += conn.recv(65536) or _eof()
            length = int.from_bytes(data[3:5], "big")
            while len(data) < 5 + length:
                data += conn.recv(65536) or _eof()
            message += data[5 : 5 + length]
            data = data[5 + length :]
            if len(message) >= 4 and len(message) >= 4 + int.from_bytes(message[1:4], "big"):
                return message[: 4 + int.from_bytes(message[1:4], "big")]


def _eof() -> bytes:
    raise ConnectionError("client closed before its ClientHello was complete")


@contextlib.contextmanager
def _listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    try:
        yield server
    finally:
        server.close()


def _capture(start_client: list[str] | None, python_version: ssl.TLSVersion | None = None,
             timeout: float = 60.0) -> bytes:
    with _listener() as server:
        port = server.getsockname()[1]
        proc = None
        thread = None
        if start_client is not None:
            args = [a.replace("PORT", str(port)) for a in start_client]
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        else:
            def python_client() -> None:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                if python_version is not None:
                    ctx.maximum_version = python_version
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as raw:
                    ctx.wrap_socket(raw, server_hostname=HOST)

            thread = threading.Thread(target=python_client, daemon=True)
            thread.start()
        try:
            return _read_hello(server, timeout)
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
            if thread is not None:
                thread.join(timeout)


TLSLITE = """
import socket, sys
from tlslite.api import TLSConnection, HandshakeSettings
s = HandshakeSettings(); s.minVersion = (3, 3); s.maxVersion = (3, 4)
c = TLSConnection(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
try:
    c.handshakeClientCert(settings=s, serverName="keyless.test")
except Exception:
    pass
"""


def clients(profile: Path) -> dict[str, list[str] | None]:
    found: dict[str, list[str] | None] = {}
    if shutil.which("openssl"):
        base = ["openssl", "s_client", "-connect", "127.0.0.1:PORT", "-servername", HOST]
        found["openssl_tls13"] = [*base, "-tls1_3"]
        found["openssl_tls12"] = [*base, "-tls1_2"]
        found["openssl_groups_p384"] = [*base, "-tls1_3", "-groups", "P-384:X25519"]
    if shutil.which("curl"):
        base = ["curl", "-sk", "--resolve", f"{HOST}:PORT:127.0.0.1", f"https://{HOST}:PORT/"]
        found["curl_tls13"] = [*base, "--tlsv1.3"]
        found["curl_tls12"] = [*base, "--tlsv1.2", "--tls-max", "1.2"]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        found["chromium"] = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                             "--no-first-run", "--disable-background-networking", "--disable-component-update",
                             "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                             f"--host-resolver-rules=MAP {HOST} 127.0.0.1", "--dump-dom",
                             f"https://{HOST}:PORT/"]
    found["tlslite"] = [sys.executable, "-c", TLSLITE, "PORT"]
    found["python"] = None
    return found


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="keyless-chromium-") as profile:
        for name, args in clients(Path(profile)).items():
            try:
                hello = _capture(args)
            except (OSError, ConnectionError) as exc:
                print(f"{name}: no ClientHello ({exc})")
                continue
            (out / f"{name}.bin").write_bytes(hello)
            print(f"{name}: {len(hello)} bytes")
        hello = _capture(None, ssl.TLSVersion.TLSv1_2)
        (out / "python_tls12.bin").write_bytes(hello)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/data/hellos")))
