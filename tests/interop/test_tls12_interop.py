"""Our TLS 1.2 engine behind the asyncio adapter, on 127.0.0.1, against clients we did not write:
openssl s_client -tls1_2 (every suite, groups, -reconnect by ticket and by session ID), curl --tls-max 1.2
and tlslite-ng. A full handshake makes exactly one key operation; a resumed one makes none."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from keyless.tls.asyncio_adapter import TLSStream, start_tls_server
from keyless.tls.config import ServerConfig
from keyless.tls.events import HandshakeComplete
from keyless.tls.session_cache import MemorySessionCache
from keyless.tls.tickets import TicketKey, TicketKeyRing
from tests.conftest import require_tool
from tests.tls.tls12_helpers import HOSTNAME, pki, server_config

HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nkeyless"


class AdapterServer:
    """``start_tls_server`` on its own event loop in a thread; echoes lines (closing after a newline) or answers
    one HTTP request. ``completed`` collects every HandshakeComplete."""

    def __init__(
        self,
        config: ServerConfig | None,
        *,
        http: bool = False,
        make_config: Callable[[], Awaitable[ServerConfig]] | None = None,
    ) -> None:
        """``make_config`` builds the config on the server's loop (a remote key must live there)."""
        self.config = config
        self.make_config = make_config
        self.cleanups: list[Callable[[], Awaitable[None]]] = []  # run on the server's loop at exit
        self.http = http
        self.completed: list[HandshakeComplete] = []
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> AdapterServer:
        self._thread.start()
        if not self._ready.wait(30) or not self.port:
            raise RuntimeError("server did not start")
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)

    def _on_event(self, event: object) -> None:
        if isinstance(event, HandshakeComplete):
            self.completed.append(event)

    async def _handler(self, stream: TLSStream) -> None:
        received = b""
        for _ in range(1000):
            data = await stream.read()
            if not data:
                return
            received += data
            if self.http:
                if b"\r\n\r\n" in received:
                    await stream.write(HTTP_RESPONSE)
                    return
            else:
                await stream.write(data)
                if b"\n" in data:
                    return

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        if self.make_config is not None:
            self.config = await self.make_config()
        if self.config is None:
            raise RuntimeError("no server config")
        server = await start_tls_server(self._handler, "127.0.0.1", 0, self.config, on_event=self._on_event)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
        for cleanup in self.cleanups:
            await cleanup()

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._ready.set()  # a failed start must not leave __enter__ waiting
            self._loop.close()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[HandshakeComplete]:
        for _ in range(int(timeout / 0.02)):
            if len(self.completed) >= count:
                break
            threading.Event().wait(0.02)
        return list(self.completed)


def s_client(port: int, *args: str, stdin: bytes = b"hello\n", timeout: float = 30) -> str:
    openssl = require_tool("openssl")
    cmd = [
        openssl,
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-servername",
        HOSTNAME,
        "-CAfile",
        str(pki().ca_pem),
        "-verify_return_error",
        "-tls1_2",
        *args,
    ]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    return proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def ring() -> TicketKeyRing:
    return TicketKeyRing([TicketKey.generate()])


SUITES = [
    ("ecdsa-p256", "ECDHE-ECDSA-AES128-GCM-SHA256", {}),
    ("ecdsa-p256", "ECDHE-ECDSA-AES256-GCM-SHA384", {}),
    ("ecdsa-p256", "ECDHE-ECDSA-CHACHA20-POLY1305", {}),
    ("rsa-2048", "ECDHE-RSA-AES128-GCM-SHA256", {}),
    ("rsa-2048", "ECDHE-RSA-AES256-GCM-SHA384", {}),
    ("rsa-2048", "ECDHE-RSA-CHACHA20-POLY1305", {}),
    ("rsa-2048", "AES128-GCM-SHA256", {"enable_rsa_key_exchange": True}),
    ("rsa-2048", "AES256-GCM-SHA384", {"enable_rsa_key_exchange": True}),
]


@pytest.mark.parametrize(("kind", "cipher", "overrides"), SUITES, ids=[s[1] for s in SUITES])
def test_openssl_each_suite(kind: str, cipher: str, overrides: dict[str, Any]) -> None:
    with AdapterServer(server_config(kind, **overrides)) as server:
        out = s_client(server.port, "-cipher", cipher, "-brief", "-ign_eof")
        done = server.wait_for(1)
    assert "Protocol version: TLSv1.2" in out and f"Ciphersuite: {cipher}" in out, out
    assert "Verification: OK" in out and "hello" in out, out
    assert len(done) == 1 and done[0].key_operations == 1 and not done[0].resumed


@pytest.mark.parametrize(("group", "name"), [("X25519", "x25519"), ("P-256", "secp256r1"), ("P-384", "secp384r1")])
def test_openssl_each_group(group: str, name: str) -> None:
    # An RSA certificate: with ECDSA, TLS 1.2 clients also require the certificate's curve in supported_groups.
    with AdapterServer(server_config("rsa-2048")) as server:
        out = s_client(server.port, "-groups", group, "-brief")
        done = server.wait_for(1)
    assert "Protocol version: TLSv1.2" in out, out
    assert done and done[0].group == name


@pytest.mark.parametrize(
    ("kind", "cipher", "overrides"),
    [
        ("ecdsa-p256", "ECDHE-ECDSA-AES128-GCM-SHA256", {}),
        ("rsa-2048", "AES256-GCM-SHA384", {"enable_rsa_key_exchange": True}),
    ],
)
def test_openssl_reconnect_resumes_by_ticket(kind: str, cipher: str, overrides: dict[str, Any]) -> None:
    with AdapterServer(server_config(kind, ticket_keys=ring(), **overrides)) as server:
        out = s_client(server.port, "-cipher", cipher, "-reconnect", stdin=b"")
        done = server.wait_for(6)
    assert out.count("Reused, TLSv1.2") == 5, out
    assert len(done) == 6 and [d.resumed for d in done] == [False] + [True] * 5
    assert sum(d.key_operations for d in done) == 1


def test_openssl_no_ticket_resumes_by_session_id() -> None:
    config = server_config("ecdsa-p256", ticket_keys=ring(), session_cache=MemorySessionCache())
    with AdapterServer(config) as server:
        out = s_client(server.port, "-no_ticket", "-reconnect", stdin=b"")
        done = server.wait_for(6)
    assert out.count("Reused, TLSv1.2") == 5, out
    assert [d.resumed for d in done] == [False] + [True] * 5 and not done[0].session_ticket_sent
    assert sum(d.key_operations for d in done) == 1


def test_openssl_ecdsa_certificate_curve_must_be_a_client_group() -> None:
    with AdapterServer(server_config("ecdsa-p256")) as server:
        refused = s_client(server.port, "-groups", "P-384", "-brief")
        accepted = s_client(server.port, "-groups", "P-384:P-256", "-brief")
        done = server.wait_for(1)
    assert "handshake failure" in refused, refused
    assert "Protocol version: TLSv1.2" in accepted, accepted
    assert len(done) == 1 and done[0].group == "secp256r1"


def test_tlslite_without_ems_is_refused_by_default() -> None:
    from tlslite import HandshakeSettings, TLSConnection
    from tlslite.errors import TLSRemoteAlert

    with AdapterServer(server_config("ecdsa-p256")) as server:
        settings = HandshakeSettings()
        settings.minVersion = settings.maxVersion = (3, 3)
        settings.useExtendedMasterSecret = False
        settings.requireExtendedMasterSecret = False
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        tls = TLSConnection(sock)
        with pytest.raises(TLSRemoteAlert) as alert:
            tls.handshakeClientCert(settings=settings, serverName=HOSTNAME)
        sock.close()
        assert not server.wait_for(1, timeout=0.3)
    assert alert.value.description == 40  # handshake_failure


def test_curl_tls12() -> None:
    curl = require_tool("curl")
    with AdapterServer(server_config("ecdsa-p256", alpn_protocols=("http/1.1",)), http=True) as server:
        proc = subprocess.run(
            [
                curl,
                "-sS",
                "--tlsv1.2",
                "--tls-max",
                "1.2",
                "--cacert",
                str(pki().ca_pem),
                "--resolve",
                f"{HOSTNAME}:{server.port}:127.0.0.1",
                "-w",
                "\n%{ssl_verify_result}",
                f"https://{HOSTNAME}:{server.port}/",
            ],
            capture_output=True,
            timeout=30,
        )
        done = server.wait_for(1)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().splitlines() == ["keyless", "0"]
    assert done[0].version == 0x0303 and done[0].alpn == "http/1.1" and done[0].key_operations == 1


@pytest.mark.parametrize(
    ("kind", "key_exchange", "cipher", "overrides"),
    [
        ("ecdsa-p256", "ecdhe_ecdsa", "aes128gcm", {}),
        ("rsa-2048", "ecdhe_rsa", "chacha20-poly1305", {}),
        ("rsa-2048", "rsa", "aes256gcm", {"enable_rsa_key_exchange": True}),
    ],
)
def test_tlslite_client(kind: str, key_exchange: str, cipher: str, overrides: dict[str, Any]) -> None:
    from tlslite import HandshakeSettings, TLSConnection

    config = server_config(kind, ticket_keys=ring(), **overrides)
    with AdapterServer(config) as server:
        settings = HandshakeSettings()
        settings.minVersion = settings.maxVersion = (3, 3)
        settings.keyExchangeNames = [key_exchange]
        settings.cipherNames = [cipher]
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        tls = TLSConnection(sock)
        try:
            tls.handshakeClientCert(settings=settings, serverName=HOSTNAME)
            assert tls.version == (3, 3) and tls.extendedMasterSecret
            tls.write(b"from tlslite\n")
            assert tls.read(max=100) == b"from tlslite\n"
        finally:
            tls.close()
        done = server.wait_for(1)
    assert done[0].key_operations == 1 and done[0].version == 0x0303
    assert done[0].cipher_suite.startswith("TLS_RSA_" if key_exchange == "rsa" else "TLS_ECDHE_")


def test_tls13_client_gets_tls13_and_tls12_only_client_gets_tls12() -> None:
    with AdapterServer(server_config("ecdsa-p256")) as server:
        openssl = require_tool("openssl")
        out13 = subprocess.run(
            [
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{server.port}",
                "-servername",
                HOSTNAME,
                "-CAfile",
                str(pki().ca_pem),
                "-brief",
            ],
            input=b"x\n",
            capture_output=True,
            timeout=30,
        )
        out12 = s_client(server.port, "-brief")
        done = server.wait_for(2)
    assert b"Protocol version: TLSv1.3" in out13.stdout + out13.stderr
    assert "Protocol version: TLSv1.2" in out12
    assert sorted(d.version for d in done) == [0x0303, 0x0304]


def test_tls12_disabled() -> None:
    with AdapterServer(replace(server_config("ecdsa-p256"), enable_tls12=False)) as server:
        out = s_client(server.port, "-brief")
        assert not server.wait_for(1, timeout=0.3)
    assert "protocol version" in out.lower() or "alert" in out.lower(), out


def test_openssl_renegotiation_is_refused_and_extensions_are_reported() -> None:
    with AdapterServer(server_config("ecdsa-p256")) as server:
        out = s_client(server.port, "-state", stdin=b"R\n")
        done = server.wait_for(2, timeout=1)
    assert "Secure Renegotiation IS supported" in out, out  # RFC 5746 indication sent
    assert "Extended master secret: yes" in out, out  # RFC 7627
    assert "RENEGOTIATING" in out and "SSL3 alert read:warning:no renegotiation" in out, out
    assert len(done) == 1  # no second handshake happened


def test_openssl_sees_the_ocsp_staple_in_certificate_status() -> None:
    from tests.tls.test_tls13_client_auth import stapled_config

    config, _ = stapled_config()
    with AdapterServer(config) as server:
        stapled = s_client(server.port, "-status", stdin=b"")
        plain = s_client(server.port, stdin=b"")
    assert "OCSP Response Status: successful" in stapled and "Cert Status: good" in stapled, stapled
    assert "OCSP Response Status" not in plain  # only sent when asked for (RFC 6066 §8)


def test_tlslite_resumes_by_session_id() -> None:
    from tlslite import HandshakeSettings, TLSConnection

    config = server_config("ecdsa-p256", session_cache=MemorySessionCache())
    settings = HandshakeSettings()
    settings.minVersion = settings.maxVersion = (3, 3)
    with AdapterServer(config) as server:
        session = None
        for _ in range(2):
            tls = TLSConnection(socket.create_connection(("127.0.0.1", server.port), timeout=30))
            try:
                tls.handshakeClientCert(settings=settings, serverName=HOSTNAME, session=session)
                tls.write(b"again\n")
                assert tls.read(max=100) == b"again\n"
                session = tls.session
            finally:
                tls.close()
        done = server.wait_for(2)
    assert [d.resumed for d in done] == [False, True] and [d.key_operations for d in done] == [1, 0]


@pytest.mark.parametrize(
    ("kind", "cipher", "signature_type"),
    [("ecdsa-p384", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDSA"), ("ed25519", "ECDHE-ECDSA-AES128-GCM-SHA256", "ed25519"),
     ("rsa-pss", "ECDHE-RSA-AES128-GCM-SHA256", "RSA-PSS")],
)
def test_openssl_other_certificate_types(kind: str, cipher: str, signature_type: str) -> None:
    with AdapterServer(server_config(kind)) as server:
        out = s_client(server.port, "-cipher", cipher, "-brief", "-ign_eof")
        done = server.wait_for(1)
    assert "Protocol version: TLSv1.2" in out and f"Signature type: {signature_type}" in out, out
    assert "Verification: OK" in out and "hello" in out, out
    assert done and done[0].key_operations == 1


def test_concurrent_clients_mixed_key_exchanges_and_resumption() -> None:
    """Python ssl clients from 8 threads against one server: ECDHE and RSA key exchange (the RSA decryption
    runs in the adapter's thread pool), with and without resumption; every handshake must succeed."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.tls.tls12_helpers import client_context12

    config = server_config("rsa-2048", enable_rsa_key_exchange=True, ticket_keys=ring())
    contexts = [client_context12(c) for c in ("ECDHE-RSA-AES128-GCM-SHA256", "AES256-GCM-SHA384")]
    with AdapterServer(config) as server:

        def one(i: int) -> tuple[bool, str]:
            ctx = contexts[i % 2]
            session = None
            for _ in range(2):
                raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                with ctx.wrap_socket(raw, server_hostname=HOSTNAME, session=session) as tls:
                    tls.sendall(b"%d\n" % i)
                    assert tls.recv(100) == b"%d\n" % i
                    reused = tls.session_reused
                    session = tls.session
                    cipher = tls.cipher()[0]
            return reused, cipher

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(40)))
        done = server.wait_for(80)
    assert all(reused for reused, _ in results)
    assert {cipher for _, cipher in results} == {"ECDHE-RSA-AES128-GCM-SHA256", "AES256-GCM-SHA384"}
    assert len(done) == 80 and sum(d.key_operations for d in done) == 40


def _rsa_client_identity(directory: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.tls.tls13_helpers import _issue

    private = rsa.generate_private_key(65537, 2048)
    cert = _issue(private.public_key(), "rsa test client", client=True)
    cert_path, key_path = directory / "rsa-client.pem", directory / "rsa-client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize("client_sigalgs", ["RSA+SHA256", "RSA-PSS+SHA256"])
def test_openssl_client_certificate_pkcs1_and_pss(tmp_path: Path, client_sigalgs: str) -> None:
    cert, key = _rsa_client_identity(tmp_path)
    with AdapterServer(server_config("ecdsa-p256", client_ca=(pki().ca_cert,))) as server:
        out = s_client(server.port, "-cert", str(cert), "-key", str(key), "-client_sigalgs", client_sigalgs,
                       "-brief", "-ign_eof")
        done = server.wait_for(1)
    assert "Protocol version: TLSv1.2" in out and "hello" in out, out
    assert done and len(done[0].client_certificates) >= 1


def test_openssl_without_client_certificate_is_refused(tmp_path: Path) -> None:
    with AdapterServer(server_config("ecdsa-p256", client_ca=(pki().ca_cert,))) as server:
        out = s_client(server.port, "-brief")
        assert not server.wait_for(1, timeout=0.3)
    assert "handshake failure" in out, out
