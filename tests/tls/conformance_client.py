"""A hand-driven TLS client over a real socket for conformance tests in the style of tlsfuzzer's scripts.

Tests build a ClientHello field by field (``Hello``), send it to a real server, and read what comes back:
the server's handshake messages, and the alert it ends with, by name. For TLS 1.3 the client runs the key
schedule (``keyless.tls.key_schedule``, checked against OpenSSL and RFC 8448 elsewhere) far enough to read
the server's encrypted alert and to send its own Finished, so it can also probe what follows ServerHello.

Nothing here sleeps: reads block on the socket with a generous timeout that only decides failure.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyless.tls import key_schedule as ks
from keyless.tls.alerts import AlertDescription
from keyless.tls.codec import Reader, Writer, handshake_message
from keyless.tls.extensions import ExtensionType as Ext
from keyless.tls.messages import HELLO_RETRY_REQUEST_RANDOM
from keyless.tls.record import HandshakeReassembler, RecordLayer
from keyless.tls.suites import TLS13_SUITES_BY_CODE, CipherSuite13, NamedGroup

TIMEOUT = 20.0  # decides failure only; a reply normally arrives in milliseconds
X25519 = int(NamedGroup.X25519)
P256 = int(NamedGroup.SECP256R1)
P384 = int(NamedGroup.SECP384R1)
SIGALGS = (0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0807, 0x0401, 0x0501)
TLS13_SUITES = (0x1301, 0x1302, 0x1303)
TLS12_SUITES = (0xC02B, 0xC02F, 0xC02C, 0xC030)


# ---- extension bodies --------------------------------------------------------------------------------


def u16_list(values: tuple[int, ...] | list[int]) -> bytes:
    return (2 * len(values)).to_bytes(2, "big") + b"".join(v.to_bytes(2, "big") for v in values)


def sni(name: bytes) -> bytes:
    entry = b"\x00" + len(name).to_bytes(2, "big") + name
    return len(entry).to_bytes(2, "big") + entry


def versions(*offered: int) -> bytes:
    return bytes((2 * len(offered),)) + b"".join(v.to_bytes(2, "big") for v in offered)


def key_share(shares: list[tuple[int, bytes]]) -> bytes:
    entries = b"".join(g.to_bytes(2, "big") + len(k).to_bytes(2, "big") + k for g, k in shares)
    return len(entries).to_bytes(2, "big") + entries


def alpn(*names: bytes) -> bytes:
    body = b"".join(bytes((len(n),)) + n for n in names)
    return len(body).to_bytes(2, "big") + body


@dataclass
class Hello:
    """A ClientHello as data: tests change one field (``replace``) and keep everything else valid."""

    extensions: list[tuple[int, bytes]]
    suites: tuple[int, ...] = TLS13_SUITES
    version: int = 0x0303
    random: bytes = bytes(range(32))
    session_id: bytes = bytes(32)
    compression: bytes = b"\x00"

    def message(self) -> bytes:
        w = Writer()
        w.u16(self.version)
        w.raw(self.random)
        w.opaque8(self.session_id)
        w.opaque16(b"".join(s.to_bytes(2, "big") for s in self.suites))
        w.opaque8(self.compression)
        with w.block(2):
            for ext_type, body in self.extensions:
                w.u16(ext_type)
                w.opaque16(body)
        return handshake_message(1, w.getvalue())

    def with_extension(self, ext_type: int, body: bytes) -> Hello:
        """Replace the extension of that type in place, or append it (before a pre_shared_key)."""
        exts = list(self.extensions)
        for i, (t, _) in enumerate(exts):
            if t == ext_type:
                exts[i] = (ext_type, body)
                return replace(self, extensions=exts)
        at = len(exts) - 1 if exts and exts[-1][0] == Ext.pre_shared_key else len(exts)
        exts.insert(at, (ext_type, body))
        return replace(self, extensions=exts)

    def without(self, *ext_types: int) -> Hello:
        return replace(self, extensions=[(t, b) for t, b in self.extensions if t not in ext_types])


@dataclass
class KeyShares:
    """The client's ephemeral keys, so the TLS 1.3 client can finish what it starts."""

    x25519_key: x25519.X25519PrivateKey = field(default_factory=x25519.X25519PrivateKey.generate)
    p256_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def public(self, group: int) -> bytes:
        if group == X25519:
            return self.x25519_key.public_key().public_bytes_raw()
        if group == P256:
            return self.p256_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        raise ValueError(group)

    def shared(self, group: int, server_public: bytes) -> bytes:
        if group == X25519:
            return self.x25519_key.exchange(x25519.X25519PublicKey.from_public_bytes(server_public))
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), server_public)
        return self.p256_key.exchange(ec.ECDH(), public)


def tls13_hello(keys: KeyShares, *, name: bytes = b"keyless.test", shares: tuple[int, ...] = (X25519,)) -> Hello:
    """What a TLS 1.3 client sends (OpenSSL's shape, middlebox-compatibility session id included)."""
    return Hello(
        extensions=[
            (Ext.server_name, sni(name)),
            (Ext.supported_groups, u16_list((X25519, P256, P384))),
            (Ext.signature_algorithms, u16_list(SIGALGS)),
            (Ext.supported_versions, versions(0x0304)),
            (Ext.psk_key_exchange_modes, b"\x01\x01"),
            (Ext.key_share, key_share([(g, keys.public(g)) for g in shares])),
        ]
    )


def tls12_hello(*, name: bytes = b"keyless.test") -> Hello:
    return Hello(
        suites=TLS12_SUITES,
        session_id=b"",
        extensions=[
            (Ext.server_name, sni(name)),
            (Ext.supported_groups, u16_list((X25519, P256, P384))),
            (Ext.ec_point_formats, b"\x01\x00"),
            (Ext.signature_algorithms, u16_list(SIGALGS)),
            (Ext.extended_master_secret, b""),
            (Ext.renegotiation_info, b"\x00"),
        ],
    )


def record(content_type: int, payload: bytes, version: bytes = b"\x03\x03") -> bytes:
    return bytes((content_type,)) + version + len(payload).to_bytes(2, "big") + payload


def records(content_type: int, payload: bytes, version: bytes = b"\x03\x01") -> bytes:
    """``payload`` cut into plaintext records of at most 2^14 bytes."""
    return b"".join(record(content_type, payload[i : i + 16384], version) for i in range(0, len(payload), 16384))


# ---- the client ------------------------------------------------------------------------------------


class ServerAlert(Exception):
    def __init__(self, description: int) -> None:
        try:
            name = AlertDescription(description).name
        except ValueError:
            name = str(description)
        super().__init__(name)
        self.name = name


@dataclass
class ServerMessage:
    msg_type: int
    body: bytes
    raw: bytes


class RawClient:
    """One connection. ``read_message`` returns the server's next handshake message or raises ServerAlert."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.layer = RecordLayer()  # our engine's record layer, used here for the client's direction
        self.reassembler = HandshakeReassembler(max_message_size=1 << 20)
        self.application_data = b""
        self.ccs_received = 0
        self._write_aead: AESGCM | ChaCha20Poly1305 | None = None
        self._write_iv = 0
        self._write_seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def set_write_key(self, suite: CipherSuite13, secret: bytes) -> None:
        key = ks.hkdf_expand_label(suite.hash_name, secret, b"key", b"", suite.key_length)
        self._write_aead = suite.aead(key)
        self._write_iv = int.from_bytes(ks.hkdf_expand_label(suite.hash_name, secret, b"iv", b"", 12), "big")
        self._write_seq = 0

    def send_protected(self, content_type: int, payload: bytes, version: bytes = b"\x03\x03") -> None:
        """One TLS 1.3 record (RFC 8446 §5.2), sealed here so the outer version can be anything."""
        inner = payload + bytes((content_type,))
        header = b"\x17" + version + (len(inner) + 16).to_bytes(2, "big")
        nonce = (self._write_iv ^ self._write_seq).to_bytes(12, "big")
        self._write_seq += 1
        assert self._write_aead is not None, "no write key yet"
        self.sock.sendall(header + self._write_aead.encrypt(nonce, inner, header))

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection without an alert")
        self.layer.receive_data(data)

    def read_message(self) -> ServerMessage:
        while True:
            message = self.reassembler.next_message()
            if message is not None:
                return ServerMessage(*message)
            rec = self.layer.next_record()
            if rec is None:
                self._fill()
                continue
            if rec.content_type == 21:
                raise ServerAlert(rec.payload[1])
            if rec.content_type == 22:
                self.reassembler.feed(rec.payload)
            elif rec.content_type == 20:
                self.ccs_received += 1
            elif rec.content_type == 23:
                self.application_data += rec.payload
                return ServerMessage(-1, rec.payload, b"")

    def alert(self) -> str:
        """Read until the server's alert; its name (fails if the server answers anything else)."""
        try:
            while True:
                message = self.read_message()
                if message.msg_type == 2:  # the server accepted the hello (it may still fail later)
                    return "HelloRetryRequest" if message.body[2:34] == HELLO_RETRY_REQUEST_RANDOM else "ServerHello"
        except ServerAlert as alert:
            return alert.name


def outcome(port: int, hello: bytes | Hello, *, version: bytes = b"\x03\x01") -> str:
    """Send one ClientHello; "ServerHello" if the server answers it, else the name of its alert."""
    raw = hello.message() if isinstance(hello, Hello) else hello
    with RawClient(port) as client:
        client.send(records(22, raw, version))
        return client.alert()


def server_hello_extensions(message: ServerMessage) -> dict[int, bytes]:
    r = Reader(message.body)
    r.u16()
    r.read(32)
    r.opaque8()
    r.u16()
    r.u8()
    out: dict[int, bytes] = {}
    if not r.at_end():
        block = r.vec16()
        while not block.at_end():
            ext_type = block.u16()
            out[ext_type] = block.opaque16()
    return out


class Tls13Handshake:
    """A TLS 1.3 client handshake, step by step, so a test can misbehave at any one step."""

    def __init__(self, client: RawClient, keys: KeyShares) -> None:
        self.client = client
        self.keys = keys
        self.transcript: ks.Transcript | None = None
        self.first_hello = b""
        self.suite = TLS13_SUITES_BY_CODE[0x1301]
        self._client_hs = b""
        self._server_hs = b""
        self._hs: ks.HandshakeSecret | None = None

    def send_hello(self, hello: Hello, *, version: bytes = b"\x03\x01") -> None:
        raw = hello.message()
        if self.transcript is None:
            self.first_hello = raw
        else:
            self.transcript.update(raw)
        self.client.send(records(22, raw, version))

    def read_server_hello(self) -> tuple[bool, int, dict[int, bytes]]:
        """(is a HelloRetryRequest, group, extensions); raises ServerAlert."""
        message = self.client.read_message()
        assert message.msg_type == 2, f"expected ServerHello, got {message.msg_type}"
        suite_code = int.from_bytes(message.body[35 + message.body[34] : 37 + message.body[34]], "big")
        self.suite = TLS13_SUITES_BY_CODE[suite_code]
        exts = server_hello_extensions(message)
        retry = message.body[2:34] == HELLO_RETRY_REQUEST_RANDOM
        if self.transcript is None:
            self.transcript = ks.Transcript(self.suite.hash_name)
            self.transcript.update(self.first_hello)
        if retry:
            self.transcript.restart_after_hello_retry()  # message_hash(ClientHello1), then the HRR itself
            self.transcript.update(message.raw)
            return True, int.from_bytes(exts[Ext.key_share], "big"), exts
        self.transcript.update(message.raw)
        share = Reader(exts[Ext.key_share])
        group = share.u16()
        server_public = share.opaque16()
        shared = self.keys.shared(group, server_public)
        self._hs = ks.EarlySecret.without_psk(self.suite).handshake_secret(shared)
        digest = self.transcript.digest()
        self._client_hs = self._hs.client_handshake_traffic_secret(digest)
        self._server_hs = self._hs.server_handshake_traffic_secret(digest)
        self.client.layer.set_read_key_tls13(self.suite, self._server_hs)
        self.client.set_write_key(self.suite, self._client_hs)
        return False, group, exts

    def read_server_flight(self) -> list[int]:
        """EncryptedExtensions … server Finished; returns the message types. Raises ServerAlert."""
        assert self.transcript is not None and self._hs is not None
        types: list[int] = []
        while True:
            message = self.client.read_message()
            types.append(message.msg_type)
            self.transcript.update(message.raw)
            if message.msg_type == 20:
                break
        master = self._hs.master_secret()
        digest = self.transcript.digest()
        self._server_app = master.server_application_traffic_secret(digest)
        self._client_app = master.client_application_traffic_secret(digest)
        return types

    def client_finished(self) -> bytes:
        assert self.transcript is not None
        verify = ks.finished_verify_data(self.suite.hash_name, self._client_hs, self.transcript.digest())
        return handshake_message(20, verify)

    def send_finished(self, message: bytes | None = None, *, version: bytes = b"\x03\x03") -> None:
        """Our Finished (or ``message`` in its place), then switch to the application keys."""
        self.client.send_protected(22, message if message is not None else self.client_finished(), version)
        self.client.layer.set_read_key_tls13(self.suite, self._server_app)
        self.client.set_write_key(self.suite, self._client_app)

    def echo(self, data: bytes, *, version: bytes = b"\x03\x03") -> bytes:
        """Send application data; the echo server answers with the same bytes (proves the handshake is done)."""
        self.client.send_protected(23, data, version)
        while len(self.client.application_data) < len(data):
            message = self.client.read_message()
            assert message.msg_type in (-1, 4), f"unexpected handshake message {message.msg_type}"
        return self.client.application_data


def full_handshake(port: int, hello: Hello, keys: KeyShares) -> str:
    """Drive a whole TLS 1.3 handshake with ``hello``; "ok" if application data echoes, else the alert."""
    with RawClient(port) as client:
        hs = Tls13Handshake(client, keys)
        try:
            hs.send_hello(hello)
            retry, _, _ = hs.read_server_hello()
            assert not retry
            hs.read_server_flight()
            hs.send_finished()
            return "ok" if hs.echo(b"ping\n") == b"ping\n" else "wrong echo"
        except ServerAlert as alert:
            return alert.name
