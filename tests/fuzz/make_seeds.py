"""Write the seed corpora under tests/fuzz/corpus/<target>/: ``python -m tests.fuzz.make_seeds``.

Sources: the ClientHellos real clients sent (tests/fuzz/data/hellos, from ``record_hellos``; plus the ones
the TLS tests keep in tests/tls/data), whole client flights recorded from Python's OpenSSL client talking to
our engine in memory under the fuzz targets' fixed configuration (full handshakes, HelloRetryRequest, PSK
resumption with valid binders, client authentication, TLS 1.2 ECDHE and RSA key exchange, ticket resumption,
a cached session ID), keyless frames as the wire tests send them, and the examples' configuration files.
Regenerating rewrites the files (tickets and signatures differ from run to run; what they mean does not).
"""

from __future__ import annotations

import hashlib
import shutil
import ssl
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from keyless.client.core import Request
from keyless.keys.store import LocalKeyHandle
from keyless.protocol import Message, Opcode, Tag, encode_message
from keyless.sentinel import NeedData
from keyless.server.connection import encode_reply
from keyless.tls import messages
from keyless.tls.codec import Writer, handshake_message
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import KeyOperationRequired
from keyless.tls.record import RecordLayer
from keyless.tls.tickets import SessionState
from tests.fuzz import fuzz_tls_engine as engine
from tests.fuzz import fuzz_tls_record as record
from tests.fuzz import fuzz_tls_tickets as tickets
from tests.fuzz import keys
from tests.fuzz.harness import quiet_logs

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
ROOT = HERE.parent.parent


def hellos() -> dict[str, bytes]:
    found = {p.stem: p.read_bytes() for p in sorted((HERE / "data" / "hellos").glob("*.bin"))}
    found.update({p.stem: p.read_bytes() for p in sorted((ROOT / "tests/tls/data").glob("client_hello_*.bin"))})
    return found


def framed(hello: bytes) -> bytes:
    return b"\x16\x03\x01" + len(hello).to_bytes(2, "big") + hello


class _Writer:
    def __init__(self) -> None:
        self.dirs: dict[str, Path] = {}

    def put(self, target: str, data: bytes, name: str | None = None) -> None:
        directory = self.dirs.get(target)
        if directory is None:
            directory = CORPUS / target
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            self.dirs[target] = directory
        (directory / (name or hashlib.sha1(data).hexdigest())).write_bytes(data)


# ---- TLS flights from Python's OpenSSL client against our engine, in memory ----------------------------


def _context(version: ssl.TLSVersion, *, client_cert: bool = False, ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    if client_cert:
        ctx.load_cert_chain(*_client_identity())
    return ctx


def _client_identity() -> tuple[Path, Path]:
    """The fuzz CA's client certificate and key as PEM files (the server's chain check accepts it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    _, client_key, leaf = keys.fuzz_ca()
    directory = Path(tempfile.mkdtemp(prefix="keyless-fuzz-client-"))
    cert_path, key_path = directory / "client.pem", directory / "client.key"
    cert_path.write_bytes(x509.load_der_x509_certificate(leaf).public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(client_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return cert_path, key_path


def flight(version: int, variant: int, ctx: ssl.SSLContext, session: Any = None) -> tuple[bytes, Any]:
    """All bytes the client sent in one connection (handshake, a request, close_notify), and its session."""
    cfg = engine.config(version, variant)
    if version == 12:
        from keyless.tls.session_cache import MemorySessionCache

        cfg = engine._with_cache(cfg, MemorySessionCache(now=engine._now))
    conn = TLSServerConnection(cfg)
    to_client, to_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(to_client, to_server, server_hostname=keys.HOSTNAME, session=session)
    sent = bytearray()

    def step() -> None:
        data = to_server.read()
        sent.extend(data)
        if data:
            conn.receive_data(data)
        for _ in range(100):
            event = conn.next_event()
            if isinstance(event, NeedData):
                break
            if isinstance(event, KeyOperationRequired):
                conn.complete_key_operation(event.op_id, engine._answer(event))
        to_client.write(conn.data_to_send())

    for _ in range(20):
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            step()
        except ssl.SSLError:
            step()
            return bytes(sent), None
    step()
    client.write(b"GET / HTTP/1.1\r\nHost: keyless.test\r\n\r\n")
    step()
    if not conn.handshake_complete or conn.closed:
        return bytes(sent), None
    conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    to_client.write(conn.data_to_send())
    try:
        client.read(1024)
    except ssl.SSLError:
        pass
    try:
        client.unwrap()
    except ssl.SSLError:
        pass
    step()
    return bytes(sent), client.session


def engine_seeds(out: _Writer) -> None:
    tls13 = ssl.TLSVersion.TLSv1_3
    tls12 = ssl.TLSVersion.TLSv1_2
    for name, hello in hellos().items():
        for variant in range(4):
            for version in (13, 12):
                out.put(f"tls{version}_engine", bytes((variant, 0xFF)) + framed(hello), f"{name}-v{variant}")
        out.put("tls_messages", b"\x00" + hello, f"client_hello-{name}")
        for ext_type, body in messages.parse_client_hello(hello).extensions:
            out.put("tls_messages", bytes((_EXTENSION_SELECTOR.get(ext_type, 0),)) + body)
    for variant in range(4):
        ctx = _context(tls13, client_cert=variant == 2)
        if variant == 3:
            ctx.set_alpn_protocols(["h2", "http/1.1"])
        first, session = flight(13, variant, ctx)
        out.put("tls13_engine", bytes((variant, 0xFF)) + first, f"python-flight-v{variant}")
        out.put("tls13_engine", bytes((variant, 0x10)) + first, f"python-flight-v{variant}-split")
        if session is not None:
            resumed, _ = flight(13, variant, ctx, session)
            out.put("tls13_engine", bytes((variant, 0xFF)) + resumed, f"python-psk-v{variant}")
    # TLS 1.2: ECDHE-ECDSA (variants 0, 2), RSA key exchange and ECDHE-RSA (variants 1, 3), tickets.
    for variant, ciphers in ((0, "ECDHE-ECDSA-AES128-GCM-SHA256"), (1, "AES128-GCM-SHA256"),
                             (2, "ECDHE-ECDSA-CHACHA20-POLY1305"), (3, "ECDHE-RSA-AES256-GCM-SHA384")):
        ctx = _context(tls12, client_cert=variant == 2, ciphers=ciphers)
        first, session = flight(12, variant, ctx)
        out.put("tls12_engine", bytes((variant, 0xFF)) + first, f"python-flight-v{variant}")
        out.put("tls12_engine", bytes((variant, 0x07)) + first, f"python-flight-v{variant}-split")
        if session is not None:
            resumed, _ = flight(12, variant, ctx, session)
            out.put("tls12_engine", bytes((variant, 0xFF)) + resumed, f"python-ticket-v{variant}")
        prefix = _through_ccs(first)
        request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        program = b"\x04\x01" + bytes((len(request),)) + request + b"\x00\x00\x04\x00\x00\x00\x00\x02\x01\x00"
        out.put("tls12_engine", bytes((0x80 | variant, 0xFF)) + len(prefix).to_bytes(2, "big") + prefix + program,
                f"peer-python-v{variant}")
    # A TLS 1.2 hello naming the session the fuzz target's cache holds.
    hello = _rebuilt(hellos()["python_tls12"], session_id=engine.CACHED_SESSION_ID)
    out.put("tls12_engine", b"\x00\xff" + framed(hello), "cached-session-id")
    peer_seeds(out)
    # A hello offering early data (refused), then 0-RTT records the server must skip.
    early = _rebuilt(hellos()["python"], add=(42, b""))
    junk = b"".join(b"\x17\x03\x03\x00\x20" + bytes(32) for _ in range(3))
    out.put("tls13_engine", b"\x00\xff" + framed(early) + junk, "early-data-refused")
    out.put("tls13_engine", b"\x01\xff" + framed(early) + junk, "early-data-after-hrr")


def _through_ccs(flight_bytes: bytes) -> bytes:
    """The recorded client bytes up to and including its ChangeCipherSpec record (TLS 1.2 peer-mode prefix)."""
    offset = 0
    while offset + 5 <= len(flight_bytes):
        end = offset + 5 + int.from_bytes(flight_bytes[offset + 3 : offset + 5], "big")
        if flight_bytes[offset] == 20:
            return flight_bytes[:end]
        offset = end
    return flight_bytes


def peer_seeds(out: _Writer) -> None:
    """tls13_engine in peer mode (first byte | 0x80): a real ClientHello, then the client's encrypted flight as a
    program the harness seals under the keys the server installs (see fuzz_tls_engine.peer_outcome)."""
    _, _, leaf = keys.fuzz_ca()
    certificate = handshake_message(11, b"\x00" + _u24(_u24(leaf) + b"\x00\x00"))
    empty_certificate = handshake_message(11, b"\x00\x00\x00\x00")
    key_update = handshake_message(24, b"\x01")

    def handshake(message: bytes) -> bytes:
        return b"\x00" + len(message).to_bytes(2, "big") + message

    request = b"GET / HTTP/1.1\r\nHost: keyless.test\r\n\r\n"
    after = b"\x01" + bytes((len(request),)) + request + handshake(key_update) + b"\x01\x02hi" + b"\x02\x01\x00"
    for name in ("python", "chromium", "curl_tls13", "openssl_tls13", "tlslite", "client_hello_rfc8448"):
        hello = framed(hellos()[name])
        prefix = len(hello).to_bytes(2, "big") + hello
        for variant in (0, 1, 3):
            out.put("tls13_engine", bytes((0x80 | variant, 0xFF)) + prefix + b"\x05\x04" + after,
                    f"peer-{name}-v{variant}")
        out.put("tls13_engine", b"\x82\xff" + prefix + handshake(certificate) + b"\x06\x04" + after,
                f"peer-{name}-client-auth")
        out.put("tls13_engine", b"\x82\xff" + prefix + handshake(empty_certificate) + b"\x04" + after,
                f"peer-{name}-no-client-cert")


def _rebuilt(hello: bytes, *, session_id: bytes | None = None, add: tuple[int, bytes] | None = None) -> bytes:
    """``hello`` with another session ID and/or one more extension (padding dropped, PSK kept last)."""
    parsed = messages.parse_client_hello(hello)
    exts = [(t, b) for t, b in parsed.extensions if t != 21 and (add is None or t != add[0])]
    psk = [(t, b) for t, b in exts if t == 41]
    exts = [(t, b) for t, b in exts if t != 41] + ([add] if add else []) + psk
    w = Writer()
    w.u16(parsed.legacy_version)
    w.raw(parsed.random)
    w.opaque8(parsed.legacy_session_id if session_id is None else session_id)
    with w.block(2):
        for suite in parsed.cipher_suites:
            w.u16(suite)
    w.opaque8(parsed.compression_methods)
    with w.block(2):
        for t, b in exts:
            w.u16(t)
            w.opaque16(b)
    body_bytes = w.getvalue()
    return b"\x01" + len(body_bytes).to_bytes(3, "big") + body_bytes


# selector of tests.fuzz.fuzz_tls_messages.PARSERS for an extension type
_EXTENSION_SELECTOR = {0: 1, 43: 2, 10: 3, 51: 4, 45: 5, 16: 6, 5: 7, 44: 8, 28: 9, 0xFF01: 10, 11: 11, 41: 12, 42: 13}


def message_seeds(out: _Writer) -> None:
    from tests.fuzz.fuzz_tls_messages import PARSERS

    index = {name: i for i, (name, _) in enumerate(PARSERS)}
    ca, client_key, leaf = keys.fuzz_ca()
    out.put("tls_messages", bytes((index["finished"],)) + bytes(range(32)))
    out.put("tls_messages", bytes((index["key_update"],)) + b"\x01")
    chain13 = b"\x00" + _u24(_u24(leaf) + b"\x00\x00")
    out.put("tls_messages", bytes((index["certificate13"],)) + chain13)
    out.put("tls_messages", bytes((index["certificate12_chain"],)) + _u24(_u24(leaf)))
    signature = client_key.sign(b"signed content", ec.ECDSA(hashes.SHA256()))
    out.put("tls_messages", bytes((index["certificate_verify"],)) + b"\x04\x03" + struct.pack(">H", len(signature))
            + signature)
    point = client_key.public_key().public_bytes(*_uncompressed())
    out.put("tls_messages", bytes((index["ecdhe_client_key_exchange"],)) + bytes((len(point),)) + point)
    out.put("tls_messages", bytes((index["rsa_client_key_exchange"],)) + b"\x01\x00" + bytes(256))
    psk = b"\x00\x0a\x00\x04abcd\x00\x00\x00\x01\x00\x21\x20" + bytes(32)
    out.put("tls_messages", bytes((index["pre_shared_key"],)) + psk)
    del ca


def _u24(data: bytes) -> bytes:
    return len(data).to_bytes(3, "big") + data


def _uncompressed() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return Encoding.X962, PublicFormat.UncompressedPoint


# ---- record layer ---------------------------------------------------------------------------------------


def record_seeds(out: _Writer) -> None:
    for mode_index, mode in enumerate(record.MODES):
        for flags in (0, 1, 2):
            program = bytearray()
            if mode == "plaintext":
                ccs, alert = b"\x14\x03\x03\x00\x01\x01", b"\x15\x03\x03\x00\x02\x01\x00"
                program += _raw_program(framed(hellos()["python"]) + ccs + alert)
            else:
                for content_type, body in ((22, b"\x14\x00\x00\x20" + bytes(32)), (23, b"hello"), (21, b"\x01\x00")):
                    inner = body + bytes((content_type,)) if mode in record._SUITES13 else body
                    outer = 23 if mode in record._SUITES13 else content_type
                    program += b"\x04" + bytes((outer,)) + len(inner).to_bytes(2, "big") + inner
                program += b"\x00\x06\x14\x03\x03\x00\x01\x01"  # a plaintext CCS among them
            out.put("tls_record", bytes((mode_index, flags, 0xFF)) + program, f"{mode}-{flags}")
            out.put("tls_record", bytes((mode_index, flags, 0x02)) + program, f"{mode}-{flags}-split")
    sender = RecordLayer()
    sender.write(22, hellos()["chromium"])
    out.put("tls_record", b"\x00\x00\x05" + _raw_program(sender.data_to_send()), "chromium-hello-records")


def _raw_program(wire: bytes) -> bytes:
    program = bytearray()
    for start in range(0, len(wire), 255):
        piece = wire[start : start + 255]
        program += b"\x00" + bytes((len(piece),)) + piece
    return bytes(program)


# ---- keyless frames ---------------------------------------------------------------------------------------


def keyless_seeds(out: _Writer) -> None:
    from tests.fuzz.fuzz_keyless_frames import store

    handles = list(store())
    digest = hashlib.sha256(b"to be signed").digest()
    frames: list[bytes] = []
    for i, handle in enumerate(handles):
        assert isinstance(handle, LocalKeyHandle)
        for opcode in (Opcode.ECDSA_SIGN_SHA256, Opcode.RSA_SIGN_SHA256, Opcode.RSA_PSS_SIGN_SHA256,
                       Opcode.ED25519_SIGN, Opcode.RSA_DECRYPT_RAW, Opcode.RSA_SIGN_MD5SHA1):
            payload = bytes(256) if opcode == Opcode.RSA_DECRYPT_RAW else digest
            frames.append(Request(opcode=opcode, payload=payload, ski=handle.ski, sni=b"keyless.test",
                                  server_ip=b"\x7f\x00\x00\x01", client_ip=bytes(16)).encode(i + 1))
    frames.append(encode_message(Message(id=99, opcode=Opcode.PING, payload=b"ping")))
    frames.append(encode_message(Message(id=100, opcode=Opcode.RSA_SIGN_SHA256, payload=digest, digest=digest)))
    frames.append(encode_message(Message(id=101, opcode=Opcode.CUSTOM, custom_func_name=b"f", extra=b"x",
                                         span_context=b"s", request_context=b"r", cert_id=b"c",
                                         compliance_region=3, unknown=((0x42, b"?"),))))
    frames.append(encode_message(Message(id=102, opcode=Opcode.SEAL, payload=b"x")))
    frames.append(encode_message(Message(id=103, opcode=Opcode.RESPONSE, payload=b"x")))
    frames.append(encode_message(Message(id=104, opcode=0x99)))
    for frame in frames:
        out.put("keyless_request", b"\xff" + frame)
    out.put("keyless_request", b"\x10" + b"".join(frames[:6]), "pipelined-split")
    out.put("keyless_request", b"\xff" + b"".join(frames), "pipelined")
    out.put("keyless_request", b"\xff" + bytes((1, 0, 0, 4, 0, 0, 0, 7, Tag.OPCODE, 0, 2)), "bad-opcode-size")
    # Answers: IDs 1.. as ClientConnection allocates them.
    replies = [encode_reply(1, Opcode.RESPONSE, bytes(64)), encode_reply(2, Opcode.PONG, b"ping"),
               encode_reply(3, Opcode.ERROR, b"\x02"), encode_reply(4, Opcode.RESPONSE, None),
               encode_reply(5, Opcode.RESPONSE, bytes(2000))]
    for count in range(1, 6):
        out.put("keyless_response", bytes((0xFF, count)) + b"".join(replies[:count]), f"answers-{count}")
        out.put("keyless_response", bytes((0x0F, count + 16)) + b"".join(reversed(replies[:count])),
                f"answers-{count}-reversed-split")
    out.put("keyless_response", b"\xff\x01" + encode_message(Message(id=1, opcode=Opcode.RESPONSE, payload=b"x",
                                                                     sni=b"odd")), "extra-item")


# ---- tickets, HTTP, PROXY v2, configs -------------------------------------------------------------------------


def ticket_seeds(out: _Writer) -> None:
    state = SessionState(0x0304, 0x1301, bytes(range(32)), keys.FIXED_NOW, age_add=7, lifetime=7200,
                         sni="keyless.test", alpn="h2", client_certificates=(keys.fuzz_ca()[2],))
    ticket = tickets.ring().seal(state)
    out.put("tickets", b"\x00" + ticket, "genuine-ticket")
    out.put("tickets", b"\x00" + ticket[:40], "truncated-ticket")
    out.put("tickets", b"\x01" + state.to_bytes(), "state")
    out.put("tickets", b"\x01" + SessionState(0x0303, 0xC02B, bytes(48), 0.0, ems=False).to_bytes(), "state-12")
    out.put("tickets", b"\x02\x00\x80" + bytes(range(100)), "tamper")
    out.put("tickets", b"\x03" + engine.CACHED_SESSION_ID, "cached-id")
    out.put("tickets", b"\x03" + bytes(33), "long-id")


def http_seeds(out: _Writer) -> None:
    requests = [
        b"GET / HTTP/1.1\r\nHost: keyless.test\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nT: x\r\n\r\n",
        b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTE: trailers\r\n"
        b"X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /headers HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ]
    for i, request in enumerate(requests):
        for reply in range(6):
            out.put("edge_http", bytes((reply | (0x80 if i % 2 else 0), 0xFF)) + request, f"req{i}-reply{reply}")
        out.put("edge_http", bytes((0, 3)) + request, f"req{i}-split")
    out.put("proxy_v2", b"\x00\x01\xbb\xc0\x00\x02\x01" + b"\x00\x00\x50\x7f\x00\x00\x01", "v4")
    out.put("proxy_v2", b"\x01\x01\xbb" + bytes(16) + b"\x01\x00\x50" + bytes(15) + b"\x01", "v6")
    out.put("proxy_v2", b"\x01\x01\xbb" + bytes(10) + b"\xff\xff\xc0\x00\x02\x01" + b"\x00\x00\x50\x7f\x00\x00\x01",
            "mapped")


PKCS11 = [
    "pkcs11:token=My%20Token;serial=894d486a546359b4;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;"
    "slot-id=3;object=site%20key;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
    "pkcs11:token=a;object=k?module-path=/x.so&pin-source=env:MY_HSM_PIN",
    "pkcs11:token=a?module-path=/x.so&pin-source=file:/etc/keyless/pin",
    "pkcs11:token=a;type=private?module-path=/x.so",
    "pkcs11:slot-id=one?module-path=/x.so",
]


def config_seeds(out: _Writer) -> None:
    for uri in PKCS11:
        out.put("pkcs11_uri", uri.encode())
    out.put("keyserver_config", (ROOT / "examples/keyserver.yaml").read_bytes(), "example")
    out.put("keyserver_config", b"""port: 2407
listen: 127.0.0.1
metrics_addr: 127.0.0.1:2406
auth_cert: keyserver.pem
auth_key: keyserver-key.pem
cloudflare_ca_cert: ca.pem
private_key_dirs: [keys]
private_key_stores:
  - dir: keys
  - file: keys/ecdsa-p256.key
  - uri: "pkcs11:token=a;object=k?module-path=/x.so&pin-value=1234"
loglevel: debug
workers: 2
strict: true
handshake_timeout: 5s
idle_timeout: 30
max_in_flight: 1024
rsa_threads: 2
""", "demo-pki")
    out.put("edge_config", (ROOT / "examples/edge.yaml").read_bytes(), "example")
    out.put("edge_config", b"""listen:
  - {address: 127.0.0.1, port: 8443}
key_server_tls: {client_cert: edge.pem, client_key: edge-key.pem, ca: ca.pem, timeout: 5, send_client_ip: true}
certificates:
  - names: [keyless.test, "*.keyless.test"]
    chain: certs/ecdsa-p256.pem
    key_servers: ["127.0.0.1:2407", "[::1]:2407"]
    default: true
  - names: [rsa.keyless.test]
    chain: certs/rsa-2048.pem
    key_file: keys/rsa-2048.key
origin: {mode: tcp, address: 127.0.0.1:8080, proxy_protocol: true, connect_timeout: 5}
tickets: {rotation: 3600, lifetime: 7200, session_cache_size: 100, redis_url: "redis://:pw@127.0.0.1:6379/0"}
limits: {handshake_timeout: 10, idle_timeout: 60, max_connections: 100, max_header_size: 16384}
metrics_addr: 127.0.0.1:9443
workers: 1
tls12: true
rsa_key_exchange: true
loglevel: debug
""", "demo-pki")
    out.put("edge_config", b"a: &x [1, 2]\nb: [*x, *x, *x]\norigin: &o {address: *x}\n", "aliases")


def main(targets: Iterable[str] | None = None) -> None:
    quiet_logs()
    engine.setup()
    out = _Writer()
    engine_seeds(out)
    message_seeds(out)
    record_seeds(out)
    keyless_seeds(out)
    ticket_seeds(out)
    http_seeds(out)
    config_seeds(out)
    for target, directory in sorted(out.dirs.items()):
        print(f"{target}: {len(list(directory.iterdir()))} seeds")


if __name__ == "__main__":
    main()
