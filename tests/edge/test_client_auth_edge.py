"""Issue 12 §2: client certificates on a real edge process (mTLS termination, as nginx ``ssl_verify_client``).

Real clients — curl and ``openssl s_client`` — with and without a client certificate: the right CA (directly
and through an intermediate), a wrong CA, expired, a server-only certificate, too deep for ``depth``; TLS 1.3
and 1.2; full and resumed. The origin is a raw socket that echoes the request head exactly as it arrived, so a
forged identity header could not hide behind a real one. Each case checks the RFC alert by name and its count
in ``keyless_edge_client_auth``.
"""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.conftest import require_tool
from tests.edge.certs import SitePKI, make_pki
from tests.edge.client_pki import ClientPKI, make_client_pki
from tests.edge.edgeproc import EdgeProcess


class RawOrigin:
    """An HTTP/1.1 origin answering each request with its head, byte for byte (keep-alive unless asked to close)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                body = head + b"\r\n"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
                if b"\r\nconnection: close" in head.lower():
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SitePKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> ClientPKI:
    return make_client_pki(tmp_path_factory.mktemp("clients"))


@pytest.fixture(scope="module")
def origin() -> Iterator[RawOrigin]:
    server = RawOrigin()
    yield server
    server.close()


def edge_config(pki: SitePKI, clients: ClientPKI, origin_port: int, **optional: Any) -> dict[str, Any]:
    def site(name: str, **extra: Any) -> dict[str, Any]:
        return {"names": [name], "chain": str(pki.chain("ecdsa")), "key_file": str(pki.key("ecdsa")), **extra}

    return {
        "listen": [{"address": "127.0.0.1", "port": 0}],
        "metrics_addr": "127.0.0.1:0",
        "certificates": [
            site("open.edge.test", default=True),
            site("required.edge.test", client_auth={"mode": "required", "ca": str(clients.ca)}),
            site("optional.edge.test", client_auth={"mode": "optional", "ca": str(clients.ca), "forward": "X-Mtls-",
                                                    **optional}),
            site("shallow.edge.test", client_auth={"mode": "required", "ca": str(clients.ca), "depth": 0}),
        ],
        "origin": {"mode": "http", "address": f"127.0.0.1:{origin_port}"},
        "limits": {"drain_timeout": 1},
    }


@pytest.fixture(scope="module")
def edge(
    pki: SitePKI, clients: ClientPKI, origin: RawOrigin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EdgeProcess]:
    with EdgeProcess(edge_config(pki, clients, origin.port), tmp_path_factory.mktemp("edge")) as process:
        yield process


VERSIONS = {"1.3": ("-tls1_3",), "1.2": ("-tls1_2",)}
CURL_VERSIONS = {"1.3": ("--tlsv1.3",), "1.2": ("--tlsv1.2", "--tls-max", "1.2")}


def curl(edge: EdgeProcess, pki: SitePKI, host: str, *args: str) -> subprocess.CompletedProcess[str]:
    binary = require_tool("curl")
    return subprocess.run(
        [binary, "-sS", "--cacert", str(pki.ca), "--resolve", f"{host}:{edge.port}:127.0.0.1", *args,
         f"https://{host}:{edge.port}/path"],
        capture_output=True, text=True, timeout=60,
    )


def with_cert(clients: ClientPKI, name: str) -> tuple[str, ...]:
    return ("--cert", str(clients.cert(name)), "--key", str(clients.key(name)))


def s_client(edge: EdgeProcess, pki: SitePKI, host: str, *args: str, request_host: str | None = None) -> str:
    openssl = require_tool("openssl")
    request = f"GET / HTTP/1.1\r\nHost: {request_host or host}\r\nConnection: close\r\n\r\n"
    result = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{edge.port}", "-servername", host, "-CAfile", str(pki.ca),
         "-verify_return_error", "-ign_eof", *args],
        input=request.encode(), capture_output=True, timeout=30,
    )
    return result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")


def openssl_cert(clients: ClientPKI, name: str) -> tuple[str, ...]:
    """-cert takes the leaf only: the intermediate (carol's) goes in with -cert_chain."""
    path = str(clients.cert(name))
    return ("-cert", path, "-cert_chain", path, "-key", str(clients.key(name)))


def fingerprint(clients: ClientPKI, name: str) -> str:
    return hashlib.sha256(clients.leaf(name).public_bytes(Encoding.DER)).hexdigest()


def identity_lines(head: str, prefix: str = "x-client-cert-") -> dict[str, str]:
    """The identity headers the origin received (all of them: a duplicate would show as a list entry)."""
    found: dict[str, str] = {}
    for line in head.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.lower().startswith(prefix):
            assert name.lower() not in found, f"{name} twice in {head!r}"
            found[name.lower()] = value.strip()
    return found


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_curl_with_a_certificate_forwards_the_verified_identity(
    edge: EdgeProcess, pki: SitePKI, clients: ClientPKI, version: str
) -> None:
    before = edge.metric("keyless_edge_client_auth_total", result="verified")
    keys_before = edge.metric("keyless_edge_key_operations_total")
    result = curl(edge, pki, "required.edge.test", *CURL_VERSIONS[version], *with_cert(clients, "alice"))
    assert result.returncode == 0, result.stderr
    # One private-key operation, the server's own signature: verifying the client asks no key (server).
    assert edge.metric("keyless_edge_key_operations_total") == keys_before + 1
    assert result.stdout.startswith("GET /path HTTP/1.1"), result.stdout
    assert identity_lines(result.stdout) == {
        "x-client-cert-verify": "SUCCESS",
        "x-client-cert-subject": "CN=alice,O=Example Bank",
        "x-client-cert-san": "DNS:alice.clients.test, email:alice@example.test",
        "x-client-cert-fingerprint": fingerprint(clients, "alice"),
    }
    assert edge.metric("keyless_edge_client_auth_total", result="verified") == before + 1


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_curl_without_a_certificate_is_refused_where_required(
    edge: EdgeProcess, pki: SitePKI, version: str
) -> None:
    before = edge.metric("keyless_edge_client_auth_total", result="missing")
    result = curl(edge, pki, "required.edge.test", *CURL_VERSIONS[version])
    assert result.returncode != 0 and "GET /path" not in result.stdout
    assert edge.metric("keyless_edge_client_auth_total", result="missing") == before + 1


def test_forged_identity_headers_never_reach_the_origin(edge: EdgeProcess, pki: SitePKI, clients: ClientPKI) -> None:
    forged = ("-H", "X-Client-Cert-Subject: CN=admin", "-H", "x-CLIENT-cert-Fingerprint: 00",
              "-H", "X-Client-Cert-Verify: SUCCESS", "-H", "X-Mtls-Verify: SUCCESS", "-H", "X-Other: kept")
    authenticated = curl(edge, pki, "required.edge.test", *forged, *with_cert(clients, "bob"))
    assert authenticated.returncode == 0, authenticated.stderr
    assert "CN=admin" not in authenticated.stdout and "x-mtls" not in authenticated.stdout.lower()
    assert identity_lines(authenticated.stdout)["x-client-cert-subject"] == "CN=bob"
    assert "x-other: kept" in authenticated.stdout  # h11 sends names lower-case
    # A site without client authentication, and one where the certificate is optional and absent: the
    # origin serves them all, so every configured prefix (and the default) is removed everywhere.
    open_site = curl(edge, pki, "open.edge.test", *forged)
    assert open_site.returncode == 0, open_site.stderr
    assert identity_lines(open_site.stdout) == {} and identity_lines(open_site.stdout, "x-mtls-") == {}
    optional = curl(edge, pki, "optional.edge.test", *forged)
    assert optional.returncode == 0, optional.stderr
    assert identity_lines(optional.stdout) == {}
    assert identity_lines(optional.stdout, "x-mtls-") == {"x-mtls-verify": "NONE"}


# (site, client identity or None, version, what openssl prints: an alert or the verified subject)
CASES = [
    ("required.edge.test", "mallory", "1.3", "alert unknown ca"),
    ("required.edge.test", "mallory", "1.2", "alert unknown ca"),
    ("required.edge.test", "expired", "1.3", "alert certificate expired"),
    ("required.edge.test", "expired", "1.2", "alert certificate expired"),
    ("required.edge.test", "server-only", "1.3", "alert unsupported certificate"),
    ("required.edge.test", None, "1.3", "alert certificate required"),
    ("required.edge.test", None, "1.2", "alert handshake failure"),
    ("shallow.edge.test", "carol", "1.3", "alert bad certificate"),
    ("shallow.edge.test", "carol", "1.2", "alert bad certificate"),
    ("shallow.edge.test", "alice", "1.2", "CN=alice,O=Example Bank"),
    ("required.edge.test", "carol", "1.3", "CN=carol"),
    ("required.edge.test", "carol", "1.2", "CN=carol"),
    ("required.edge.test", "bob", "1.3", "CN=bob"),
    ("required.edge.test", "bob", "1.2", "CN=bob"),
    ("optional.edge.test", "mallory", "1.3", "alert unknown ca"),  # optional still verifies what is sent
    ("optional.edge.test", None, "1.2", "x-mtls-verify: NONE"),
]
METRIC_FOR = {
    "alert unknown ca": "unknown_ca",
    "alert certificate expired": "certificate_expired",
    "alert unsupported certificate": "unsupported_certificate",
    "alert certificate required": "missing",
    "alert handshake failure": "missing",
    "alert bad certificate": "bad_certificate",
}


@pytest.mark.parametrize(("site", "identity", "version", "expected"), CASES,
                         ids=[f"{c[0].split('.')[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_openssl_client_certificates(
    edge: EdgeProcess, pki: SitePKI, clients: ClientPKI, site: str, identity: str | None, version: str,
    expected: str,
) -> None:
    metric = METRIC_FOR.get(expected, "verified" if identity else None)
    before = edge.metric("keyless_edge_client_auth_total", result=metric) if metric else 0.0
    certificate = openssl_cert(clients, identity) if identity else ()
    output = s_client(edge, pki, site, *VERSIONS[version], *certificate)
    if expected.startswith("alert"):
        # In TLS 1.3 the client's whole flight (and its request) is sent before the alert arrives; closing on
        # unread bytes may reset the socket before openssl reads the alert. The metric says which was sent.
        assert expected in output or "errno=104" in output, output
        assert "HTTP/1.1 200" not in output
    else:
        assert "HTTP/1.1 200" in output and expected in output, output
    if metric:
        assert edge.metric("keyless_edge_client_auth_total", result=metric) == before + 1


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_resumed_sessions_keep_the_identity(
    edge: EdgeProcess, pki: SitePKI, clients: ClientPKI, version: str, tmp_path: Path
) -> None:
    session = tmp_path / "session.pem"
    first = s_client(edge, pki, "required.edge.test", *VERSIONS[version], *openssl_cert(clients, "alice"),
                     "-sess_out", str(session))
    assert "HTTP/1.1 200" in first and session.exists(), first
    resumed_before = edge.metric("keyless_edge_client_auth_total", result="resumed")
    keys_before = edge.metric("keyless_edge_key_operations_total")
    # No certificate on the second connection: the session carries the verified identity.
    again = s_client(edge, pki, "required.edge.test", *VERSIONS[version], "-sess_in", str(session))
    assert "Reused, TLSv" in again, again
    assert f"x-client-cert-fingerprint: {fingerprint(clients, 'alice')}" in again.lower(), again
    assert "x-client-cert-subject: CN=alice,O=Example Bank" in again
    assert edge.metric("keyless_edge_client_auth_total", result="resumed") == resumed_before + 1
    assert edge.metric("keyless_edge_key_operations_total") == keys_before  # resumption asks no key server


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_a_session_without_a_certificate_never_resumes_into_a_required_site(
    edge: EdgeProcess, pki: SitePKI, version: str, tmp_path: Path
) -> None:
    session = tmp_path / "session.pem"
    first = s_client(edge, pki, "optional.edge.test", *VERSIONS[version], "-sess_out", str(session))
    assert "x-mtls-verify: NONE" in first, first
    offered = s_client(edge, pki, "required.edge.test", *VERSIONS[version], "-sess_in", str(session))
    assert "HTTP/1.1 200" not in offered and "Reused" not in offered, offered


def test_host_of_another_client_auth_policy_is_misdirected(
    edge: EdgeProcess, pki: SitePKI, clients: ClientPKI
) -> None:
    # SNI of a site without client authentication, Host of one that requires it: 421, as nginx answers.
    sneaky = curl(edge, pki, "open.edge.test", "-H", "Host: required.edge.test", "-w", "%{http_code}")
    assert sneaky.returncode == 0 and sneaky.stdout.endswith("421"), sneaky.stdout
    # The same policy under another spelling (port, case) is served.
    fine = curl(edge, pki, "required.edge.test", "-H", "Host: REQUIRED.edge.test:443", *with_cert(clients, "alice"),
                "-w", "%{http_code}")
    assert fine.returncode == 0 and fine.stdout.endswith("200"), fine.stdout


def test_tls13_certificate_request_names_the_client_ca(edge: EdgeProcess, pki: SitePKI, clients: ClientPKI) -> None:
    output = s_client(edge, pki, "required.edge.test", "-tls1_3", *openssl_cert(clients, "alice"))
    match = re.search(r"Acceptable client certificate CA names\n(.*)\n", output)
    assert match is not None and "keyless test client CA" in match.group(1), output
    assert "Acceptable client certificate CA names" not in s_client(edge, pki, "open.edge.test", "-tls1_3")


def test_reload_to_required_refuses_sessions_made_without_a_certificate(
    pki: SitePKI, clients: ClientPKI, origin: RawOrigin, tmp_path: Path
) -> None:
    import signal
    import time

    import yaml

    config = edge_config(pki, clients, origin.port)
    with EdgeProcess(config, tmp_path) as edge:
        sessions = {version: tmp_path / f"session-{version}.pem" for version in VERSIONS}
        for version, path in sessions.items():
            first = s_client(edge, pki, "optional.edge.test", *VERSIONS[version], "-sess_out", str(path))
            assert "x-mtls-verify: NONE" in first, first
        config["certificates"][2]["client_auth"]["mode"] = "required"
        edge.config_path.write_text(yaml.safe_dump(config))
        edge.signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while "alert certificate required" not in s_client(edge, pki, "optional.edge.test", "-tls1_3"):
            assert time.monotonic() < deadline, "reload did not take effect"
            time.sleep(0.2)
        for version, path in sessions.items():
            again = s_client(edge, pki, "optional.edge.test", *VERSIONS[version], "-sess_in", str(path))
            assert "HTTP/1.1 200" not in again and "x-mtls-verify" not in again, again


def test_tcp_mode_enforces_client_auth_but_has_no_headers_to_add(
    pki: SitePKI, clients: ClientPKI, origin: RawOrigin, tmp_path: Path
) -> None:
    config = edge_config(pki, clients, origin.port)
    config["origin"]["mode"] = "tcp"
    with EdgeProcess(config, tmp_path) as edge:
        refused = s_client(edge, pki, "required.edge.test", "-tls1_3")
        assert "alert certificate required" in refused or "errno=104" in refused, refused
        assert "HTTP/1.1 200" not in refused
        piped = s_client(edge, pki, "required.edge.test", "-tls1_3", *openssl_cert(clients, "alice"),
                         request_host="required.edge.test\r\nX-Client-Cert-Subject: CN=admin")
        # A byte pipe: the edge neither parses nor edits HTTP, so the origin gets the client's bytes as sent
        # (docs/edge.md: an origin behind a tcp-mode edge must not trust identity headers).
        assert "HTTP/1.1 200" in piped and "X-Client-Cert-Subject: CN=admin" in piped, piped
        assert "x-client-cert-verify" not in piped


def test_replacing_the_ca_ends_sessions_of_the_old_ca(
    pki: SitePKI, clients: ClientPKI, origin: RawOrigin, tmp_path: Path
) -> None:
    import signal
    import time

    import yaml

    config = edge_config(pki, clients, origin.port)
    with EdgeProcess(config, tmp_path) as edge:
        sessions = {version: tmp_path / f"session-{version}.pem" for version in VERSIONS}
        for version, path in sessions.items():
            first = s_client(edge, pki, "required.edge.test", *VERSIONS[version], *openssl_cert(clients, "alice"),
                             "-sess_out", str(path))
            assert "x-client-cert-subject: CN=alice" in first, first
        config["certificates"][1]["client_auth"]["ca"] = str(clients.other_ca)
        edge.config_path.write_text(yaml.safe_dump(config))
        edge.signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while "HTTP/1.1 200" in s_client(edge, pki, "required.edge.test", "-tls1_3", *openssl_cert(clients, "alice")):
            assert time.monotonic() < deadline, "reload did not take effect"
            time.sleep(0.2)
        before = edge.metric("keyless_edge_client_auth_total", result="stale_session")
        for version, path in sessions.items():
            again = s_client(edge, pki, "required.edge.test", *VERSIONS[version], "-sess_in", str(path))
            assert "HTTP/1.1 200" not in again and "CN=alice" not in again, again
        assert edge.metric("keyless_edge_client_auth_total", result="stale_session") == before + 2
        # mallory's CA is the site's CA now: its clients are served.
        mallory = s_client(edge, pki, "required.edge.test", "-tls1_2", *openssl_cert(clients, "mallory"))
        assert "x-client-cert-subject: CN=mallory" in mallory, mallory
