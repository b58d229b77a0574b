"""Edge benchmark: our keyless edge against nginx (Debian nginx-light) as a TLS reverse proxy, one worker each.

    .venv/bin/python bench/edge.py [--seconds 5] [--key remote|local] [--clients 2] [--download-mb 200]

Measures, in one run, on loopback:
* new HTTPS connections per second (a full handshake + one small request, ``openssl s_time -new``),
* resumed connections per second (``openssl s_time -reuse``),
each with the server's CPU time per connection (from /proc: the edge process; nginx's worker), and
the ratio of connections per CPU-second (edge / nginx) — the figure the issue's target (>= 0.3 with a
remote key) is about;
* MB/s of one large download through each (curl).

Both proxies forward to the same origin: a second nginx serving a fixed page and a large file, so
the origin is never the bottleneck. The ECDSA P-256 site certificate is used; nginx has its key in a
file, our edge asks a key server (``--key remote``, the default) or has it in a file (``--key local``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from keyless.edge.demo import Service, start_service  # noqa: E402
from keyless.pki import create_demo_pki, keyserver_yaml  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def nginx_worker_pids(master_pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


NGINX_COMMON = """
worker_processes 1;
daemon off;
master_process on;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
"""

# Both nginx roles open their http block alike: no access log, temporary files in the run's directory.
HTTP_OPEN = """
http {{
    access_log off;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
    uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
"""

ORIGIN_CONF = (
    NGINX_COMMON
    + HTTP_OPEN
    + """    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 1000000;
        root {root};
        location = / {{ return 200 "hello from the origin\\n"; }}
    }}
}}
"""
)

PROXY_CONF = (
    NGINX_COMMON
    + HTTP_OPEN
    + """    upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets on;
        ssl_session_cache shared:SSL:10m;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_buffering off;
        }}
    }}
}}
"""
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    def __init__(self, name: str, conf: str, directory: Path) -> None:
        self.dir = directory / name
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "nginx.conf").write_text(conf.replace("{dir}", str(self.dir)))
        self.proc = subprocess.Popen(
            ["nginx", "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not nginx_worker_pids(self.proc.pid):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"nginx {name} failed: {self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                )
            time.sleep(0.05)
        time.sleep(0.2)

    def worker(self) -> int:
        return nginx_worker_pids(self.proc.pid)[0]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def s_time(port: int, ca: Path, mode: str, seconds: int, clients: int) -> int:
    """Run ``clients`` parallel ``openssl s_time`` loops; return the connections they completed."""
    procs = [
        subprocess.Popen(
            [
                "openssl",
                "s_time",
                "-connect",
                f"127.0.0.1:{port}",
                mode,
                "-time",
                str(seconds),
                "-www",
                "/",
                "-CAfile",
                str(ca),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(clients)
    ]
    total = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        match = re.search(r"(\d+) connections in [\d.]+s", out)
        if match is None:
            raise RuntimeError(f"s_time failed: {out[-500:]}")
        total += int(match.group(1))
    return total


def measure(label: str, port: int, pid_of: Any, ca: Path, seconds: int, clients: int) -> dict[str, Any]:
    result: dict[str, Any] = {"server": label}
    for mode, key in (("-new", "full"), ("-reuse", "resumed")):
        s_time(port, ca, mode, 1, 1)  # warm-up (and pools, tickets)
        pid = pid_of()
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        connections = s_time(port, ca, mode, seconds, clients)
        cpu, wall = cpu_seconds(pid) - cpu_before, time.monotonic() - wall_before
        result[key] = {
            "connections": connections,
            "conns_per_s": round(connections / wall, 1),
            "cpu_ms_per_conn": round(1000 * cpu / max(connections, 1), 3),
            "conns_per_cpu_s": round(connections / cpu, 1) if cpu else None,
        }
    return result


def download(port: int, ca: Path, path: str, size: int) -> float:
    started = time.monotonic()
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--cacert",
            str(ca),
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            f"https://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0 or int(float(result.stdout or 0)) != size:
        raise RuntimeError(f"download failed: {result.stderr} {result.stdout}")
    return size / elapsed / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=2, help="parallel s_time loops")
    parser.add_argument("--key", choices=("remote", "local"), default="remote")
    parser.add_argument("--download-mb", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    for tool in ("nginx", "openssl", "curl"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed (apt-get install nginx-light openssl curl)")
            return 2

    work = Path(tempfile.mkdtemp(prefix="keyless-bench-edge-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user and must read the origin's files
    services: list[Service] = []
    nginxes: list[Nginx] = []
    try:
        pki = create_demo_pki(work / "pki", "keyless.test", site_keys=("ecdsa-p256",))
        # nginx wants the chain and the key; the site certificate is the leaf, the CA is trusted by clients.
        big = work / "root" / "big.bin"
        big.parent.mkdir()
        size = args.download_mb * 1024 * 1024
        with big.open("wb") as f:
            f.truncate(size)
        big.chmod(0o644)
        origin_port = free_port()
        nginxes.append(Nginx("origin", ORIGIN_CONF.format(dir="{dir}", port=origin_port, root=big.parent), work))

        ks_config = work / "keyserver.yaml"
        ks_config.write_text(keyserver_yaml(pki, port=0, metrics_port=0))
        site: dict[str, Any] = {"names": ["keyless.test"], "chain": str(pki.site_cert("ecdsa-p256")), "default": True}
        if args.key == "remote":
            keyserver = start_service(
                "keyserver", ["-m", "keyless", "keyserver", "--config", str(ks_config)], work / "keyserver.log"
            )
            services.append(keyserver)
            site["key_servers"] = [f"127.0.0.1:{keyserver.port}"]
        else:
            site["key_file"] = str(pki.site_key("ecdsa-p256"))
        edge_config = {
            "listen": [{"address": "127.0.0.1", "port": 0}],
            "metrics_addr": "127.0.0.1:0",
            "key_server_tls": {"client_cert": str(pki.edge_cert), "client_key": str(pki.edge_key), "ca": str(pki.ca)},
            "certificates": [site],
            "origin": {"mode": "http", "address": f"127.0.0.1:{origin_port}"},
            "loglevel": "warning",
        }
        (work / "edge.yaml").write_text(yaml.safe_dump(edge_config))
        edge = start_service("edge", ["-m", "keyless", "edge", "--config", str(work / "edge.yaml")], work / "edge.log")
        services.append(edge)

        proxy_port = free_port()
        proxy = Nginx(
            "proxy",
            PROXY_CONF.format(
                dir="{dir}",
                port=proxy_port,
                origin_port=origin_port,
                cert=pki.site_cert("ecdsa-p256"),
                key=pki.site_key("ecdsa-p256"),
            ),
            work,
        )
        nginxes.append(proxy)

        results = [
            measure(
                f"keyless edge ({args.key} key)", edge.port, lambda: edge.proc.pid, pki.ca, args.seconds, args.clients
            ),
            measure("nginx (key in file)", proxy_port, proxy.worker, pki.ca, args.seconds, args.clients),
        ]
        results[0]["download_MB_s"] = round(download(edge.port, pki.ca, "/big.bin", size), 1)
        results[1]["download_MB_s"] = round(download(proxy_port, pki.ca, "/big.bin", size), 1)
    finally:
        for service in services:
            service.stop()
        for nginx in nginxes:
            nginx.stop()
        shutil.rmtree(work, ignore_errors=True)

    ours, theirs = results
    print(f"{'server':<28} {'mode':<8} {'conns/s':>9} {'CPU ms/conn':>12} {'conns/CPU-s':>12}")
    for r in results:
        for mode in ("full", "resumed"):
            m = r[mode]
            figures = f"{m['conns_per_s']:>9} {m['cpu_ms_per_conn']:>12} {m['conns_per_cpu_s']:>12}"
            print(f"{r['server']:<28} {mode:<8} {figures}")
    for r in results:
        print(f"{r['server']:<28} download {r['download_MB_s']} MB/s")
    ratios = {
        mode: round(ours[mode]["conns_per_cpu_s"] / theirs[mode]["conns_per_cpu_s"], 3) for mode in ("full", "resumed")
    }
    ratios["download"] = round(ours["download_MB_s"] / theirs["download_MB_s"], 3)
    print(
        f"ratio edge/nginx (connections per CPU-second): full {ratios['full']}, resumed {ratios['resumed']}; "
        f"download MB/s {ratios['download']}  (target full >= 0.3)"
    )
    if args.json:
        args.json.write_text(json.dumps({"results": results, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
