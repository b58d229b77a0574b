"""``keyless demo``: a key server, an origin and an edge on loopback, and real clients showing what each
kind of handshake costs in private-key operations — counted by the key server itself.

Everything runs as separate processes (``python -m keyless keyserver``, ``python -m keyless edge``,
``python -m keyless.edge.demo_origin``) from a throwaway directory with a fresh demo PKI, so what the
table shows is exactly what a user gets by running the same commands.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from keyless.edge.demo_mldsa import (
    MLDSA_SITE_KEY,
    MLDSA_SITE_PREFIX,
    tlslite_handshake,
    tlslite_run,
    tlslite_unavailable,
)

HOSTNAME = "keyless.test"
START_TIMEOUT = 30.0
_READY_PATTERNS = {
    "keyserver": re.compile(r"keyless keyserver ready port=(\d+) metrics_port=(\d+)"),
    "edge": re.compile(r"keyless edge ready port=(\d+)\S* metrics_port=(\d+)"),
    "origin": re.compile(r"origin ready port=(\d+)()"),
}


class DemoError(Exception):
    pass


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[str]
    port: int
    metrics_port: int
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_service(name: str, args: list[str], log_path: Path) -> Service:
    log_file = log_path.open("w")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=log_file, text=True, env=env)
    log_file.close()
    found: list[re.Match[str]] = []
    done = threading.Event()

    def reader() -> None:
        if proc.stdout is None:  # pragma: no cover - we asked for a pipe
            return
        for line in proc.stdout:
            match = _READY_PATTERNS[name].search(line)
            if match and not found:
                found.append(match)
                done.set()
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    if not done.wait(START_TIMEOUT) or not found:
        proc.kill()
        raise DemoError(f"{name} did not start; its log ({log_path}):\n{_tail(log_path)}")
    match = found[0]
    return Service(name, proc, int(match.group(1)), int(match.group(2) or 0), log_path)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return ""


def scrape(port: int) -> dict[str, float]:
    """Prometheus text → {sample with labels: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            sample, _, value = line.rpartition(" ")
            try:
                samples[sample] = float(value)
            except ValueError:
                continue
    return samples


def key_server_operations(port: int) -> tuple[float, float]:
    """(all private-key operations, decryptions) as the key server counts them."""
    samples = scrape(port)
    total = samples.get("keyless_sign_requests_total", 0.0)
    decrypts = sum(v for k, v in samples.items() if k.startswith("keyless_requests") and "DECRYPT" in k)
    return total, decrypts


@dataclass
class CheckResult:
    label: str
    client: str
    expected: int
    operations: int
    detail: str
    ok: bool


class Demo:
    def __init__(self, directory: Path, out: TextIO) -> None:
        self.directory = directory
        self.out = out
        self.services: list[Service] = []
        self.sessions: dict[str, ssl.SSLSession] = {}
        self.contexts: dict[str, ssl.SSLContext] = {}

    # --- setting up -----------------------------------------------------------------------------

    def start(self) -> None:
        from keyless.pki import create_demo_pki, keyserver_yaml

        self.say(f"demo directory: {self.directory}")
        self.pki = create_demo_pki(self.directory / "pki", HOSTNAME, pq=True)
        self.say("created a throwaway PKI (CA, key-server and edge certificates, site keys for 4 key types,")
        self.say("  and an ML-DSA CA with ML-DSA-44/65/87 site keys: post-quantum signatures)")
        ks_config = self.directory / "keyserver.yaml"
        ks_config.write_text(keyserver_yaml(self.pki, port=0, metrics_port=0))
        self.keyserver = self._start("keyserver", ["-m", "keyless", "keyserver", "--config", str(ks_config)])
        self.say(f"key server   127.0.0.1:{self.keyserver.port}  (metrics :{self.keyserver.metrics_port})")
        self.origin = self._start("origin", ["-m", "keyless.edge.demo_origin", "--port", "0"])
        self.say(f"origin       http://127.0.0.1:{self.origin.port}/")
        self.edge_config = self.directory / "edge.yaml"
        self.edge_config.write_text(yaml.safe_dump(self._edge_config(), sort_keys=False))
        self.edge = self._start("edge", ["-m", "keyless", "edge", "--config", str(self.edge_config)])
        self.say(f"edge         https://{HOSTNAME}:{self.edge.port}/  (metrics :{self.edge.metrics_port})")
        self.say("the edge holds certificates only: it has no private key file\n")

    def _start(self, name: str, args: list[str]) -> Service:
        service = start_service(name, args, self.directory / f"{name}.log")
        self.services.append(service)
        return service

    def _edge_config(self) -> dict[str, Any]:
        pki = self.pki
        sites = [
            ([HOSTNAME, f"ecdsa.{HOSTNAME}"], "ecdsa-p256", True),
            ([f"rsa.{HOSTNAME}"], "rsa-2048", False),
            ([f"ed25519.{HOSTNAME}"], "ed25519", False),
            # ML-DSA-65 for clients that offer it, the ECDSA certificate of the same name for the others
            ([f"{MLDSA_SITE_PREFIX}.{HOSTNAME}"], MLDSA_SITE_KEY, False),
            ([f"{MLDSA_SITE_PREFIX}.{HOSTNAME}"], "ecdsa-p256", False),
        ]
        return {
            "listen": [{"address": "127.0.0.1", "port": 0}],
            "metrics_addr": "127.0.0.1:0",
            "key_server_tls": {"client_cert": str(pki.edge_cert), "client_key": str(pki.edge_key), "ca": str(pki.ca)},
            "certificates": [
                {
                    "names": names,
                    "chain": str(pki.site_cert(key)),
                    "key_servers": [f"127.0.0.1:{self.keyserver.port}"],
                    "default": default,
                }
                for names, key, default in sites
            ],
            "origin": {"mode": "http", "address": f"127.0.0.1:{self.origin.port}"},
            # Off by default (no forward secrecy); the demo turns it on so the decrypt path can be seen.
            "rsa_key_exchange": True,
            "limits": {"drain_timeout": 2},
        }

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # --- the checks -----------------------------------------------------------------------------

    def run_checks(self) -> list[CheckResult]:
        self._wait_until_ready()
        checks: list[tuple[str, str, int, bool, Callable[[], str]]] = [
            ("TLS 1.3 full handshake (ECDSA)", "python ssl", 1, False, lambda: self._python("tls13", "TLSv1.3")),
            ("TLS 1.3 resumed (ticket)", "python ssl", 0, False, lambda: self._python("tls13", "TLSv1.3", True)),
            ("TLS 1.2 ECDHE-ECDSA", "python ssl", 1, False, lambda: self._python("tls12", "TLSv1.2")),
            ("TLS 1.2 RSA key exchange", "python ssl", 1, True, lambda: self._python("rsa", "TLSv1.2")),
            ("TLS 1.2 resumed", "python ssl", 0, False, lambda: self._python("tls12", "TLSv1.2", True)),
        ]
        if shutil.which("openssl"):
            checks.append(("TLS 1.3 full (sess_out)", "openssl s_client", 1, False, lambda: self._s_client(False)))
            checks.append(("TLS 1.3 resumed (sess_in)", "openssl s_client", 0, False, lambda: self._s_client(True)))
        pq_host = f"{MLDSA_SITE_PREFIX}.{HOSTNAME}"
        if (missing := tlslite_unavailable()) is None:
            checks.append(("TLS 1.3 full, X25519MLKEM768", "tlslite-ng", 1, False, self._hybrid_handshake))
            checks.append(("TLS 1.3 full, ML-DSA-65 cert", "tlslite-ng", 1, False,
                           lambda: tlslite_handshake(self.edge.port, pq_host)))
        else:
            self.say(f"skipping the ML-DSA handshake: {missing}")
        results = []
        for label, client, expected, decrypt, action in checks:
            before = key_server_operations(self.keyserver.metrics_port)
            try:
                detail = action()
                failed = False
            except Exception as exc:  # a failed client is a failed check, with its reason shown
                detail, failed = f"error: {exc}", True
            operations, decrypts = self._delta(before, expected)
            ok = not failed and operations == expected and (not decrypt or decrypts == 1)
            if decrypt and not failed:
                detail += f", {int(decrypts)} decrypt"
            results.append(CheckResult(label, client, expected, operations, detail, ok))
        return results

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.edge.metrics_port}/readyz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise DemoError("the edge never became ready (is the key server answering?)")

    def _delta(self, before: tuple[float, float], expected: int) -> tuple[int, float]:
        # The key server counts an operation as it answers: poll briefly for a count that lands late.
        deadline = time.monotonic() + 1.0
        while True:
            after = key_server_operations(self.keyserver.metrics_port)
            operations = int(after[0] - before[0])
            if operations > expected or time.monotonic() >= deadline:
                break
            if operations == expected:
                time.sleep(0.1)  # and confirm nothing more arrives
                after = key_server_operations(self.keyserver.metrics_port)
                operations = int(after[0] - before[0])
                break
            time.sleep(0.05)
        return operations, after[1] - before[1]

    def _python(self, name: str, version: str, resume: bool = False) -> str:
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        host = HOSTNAME
        if version == "TLSv1.3":
            context.minimum_version = ssl.TLSVersion.TLSv1_3
        else:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            if name == "rsa":
                host = f"rsa.{HOSTNAME}"
                context.set_ciphers("AES128-GCM-SHA256")  # RSA key exchange: the key server decrypts
            else:
                context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        if resume:
            context = self.contexts[name]  # a session resumes only with the context that made it
        else:
            self.contexts[name] = context
        session = self.sessions.get(name) if resume else None
        with (
            socket.create_connection(("127.0.0.1", self.edge.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host, session=session) as tls,
        ):
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            body = b""
            while chunk := tls.recv(65536):
                body += chunk
            if b"Hello through a keyless edge" not in body:
                raise DemoError("the page did not come through")
            if tls.version() != version:
                raise DemoError(f"negotiated {tls.version()}")
            if resume and not tls.session_reused:
                raise DemoError("the session was not resumed")
            if tls.session is not None:
                self.sessions[name] = tls.session
            negotiated = tls.cipher()
            cipher = negotiated[0] if negotiated else "?"
        return f"{version} {cipher}{' (reused)' if resume else ''}"

    def _s_client(self, resume: bool) -> str:
        session = self.directory / "s_client.session"
        option = ["-sess_in" if resume else "-sess_out", str(session)]
        result = subprocess.run(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{self.edge.port}",
                "-servername",
                HOSTNAME,
                "-CAfile",
                str(self.pki.ca),
                "-verify_return_error",
                "-ign_eof",
                *option,
            ],
            input=f"GET / HTTP/1.1\r\nHost: {HOSTNAME}\r\nConnection: close\r\n\r\n".encode(),
            capture_output=True,
            timeout=20,
        )
        text = result.stdout.decode(errors="replace")
        wanted = "Reused, TLSv1.3" if resume else "New, TLSv1.3"
        if wanted not in text:
            raise DemoError(f"s_client did not print {wanted!r}")
        return f'printed "{wanted}"'

    # --- output ---------------------------------------------------------------------------------

    def print_table(self, results: list[CheckResult]) -> None:
        self.say("key-server ops = change of the key server's keyless_sign_requests_total during that handshake\n")
        self.say("handshake through the edge        client            key-server ops  expected  result")
        self.say("-" * 98)
        for r in results:
            status = "OK  " if r.ok else "FAIL"
            self.say(f"{r.label:<33} {r.client:<17} {r.operations:>14}  {r.expected:>8}  {status} {r.detail}")
        self.say("")
        samples = scrape(self.keyserver.metrics_port)
        self.say(f"key server's own counters (http://127.0.0.1:{self.keyserver.metrics_port}/metrics):")
        for sample, value in sorted(samples.items()):
            if sample.startswith(("keyless_sign_requests_total", "keyless_requests")) and value:
                self.say(f"  {sample} {value:g}")
        self.say("  (including one signature per certificate: the edge's check, when it starts, that a key server")
        self.say("   holds the certificate's key)")
        self.say("")

    def _hybrid_handshake(self) -> str:
        """A client offering the post-quantum hybrid group first, as Chromium does by default; the group is
        read from the edge's own handshake counter, not taken on trust from the client."""
        def hybrid_count() -> float:
            return sum(value for sample, value in scrape(self.edge.metrics_port).items()
                       if sample.startswith("keyless_edge_handshakes_total") and 'group="X25519MLKEM768"' in sample)

        before = hybrid_count()
        tlslite_run(self.edge.port, HOSTNAME, "x25519mlkem768")
        if hybrid_count() != before + 1:
            raise RuntimeError("the edge did not count an X25519MLKEM768 handshake")
        return "TLSv1.3, key exchange X25519MLKEM768 (post-quantum hybrid, as Chromium gets)"

    def print_commands(self) -> None:
        port, ca = self.edge.port, self.pki.ca
        session = self.directory / "sess.pem"
        request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
        s_client = f"openssl s_client -connect 127.0.0.1:{port} -servername {HOSTNAME} -CAfile {ca} -ign_eof"
        self.say("try it yourself:")
        self.say(f"  curl --cacert {ca} --resolve {HOSTNAME}:{port}:127.0.0.1 https://{HOSTNAME}:{port}/")
        self.say(f"  {request} | {s_client} -sess_out {session} 2>/dev/null | grep -E '^(New|Reused)'")
        self.say(f"  {request} | {s_client} -sess_in {session} 2>/dev/null | grep -E '^(New|Reused)'")
        self.say("      (the second prints: Reused, TLSv1.3, Cipher is TLS_AES_128_GCM_SHA256)")
        self.say(f"  curl -s http://127.0.0.1:{self.keyserver.metrics_port}/metrics | grep keyless_sign_requests")
        self.say(f"  curl -s http://127.0.0.1:{self.edge.metrics_port}/metrics | grep keyless_edge_handshakes")
        self.say("      (its group label is each handshake's key exchange: a browser such as Chromium gets the")
        self.say("       post-quantum hybrid X25519MLKEM768; OpenSSL 3.0 and curl, which lack it, get x25519)")
        self.say(f"  logs and configuration files: {self.directory}")


def run_demo(*, check: bool, directory: Path | None, keep: bool, out: TextIO = sys.stdout) -> int:
    started = time.monotonic()
    owned = directory is None
    workdir = Path(tempfile.mkdtemp(prefix="keyless-demo-")) if directory is None else directory
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(workdir, out)
    try:
        demo.start()
        results = demo.run_checks()
        demo.print_table(results)
        failed = [r for r in results if not r.ok]
        if check:
            verdict = "all checks passed" if not failed else f"{len(failed)} check(s) FAILED"
            demo.say(f"{verdict} in {time.monotonic() - started:.1f} s")
            if failed:
                demo.say(f"logs: {workdir}")
                keep = True
            return 1 if failed else 0
        demo.print_commands()
        demo.say("\nrunning until Ctrl-C ...")
        _wait_for_interrupt()
        return 1 if failed else 0
    except DemoError as exc:
        demo.say(f"demo failed: {exc}")
        keep = True
        return 1
    finally:
        demo.stop()
        if owned and not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    # Our own handlers: a shell may start us with SIGINT ignored (a background job), and SIGTERM too must stop.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["run_demo"]
