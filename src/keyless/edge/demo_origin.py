"""A tiny HTTP/1.1 origin for the demo and the tests: stdlib ``http.server``, nothing of ours in the path.

Run ``python -m keyless.edge.demo_origin --port 0``; it prints ``origin ready port=N`` once listening.

Routes: ``/`` a small HTML page; ``/headers`` the request headers as JSON; ``/bytes/N`` N bytes
(streamed in 64 KiB pieces); ``/echo`` (POST) the request body back, whether it came with
Content-Length or chunked; ``/slow/SECONDS`` answers after a delay; ``/chunked/N`` a chunked answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = (
    b"<!doctype html><html><head><title>keyless demo</title></head>"
    b"<body><h1 id='greeting'>Hello through a keyless edge</h1>"
    b"<p>This page came from the origin; the edge that served it never held the site's private key.</p>"
    b"</body></html>"
)
PIECE = b"0123456789abcdef" * 4096  # 64 KiB


class OriginHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "keyless-demo-origin"
    disable_nagle_algorithm = True  # headers and body are separate writes: do not wait for a delayed ACK

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._send(200, b"", "text/html", length=len(PAGE))

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, PAGE, "text/html")
        elif path == "/headers":
            headers = {name.lower(): value for name, value in self.headers.items()}
            body = json.dumps({"headers": headers, "peer": self.client_address[0]}).encode()
            self._send(200, body, "application/json")
        elif path.startswith("/bytes/"):
            self._send_bytes(int(path.rsplit("/", 1)[1]))
        elif path.startswith("/chunked/"):
            self._send_chunked(int(path.rsplit("/", 1)[1]))
        elif path.startswith("/slow/"):
            time.sleep(float(path.rsplit("/", 1)[1]))
            self._send(200, b"slow\n", "text/plain")
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
        extra = {"x-request-was-chunked": "1"} if self.headers.get("transfer-encoding") else {}
        self._send(200, body, "application/octet-stream", extra=extra)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        length: int | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body) if length is None else length))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _send_bytes(self, count: int) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(count))
        self.end_headers()
        remaining = count
        while remaining > 0:
            piece = PIECE[: min(remaining, len(PIECE))]
            self.wfile.write(piece)
            remaining -= len(piece)

    def _send_chunked(self, count: int) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for index in range(count):
            chunk = f"chunk {index}\n".encode()
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


class OriginServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client (the edge) that hung up mid-answer is normal here (timeouts, tests): no traceback.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def make_server(host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    server = OriginServer((host, port), OriginHandler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port)
    print(f"origin ready port={server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
