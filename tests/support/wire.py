"""A minimal blocking keyless client for tests: Python ``ssl`` sockets + the protocol codec."""

from __future__ import annotations

import socket
import ssl
import time

from keyless.pki import DemoPKI
from keyless.protocol import NEED_DATA, Message, MessageDecoder, encode_message


def client_context(pki: DemoPKI, *, with_cert: bool = True, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if with_cert:
        context.load_cert_chain(str(pki.edge_cert), str(pki.edge_key))
    if maximum is not None:
        context.maximum_version = maximum
    return context


def connect(pki: DemoPKI, port: int, context: ssl.SSLContext | None = None, timeout: float = 30.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return (context or client_context(pki)).wrap_socket(raw, server_hostname="localhost")


class Peer:
    """One connection: ``send`` messages, ``receive`` whole replies (by count), keyed by ID."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.decoder = MessageDecoder()

    def send(self, *messages: Message) -> None:
        self.sock.sendall(b"".join(encode_message(m) for m in messages))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self, count: int, timeout: float = 30.0) -> list[Message]:
        replies: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(replies) < count:
            while len(replies) < count:
                message = self.decoder.next_message()
                if message is NEED_DATA or not isinstance(message, Message):
                    break
                replies.append(message)
            if len(replies) >= count:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"got {len(replies)} of {count} replies")
            self.sock.settimeout(left)
            data = self.sock.recv(262144)
            if not data:
                raise ConnectionError(f"connection closed after {len(replies)} of {count} replies")
            self.decoder.receive_data(data)
        return replies

    def request(self, message: Message, timeout: float = 30.0) -> Message:
        self.send(message)
        (reply,) = self.receive(1, timeout)
        return reply

    def closed_by_peer(self, timeout: float = 30.0) -> bool:
        """True when the server closes the connection (EOF or reset) within ``timeout``."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.decoder.receive_data(data)
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            return not isinstance(exc, TimeoutError | socket.timeout)
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
