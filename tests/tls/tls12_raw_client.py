"""A minimal, hand-driven TLS 1.2 client for tests that real clients cannot express: chosen premaster blocks
for RSA key exchange, wrong Finished, out-of-order messages, renegotiation, EMS on/off.

It talks to a ``TLSServerConnection`` in memory. Its key derivation uses ``keyless.tls.tls12_prf`` (checked
against tlslite-ng in test_tls12_prf.py) and the record layer's TLS 1.2 AEAD (exercised against OpenSSL in
the handshake tests); everything else (messages, the RSA encryption, ECDH) is written here from the RFCs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyless.tls import tls12_prf
from keyless.tls.codec import Reader, Writer, handshake_message
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import NEED_DATA, ConnectionClosed, Event, KeyOperationRequired
from keyless.tls.record import HandshakeReassembler, RecordLayer
from keyless.tls.tls12_suites import TLS12_SUITES_BY_CODE, CipherSuite12
from tests.tls.tls12_helpers import HOSTNAME, answer

ECDHE_ECDSA_AES128 = 0xC02B
ECDHE_RSA_AES128 = 0xC02F
RSA_AES128 = 0x009C
RSA_AES256 = 0x009D
DEFAULT_SIGALGS = (0x0403, 0x0503, 0x0804, 0x0805, 0x0401, 0x0501, 0x0807)


@dataclass
class ServerFlight:
    handshake: list[tuple[int, bytes]] = field(default_factory=list)  # (type, raw message)
    alerts: list[tuple[int, int]] = field(default_factory=list)
    ccs: int = 0
    application_data: list[bytes] = field(default_factory=list)

    def types(self) -> list[int]:
        return [t for t, _ in self.handshake]


class RawClient12:
    def __init__(
        self,
        conn: TLSServerConnection,
        *,
        suites: tuple[int, ...] = (ECDHE_ECDSA_AES128,),
        ems: bool = True,
        version: int = 0x0303,
        session_id: bytes = b"",
        ticket: bytes | None = None,
        sni: str | None = HOSTNAME,
        groups: tuple[int, ...] = (0x001D, 0x0017),
        sigalgs: tuple[int, ...] = DEFAULT_SIGALGS,
        decrypt_result: Callable[[bytes], bytes | BaseException] | None = None,
        renegotiation_info: bytes = b"",
    ) -> None:
        self.conn = conn
        self.suites, self.ems, self.version = suites, ems, version
        self.session_id, self.ticket, self.sni = session_id, ticket, sni
        self.groups, self.sigalgs = groups, sigalgs
        self.renegotiation_info = renegotiation_info
        self.decrypt_result = decrypt_result  # replaces the key's answer to a decrypt operation
        self.random = os.urandom(32)
        self.out = RecordLayer()
        self.inbound = RecordLayer()
        self.reassembler = HandshakeReassembler()
        self.transcript = bytearray()
        self.events: list[Event] = []
        self.key_operations: list[KeyOperationRequired] = []
        self.suite: CipherSuite12 | None = None
        self.server_random = b""
        self.server_session_id = b""
        self.server_certificate: x509.Certificate | None = None
        self.ske_params = b""
        self.master = b""
        self.new_ticket: bytes | None = None

    # ---- sending -----------------------------------------------------------------------------------

    def client_hello(self, extra_extensions: bytes = b"") -> bytes:
        w = Writer()
        w.u16(self.version)
        w.raw(self.random)
        w.opaque8(self.session_id)
        with w.block(2):
            for suite in self.suites:
                w.u16(suite)
        w.opaque8(b"\x00")
        with w.block(2):
            if self.sni is not None:
                name = self.sni.encode()
                w.u16(0)
                with w.block(2), w.block(2):
                    w.u8(0)
                    w.opaque16(name)
            w.u16(10)
            with w.block(2), w.block(2):
                for g in self.groups:
                    w.u16(g)
            w.u16(11)
            w.opaque16(b"\x01\x00")
            w.u16(13)
            with w.block(2), w.block(2):
                for s in self.sigalgs:
                    w.u16(s)
            if self.ems:
                w.u16(23)
                w.u16(0)
            w.u16(0xFF01)
            w.opaque16(bytes((len(self.renegotiation_info),)) + self.renegotiation_info)
            if self.ticket is not None:
                w.u16(35)
                w.opaque16(self.ticket)
            w.raw(extra_extensions)
        return handshake_message(1, w.getvalue())

    def send_handshake(self, message: bytes, *, hash_it: bool = True) -> None:
        if hash_it:
            self.transcript += message
        self.out.write(22, message)
        self.flush()

    def send_record(self, content_type: int, payload: bytes) -> None:
        self.out.write(content_type, payload)
        self.flush()

    def send_raw(self, data: bytes) -> None:
        self.conn.receive_data(data)

    def flush(self) -> None:
        data = self.out.data_to_send()
        if data:
            self.conn.receive_data(data)

    # ---- the server's side ------------------------------------------------------------------------------

    def pump(self) -> ServerFlight:
        """Drain the server's events (answering key operations) and parse what it sent."""
        for _ in range(100):
            event = self.conn.next_event()
            if event is NEED_DATA:
                break
            self.events.append(event)
            if isinstance(event, KeyOperationRequired):
                self.key_operations.append(event)
                result: bytes | BaseException
                if event.kind == "decrypt" and self.decrypt_result is not None:
                    result = self.decrypt_result(event.data)
                else:
                    try:
                        result = answer(event)
                    except Exception as exc:
                        result = exc
                self.conn.complete_key_operation(event.op_id, result)
            if isinstance(event, ConnectionClosed):
                break
        flight = ServerFlight()
        self.inbound.receive_data(self.conn.data_to_send())
        while (record := self.inbound.next_record()) is not None:
            if record.content_type == 21:
                flight.alerts.append((record.payload[0], record.payload[1]))
            elif record.content_type == 20:
                flight.ccs += 1
                key, iv = self.server_write_key()
                assert self.suite is not None
                self.inbound.set_read_key_tls12(self.suite, key, iv)
            elif record.content_type == 23:
                flight.application_data.append(record.payload)
            else:
                self.reassembler.feed(record.payload)
                while (message := self.reassembler.next_message()) is not None:
                    msg_type, body, raw = message
                    flight.handshake.append((msg_type, raw))
                    self.on_server_message(msg_type, body, raw)
        return flight

    @property
    def closed(self) -> ConnectionClosed | None:
        found = [e for e in self.events if isinstance(e, ConnectionClosed)]
        return found[0] if found else None

    def on_server_message(self, msg_type: int, body: bytes, raw: bytes) -> None:
        if msg_type != 20:
            self.transcript += raw  # Finished is checked (and hashed) by the caller
        r = Reader(body)
        if msg_type == 2:
            r.u16()
            self.server_random = r.read(32)
            self.server_session_id = r.opaque8()
            self.suite = TLS12_SUITES_BY_CODE[r.u16()]
        elif msg_type == 11:
            certs = r.vec24()
            self.server_certificate = x509.load_der_x509_certificate(certs.opaque24())
        elif msg_type == 12:
            r.u8()
            r.u16()
            r.opaque8()
            self.ske_params = body[: r.position]
        elif msg_type == 4:
            r.u32()
            self.new_ticket = r.opaque16()

    # ---- key exchange and Finished --------------------------------------------------------------------

    def ecdhe_key_exchange(self) -> bytes:
        """Returns the premaster after sending ClientKeyExchange (x25519 only)."""
        group = int.from_bytes(self.ske_params[1:3], "big")
        assert group == 0x001D
        private = x25519.X25519PrivateKey.generate()
        premaster = private.exchange(x25519.X25519PublicKey.from_public_bytes(self.ske_params[4:]))
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.send_handshake(handshake_message(16, bytes((len(public),)) + public))
        return premaster

    def rsa_public(self) -> rsa.RSAPublicKey:
        assert self.server_certificate is not None
        public = self.server_certificate.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        return public

    def rsa_encrypt_block(self, block: bytes) -> bytes:
        """Textbook RSA of a chosen k-byte block (so the padding can be anything)."""
        numbers = self.rsa_public().public_numbers()
        k = (numbers.n.bit_length() + 7) // 8
        m = int.from_bytes(block, "big")
        return pow(m, numbers.e, numbers.n).to_bytes(k, "big")

    def rsa_key_exchange(self, premaster: bytes | None = None, ciphertext: bytes | None = None) -> bytes:
        premaster = premaster if premaster is not None else self.version.to_bytes(2, "big") + os.urandom(46)
        if ciphertext is None:
            ciphertext = self.rsa_public().encrypt(premaster, padding.PKCS1v15())
        self.send_handshake(handshake_message(16, len(ciphertext).to_bytes(2, "big") + ciphertext))
        return premaster

    def hash_name(self) -> str:
        assert self.suite is not None
        return self.suite.hash_name

    def digest(self) -> bytes:
        return hashlib.new(self.hash_name(), bytes(self.transcript)).digest()

    def derive(self, premaster: bytes) -> None:
        if self.ems:
            self.master = tls12_prf.extended_master_secret(self.hash_name(), premaster, self.digest())
        else:
            self.master = tls12_prf.master_secret(self.hash_name(), premaster, self.random, self.server_random)

    def key_block(self) -> tuple[bytes, bytes, bytes, bytes]:
        assert self.suite is not None
        s = self.suite
        block = tls12_prf.key_block(s.hash_name, self.master, self.server_random, self.random, s.key_block_length)
        k, iv = s.key_length, s.fixed_iv_length
        return block[:k], block[k : 2 * k], block[2 * k : 2 * k + iv], block[2 * k + iv : 2 * k + 2 * iv]

    def server_write_key(self) -> tuple[bytes, bytes]:
        _, server_key, _, server_iv = self.key_block()
        return server_key, server_iv

    def change_cipher_spec(self) -> None:
        client_key, _, client_iv, _ = self.key_block()
        self.send_record(20, b"\x01")
        assert self.suite is not None
        self.out.set_write_key_tls12(self.suite, client_key, client_iv)

    def finished(self, verify_data: bytes | None = None) -> None:
        expected = tls12_prf.finished_verify_data(
            self.hash_name(), self.master, tls12_prf.CLIENT_FINISHED, self.digest()
        )
        self.send_handshake(handshake_message(20, expected if verify_data is None else verify_data))

    def check_server_finished(self, flight: ServerFlight) -> bool:
        raw = dict(flight.handshake).get(20)
        if raw is None:
            return False
        expected = tls12_prf.finished_verify_data(
            self.hash_name(), self.master, tls12_prf.SERVER_FINISHED, self.digest()
        )
        self.transcript += raw
        return raw[4:] == expected

    # ---- whole handshakes ----------------------------------------------------------------------------

    def full_handshake(self) -> ServerFlight:
        """ClientHello → server flight → key exchange, CCS, Finished → the server's last flight."""
        self.send_handshake(self.client_hello())
        self.pump()
        assert self.suite is not None, self.events
        premaster = self.ecdhe_key_exchange() if self.suite.ecdhe else self.rsa_key_exchange()
        self.derive(premaster)
        self.change_cipher_spec()
        self.finished()
        flight = self.pump()
        assert self.check_server_finished(flight), (flight, self.events)
        return flight

    def application_data(self, data: bytes) -> None:
        self.send_record(23, data)


def alert_of(client: RawClient12) -> Any:
    closed = client.closed
    return closed.alert_sent if closed is not None else None
