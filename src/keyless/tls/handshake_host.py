"""The seam between ``TLSServerConnection`` and the per-version handshake drivers (``tls13_server``,
``tls12_server``): what a driver offers the connection, and what it may use of the connection.

Kept apart from both so that the connection imports the drivers and the drivers import only this
(no import cycle between files)::

    driver = Driver(host)
    driver.process_client_hello(hello)                  # parsed ClientHello (messages.ClientHello)
    driver.handle_message(msg_type, body, raw)           # every later handshake message
    driver.handle_change_cipher_spec(payload)            # a CCS record
    driver.complete_key_operation(result)                # bytes or the exception the key raised
    driver.note_application_data()                       # resets post-handshake counters
    driver.complete -> bool
"""

from __future__ import annotations

from typing import Literal, Protocol

from keyless.keys.base import AsyncPrivateKey
from keyless.keys.schemes import SignatureScheme
from keyless.tls.config import ServerConfig
from keyless.tls.events import Event, HandshakeComplete
from keyless.tls.messages import ClientHello
from keyless.tls.record import RecordLayer
from keyless.tls.suites import CipherSuite13


class HandshakeDriver(Protocol):
    """One version's handshake, driven by the connection."""

    @property
    def complete(self) -> bool: ...

    def process_client_hello(self, hello: ClientHello) -> None: ...

    def handle_message(self, msg_type: int, body: bytes, raw: bytes) -> None: ...

    def handle_change_cipher_spec(self, payload: bytes) -> None: ...

    def complete_key_operation(self, result: bytes | BaseException) -> None: ...

    def note_application_data(self) -> None: ...


class HandshakeHost(Protocol):
    """What a handshake driver may use of the connection."""

    config: ServerConfig
    record: RecordLayer
    closed: bool  # we sent close_notify or a fatal alert: nothing more may be written

    def emit(self, event: Event) -> None: ...

    def request_key_operation(
        self, key: AsyncPrivateKey, kind: Literal["sign", "decrypt"], scheme: SignatureScheme | None, data: bytes,
        server_name: str | None,
    ) -> None:
        """``server_name``: the SNI the certificate (and so ``key``) was chosen for; the key server sees it."""

    def set_read_key_tls13(self, suite: CipherSuite13, secret: bytes) -> None: ...

    def check_key_change_allowed(self) -> None: ...

    def skip_early_data(self) -> None: ...

    def finish_handshake(self, info: HandshakeComplete) -> None: ...
