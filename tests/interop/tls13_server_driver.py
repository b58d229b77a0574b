"""A tiny threaded socket server around ``TLSServerConnection`` for interop tests with real clients.

It answers key operations inline with ``LocalKey.sign_sync`` and echoes application data (or answers
an HTTP request), so tests can focus on what the real client prints.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType

from keyless.tls.config import ServerConfig
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import (
    NEED_DATA,
    ApplicationData,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    KeyOperationRequired,
)

HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nkeyless"


@dataclass
class ServedConnection:
    events: list[Event] = field(default_factory=list)

    @property
    def complete(self) -> HandshakeComplete | None:
        return next((e for e in self.events if isinstance(e, HandshakeComplete)), None)

    @property
    def closed(self) -> ConnectionClosed | None:
        return next((e for e in self.events if isinstance(e, ConnectionClosed)), None)


class EngineServer:
    """Accepts connections on 127.0.0.1:0; each handled in a thread until close or error."""

    def __init__(self, config: ServerConfig, *, http: bool = False, close_after: bytes | None = b"\n") -> None:
        """Echo mode answers each read with the same bytes and closes once ``close_after`` was seen."""
        self.config = config
        self.http = http
        self.close_after = close_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port: int = self.listener.getsockname()[1]
        self.connections: list[ServedConnection] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> EngineServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self._stop.set()
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)
        self.listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            served = ServedConnection()
            self.connections.append(served)
            thread = threading.Thread(target=self._serve, args=(sock, served), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, served: ServedConnection) -> None:
        conn = TLSServerConnection(self.config)
        sock.settimeout(30)  # a client gone silent ends its connection; failure only
        request = b""
        try:
            while not self._stop.is_set():
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    break
                conn.receive_data(data)
                finished = False
                for _ in range(10000):
                    event = conn.next_event()
                    if event is NEED_DATA:
                        break
                    served.events.append(event)
                    if isinstance(event, KeyOperationRequired):
                        signature = event.key.sign_sync(event.scheme, event.data)  # type: ignore[attr-defined]
                        conn.complete_key_operation(event.op_id, signature)
                    elif isinstance(event, ApplicationData):
                        if self.http:
                            request += event.data
                            if b"\r\n\r\n" in request:
                                conn.send(HTTP_RESPONSE)
                                conn.close()
                        else:
                            conn.send(event.data)
                            if self.close_after is not None and self.close_after in event.data:
                                conn.close()
                    elif isinstance(event, ConnectionClosed):
                        finished = True
                        break
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                if finished or not data:
                    break
        except OSError:
            pass
        finally:
            sock.close()
