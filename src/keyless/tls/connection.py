"""``TLSServerConnection``: the one object a caller drives (bytes in, events out, no I/O).

It owns the record layer and the handshake reassembler, parses the ClientHello, picks the protocol
version, and hands every later handshake message to the version's handshake driver
(``tls13_server.ServerHandshake13`` or ``tls12_server.ServerHandshake12``). Any ``TLSAlert`` raised
anywhere below ends the connection with that alert; any other exception is a bug, logged, and ends it
with ``internal_error`` — nothing else ever escapes ``next_event()``.

The drivers and the connection meet through the protocols of ``handshake_host`` (the drivers import only
that module, so there is no import cycle).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Literal

from keyless.keys.base import AsyncPrivateKey
from keyless.keys.schemes import SignatureScheme
from keyless.tls import messages
from keyless.tls.alerts import AlertDescription, AlertLevel, TLSAlert, TLSUsageError
from keyless.tls.config import ServerConfig, client_hello_info
from keyless.tls.events import (
    NEED_DATA,
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    KeyOperationRequired,
    NeedData,
)
from keyless.tls.handshake_host import HandshakeDriver
from keyless.tls.messages import ClientHello, ContentType, HandshakeType
from keyless.tls.reassembly import CLIENT_MESSAGES, HandshakeReassembler
from keyless.tls.record import (
    ALERT,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    HEADER_LENGTH,
    Record,
    RecordLayer,
)
from keyless.tls.suites import TLS12, TLS13, CipherSuite13
from keyless.tls.tls12_server import ServerHandshake12
from keyless.tls.tls13_server import ServerHandshake13

log = logging.getLogger(__name__)

# Records that do not advance the connection (CCS, warning alerts, empty records), in a row: Go's
# maxUselessRecords.
MAX_USELESS_RECORDS = 16
TLS_FALLBACK_SCSV = 0x5600
_CLOSE_NOTIFY = bytes((AlertLevel.WARNING, AlertDescription.close_notify))


class TLSServerConnection:
    """One server-side TLS connection (TLS 1.3 or 1.2, as the ClientHello and the configuration decide)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.record = RecordLayer()
        self.reassembler = HandshakeReassembler(structure=CLIENT_MESSAGES)
        self.version: int | None = None
        self.server_name: str | None = None  # the client's SNI, once its ClientHello is parsed
        self.handshake_complete = False
        self.closed = False  # we sent close_notify or a fatal alert
        self._driver: HandshakeDriver | None = None
        self._events: deque[Event] = deque()
        self._pending_op: int | None = None
        self._next_op_id = 1
        self._paused_input = bytearray()
        self._eof = False
        self._ended = False  # ConnectionClosed queued: nothing more will be parsed
        self._failed = False
        self._useless_records = 0

    def __repr__(self) -> str:
        return f"<TLSServerConnection version={self.version} complete={self.handshake_complete}>"

    # ---- public API -------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; ``b""`` means the peer closed its side."""
        if self._ended:
            return
        if not data:
            self._eof = True
            return
        if self._pending_op is not None:
            # Bytes that arrive during a key operation wait here (bounded) and are parsed afterwards.
            if len(self._paused_input) + len(data) > self.config.max_buffered_while_paused:
                self._fail(TLSAlert(AlertDescription.unexpected_message, "too much data during key operation"))
                return
            self._paused_input += data
            return
        self._guarded(self.record.receive_data, data)

    def next_event(self) -> Event | NeedData:
        """The next event, or NEED_DATA. Protocol errors come back as ConnectionClosed, never as exceptions."""
        if not self._events and not self._ended and self._pending_op is None:
            if self.record.buffered >= HEADER_LENGTH or self.reassembler.pending:  # else nothing to parse
                self._guarded(self._process_input)
            if not self._events and self._eof and self._pending_op is None and not self._ended:
                self._end(None, "peer closed the connection" if self.handshake_complete else "EOF in handshake")
        if self._events:
            return self._events.popleft()
        return NEED_DATA

    def complete_key_operation(self, op_id: int, result: bytes | BaseException) -> None:
        """Resume the handshake with the signature (or decrypted block), or with the error the key raised."""
        if self._ended:
            return  # the connection already failed; the late answer is dropped
        if op_id != self._pending_op or self._driver is None:
            raise TLSUsageError(f"no pending key operation {op_id}")
        self._pending_op = None
        driver = self._driver
        self._guarded(driver.complete_key_operation, result)
        if self._paused_input:
            paused, self._paused_input = bytes(self._paused_input), bytearray()
            if not self._ended:
                self._guarded(self.record.receive_data, paused)

    def send(self, data: bytes) -> None:
        """Queue application data (after HandshakeComplete)."""
        if self._failed or self.closed:
            raise TLSUsageError("connection is closed")
        if not self.handshake_complete:
            raise TLSUsageError("handshake not complete")
        if data:
            if self.version == TLS13 and self.record.write_key_update_due:
                self.update_key(request_peer_update=False)  # RFC 8446 §5.5 key usage limits
            self.record.write(APPLICATION_DATA, data)

    def close(self) -> None:
        """Queue close_notify; the connection sends nothing after it."""
        if self.closed or self._failed:
            return
        self.closed = True
        self.record.write(ALERT, _CLOSE_NOTIFY)

    def update_key(self, *, request_peer_update: bool = True) -> None:
        """Send a TLS 1.3 KeyUpdate (and switch our sending key)."""
        driver = self._driver
        if not self.handshake_complete or self.version != TLS13 or self.closed or driver is None:
            raise TLSUsageError("KeyUpdate needs an established TLS 1.3 connection")
        update = getattr(driver, "update_sending_key")  # noqa: B009 - TLS 1.3 driver only
        update(request_peer_update=request_peer_update)

    def data_to_send(self) -> bytes:
        return self.record.data_to_send()

    # ---- HandshakeHost ------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def request_key_operation(
        self, key: AsyncPrivateKey, kind: Literal["sign", "decrypt"], scheme: SignatureScheme | None, data: bytes,
        server_name: str | None,
    ) -> None:
        """``server_name``: the SNI the certificate (and so ``key``) was chosen for; the key server sees it."""
        op_id = self._next_op_id
        self._next_op_id += 1
        self._pending_op = op_id
        self._events.append(KeyOperationRequired(op_id=op_id, key=key, kind=kind, scheme=scheme, data=data,
                                                 server_name=server_name))

    def check_key_change_allowed(self) -> None:
        """RFC 8446 §5.1: a key change must fall on a record boundary."""
        if self.reassembler.pending:
            raise TLSAlert(AlertDescription.unexpected_message, "handshake data spans a key change")

    def set_read_key_tls13(self, suite: CipherSuite13, secret: bytes) -> None:
        self.check_key_change_allowed()
        self.record.set_read_key_tls13(suite, secret)

    def skip_early_data(self) -> None:
        skip = getattr(self.record, "skip_early_data", None)
        if skip is not None:
            skip(16384)

    def finish_handshake(self, info: HandshakeComplete) -> None:
        self.handshake_complete = True
        self._events.append(info)

    # ---- input processing ---------------------------------------------------------------------------

    def _process_input(self) -> None:
        while not self._events and self._pending_op is None and not self._ended:
            if self._next_handshake_message():
                continue
            record = self.record.next_record()
            if record is None:
                return
            self._handle_record(record)

    def _next_handshake_message(self) -> bool:
        message = self.reassembler.next_message()
        if message is None:
            return False
        self._handle_handshake_message(*message)
        return True

    def _handle_handshake_message(self, msg_type: int, body: bytes, raw: bytes) -> None:
        self._useless_records = 0
        if self._driver is None:
            self._start_handshake(msg_type, raw)
        else:
            self._driver.handle_message(msg_type, body, raw)

    def _handle_record(self, record: Record) -> None:
        # Content types as plain ints (record.py's): an IntEnum member lookup costs ~50 ns, and this runs per record.
        content_type = record.content_type
        payload = record.payload
        if content_type == HANDSHAKE:
            if not payload:
                raise TLSAlert(AlertDescription.unexpected_message, "empty handshake record")
            message = self.reassembler.whole_message(payload)
            if message is not None:
                self._handle_handshake_message(*message)
            else:
                self.reassembler.feed(payload)
            return
        if self.reassembler.pending:
            raise TLSAlert(AlertDescription.unexpected_message, "record interleaved with a handshake message")
        if content_type == APPLICATION_DATA:
            self._handle_application_data(payload)
        elif content_type == ALERT:
            self._handle_alert(payload)
        elif content_type == CHANGE_CIPHER_SPEC:
            if self._driver is None:
                raise TLSAlert(AlertDescription.unexpected_message, "change_cipher_spec before ClientHello")
            self._count_useless()
            self._driver.handle_change_cipher_spec(payload)
        else:
            raise TLSAlert(AlertDescription.unexpected_message, f"content type {content_type}")

    def _handle_application_data(self, payload: bytes) -> None:
        if not self.handshake_complete or self._driver is None:
            raise TLSAlert(AlertDescription.unexpected_message, "application data before the handshake completed")
        if not payload:
            self._count_useless()
            return
        self._useless_records = 0
        self._driver.note_application_data()
        self._events.append(ApplicationData(payload))

    def _handle_alert(self, payload: bytes) -> None:
        if len(payload) != 2:
            raise TLSAlert(AlertDescription.decode_error, "alert record is not two bytes")
        level, description = payload[0], payload[1]
        if level not in (AlertLevel.WARNING, AlertLevel.FATAL):
            raise TLSAlert(AlertDescription.illegal_parameter, "bad alert level")
        if description == AlertDescription.close_notify:
            self._events.append(AlertReceived(level, description))
            self._end(None, "peer sent close_notify")
            return
        tolerated_warning = level == AlertLevel.WARNING and (
            description == AlertDescription.user_canceled or self.version == TLS12
        )
        self._events.append(AlertReceived(level, description))
        if tolerated_warning:
            self._count_useless()
            return
        try:
            name = AlertDescription(description).name
        except ValueError:
            name = str(description)
        self._failed = True
        self._end(None, f"peer sent alert {name}")

    def _count_useless(self) -> None:
        self._useless_records += 1
        if self._useless_records > MAX_USELESS_RECORDS:
            raise TLSAlert(AlertDescription.unexpected_message, "too many records without progress")

    def _start_handshake(self, msg_type: int, raw: bytes) -> None:
        if msg_type != HandshakeType.client_hello:
            raise TLSAlert(AlertDescription.unexpected_message, "expected ClientHello")
        hello = messages.parse_client_hello(raw)
        self.server_name = hello.server_name
        self.version = self._choose_version(hello)
        choose_config = self.config.config_for_client
        if choose_config is not None:  # before the driver starts: it reads the config once
            self.config = choose_config(client_hello_info(hello, self.version)) or self.config
        self.record.negotiated_version = self.version
        if self.version == TLS13:
            self._driver = ServerHandshake13(self)
        else:
            self._driver = ServerHandshake12(self)
        self._driver.process_client_hello(hello)

    def _choose_version(self, hello: ClientHello) -> int:
        offered = hello.supported_versions
        if offered is not None:
            if TLS13 in offered and self.config.enable_tls13:
                return TLS13
            if TLS12 in offered and self.config.enable_tls12:
                return self._check_fallback(hello)
        elif hello.legacy_version >= TLS12 and self.config.enable_tls12:
            return self._check_fallback(hello)
        raise TLSAlert(AlertDescription.protocol_version, "no protocol version in common")

    def _check_fallback(self, hello: ClientHello) -> int:
        """RFC 7507: a client retrying with a lower version says so; we could have done 1.3, so refuse."""
        if TLS_FALLBACK_SCSV in hello.cipher_suites and self.config.enable_tls13:
            raise TLSAlert(AlertDescription.inappropriate_fallback, "TLS_FALLBACK_SCSV below our highest version")
        return TLS12

    # ---- errors ---------------------------------------------------------------------------------------

    def _guarded(self, action: Callable[..., None], *args: object) -> None:
        try:
            action(*args)
        except TLSAlert as alert:
            self._fail(alert)
        except Exception:
            log.exception("bug: unexpected exception in the TLS engine")
            self._fail(TLSAlert(AlertDescription.internal_error, "internal error"))

    def _fail(self, alert: TLSAlert) -> None:
        if self._ended:
            return
        log.debug("TLS connection failed: %s", alert)
        self._failed = True
        self._pending_op = None
        if not self.closed:
            self.closed = True
            try:
                self.record.write(ContentType.alert, bytes((AlertLevel.FATAL, alert.description)))
            except Exception:
                log.exception("bug: could not queue the fatal alert")
        self._end(int(alert.description), alert.message or alert.description.name)

    def _end(self, alert_sent: int | None, reason: str) -> None:
        self._ended = True
        self._pending_op = None
        self._events.append(ConnectionClosed(alert_sent=alert_sent, reason=reason))
