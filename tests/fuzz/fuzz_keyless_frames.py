"""Keyless frames in both directions.

``keyless_request``: bytes from an edge into the key server's sans-IO connection (``ServerConnection``:
framer + ``wire.decode_request``), whole or in pieces, pipelined, each request routed and performed on real
keys exactly as the service does. Invariants: a malformed frame is a ``FrameRejected`` with a 0x07 reply
queued and nothing parsed after it; the hot-path decoder agrees with the reference ``decode_message`` on
every frame; splitting the stream never changes the outcome; a request never ends in an internal error.

``keyless_response``: bytes from a key server into the client's sans-IO connection (``ClientConnection``)
with a few requests in flight. Invariants: every answer matches a request in flight, once; a bad frame
raises ``ResponseError`` and poisons the connection; splitting never changes the outcome.
"""

from __future__ import annotations

import functools

from keyless.client.core import Answer, ClientConnection, Request
from keyless.client.errors import ResponseError
from keyless.keys.hooks import Hooks
from keyless.keys.store import InMemoryKeyStore, LocalKeyHandle
from keyless.protocol import ErrorCode, Opcode, ProtocolError, decode_message
from keyless.protocol.constants import HEADER_SIZE
from keyless.sentinel import NeedData
from keyless.server.connection import PAUSED, FrameRejected, ServerConnection
from keyless.server.dispatch import Answer as DispatchAnswer
from keyless.server.dispatch import perform, route
from keyless.server.wire import Request as WireRequest
from tests.fuzz import keys
from tests.fuzz.harness import Target, check, chunks

MAX_IN_FLIGHT = 4


@functools.cache
def store() -> InMemoryKeyStore:
    return InMemoryKeyStore([
        LocalKeyHandle(keys.ecdsa_p256(), "fuzz:ecdsa"),
        LocalKeyHandle(keys.rsa_2048(), "fuzz:rsa"),
        LocalKeyHandle(keys.ed25519_key(), "fuzz:ed25519"),
    ])


HOOKS = Hooks()


def _server_outcome(stream: bytes, size_byte: int) -> list[object]:
    """What the key server makes of ``stream``: requests (as tuples), a rejection, and the replies' IDs."""
    conn = ServerConnection(max_in_flight=MAX_IN_FLIGHT)
    outcome: list[object] = []
    for piece in chunks(stream, size_byte):
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if isinstance(event, NeedData):
                break
            if event is PAUSED:
                conn.send_error(0, ErrorCode.INTERNAL)  # a reply frees a slot, as the service's would
                outcome.append("paused")
                continue
            if isinstance(event, FrameRejected):
                check(conn.rejected, "FrameRejected without the connection marked rejected")
                reply = decode_message(conn.data_to_send()[-1024:])
                check(reply.error_code == ErrorCode.FORMAT, f"rejection reply {reply!r} is not error 0x07")
                check(reply.id == (event.message_id or 0), "rejection reply does not carry the frame's ID")
                outcome.append(("rejected", event.message_id))
                continue
            assert isinstance(event, WireRequest)
            outcome.append(tuple(event))
    return outcome


def _answer(request: WireRequest) -> DispatchAnswer:
    target = route(request, store(), HOOKS)
    answer = target if isinstance(target, DispatchAnswer) else perform(target, request.opcode or 0, request.payload)
    # dispatch.failure() says "internal error: <exception type>" for an exception no one expected (the spec's
    # own 0x09 answers, e.g. no SKI or no sealer, carry other reasons).
    check(not answer.reason.startswith("internal error"), f"request ended in an unexpected error: {answer.reason}")
    return answer


def _frames(stream: bytes) -> list[bytes]:
    frames = []
    offset = 0
    while len(stream) - offset >= HEADER_SIZE:
        end = offset + HEADER_SIZE + int.from_bytes(stream[offset + 2 : offset + 4], "big")
        if end > len(stream):
            break
        frames.append(stream[offset:end])
        offset = end
    return frames


def request_one_input(data: bytes) -> None:
    if not data:
        return
    size_byte, stream = data[0], data[1:]
    whole = _server_outcome(stream, 0xFF)
    check(_server_outcome(stream, size_byte) == whole, "a split read changed what the key server parsed")
    # The hot-path decoder and the reference decoder agree on every whole frame.
    for frame in _frames(stream):
        try:
            reference = decode_message(frame)
        except ProtocolError as exc:
            check(exc.code == ErrorCode.FORMAT, "a malformed frame must be error 0x07")
            check(("rejected", exc.message_id) in whole, "the reference decoder rejected a frame the server took")
            break
        fields = (reference.id, reference.opcode, reference.payload, reference.ski, reference.sni,
                  reference.client_ip, reference.server_ip, reference.cert_id, reference.digest,
                  reference.custom_func_name, reference.extra, reference.span_context, reference.request_context,
                  reference.compliance_region)
        check(fields in whole, f"the hot-path decoder disagrees with decode_message on {frame[:64].hex()}")
    for item in whole:
        if isinstance(item, tuple) and len(item) == 14:
            _answer(WireRequest(*item))


_OPCODES = (Opcode.ECDSA_SIGN_SHA256, Opcode.RSA_SIGN_SHA256, Opcode.PING, Opcode.RSA_DECRYPT_RAW,
            Opcode.ED25519_SIGN, Opcode.RSA_PSS_SIGN_SHA256, Opcode.ECDSA_SIGN_SHA384, Opcode.PING)


def _client_outcome(opcodes: list[int], stream: bytes, size_byte: int) -> list[object]:
    conn = ClientConnection()
    sent = {conn.send(Request(opcode=op, payload=b"x")): op for op in opcodes}
    conn.data_to_send()
    if opcodes:
        conn.abandon(next(iter(sent)))  # one request the caller gave up on: its late answer is dropped
    outcome: list[object] = []
    try:
        for piece in chunks(stream, size_byte):
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if isinstance(event, NeedData):
                    break
                assert isinstance(event, Answer)
                check(event.request_id in sent, f"answer for ID {event.request_id}, never sent")
                outcome.append(event)
    except ResponseError as exc:
        try:
            conn.next_event()
        except ResponseError as again:
            check(again is exc, "a poisoned connection must keep raising its error")
        else:
            raise AssertionError("a poisoned connection produced an event") from None
        outcome.append(("error", str(exc)))
    ids = [a.request_id for a in outcome if isinstance(a, Answer)]
    check(len(ids) == len(set(ids)), "one request answered twice")
    return outcome


def response_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    size_byte, count, stream = data[0], data[1] % 8, data[2:]
    opcodes = [_OPCODES[(data[1] >> 3) % len(_OPCODES) + i & 7] for i in range(count)]
    whole = _client_outcome(opcodes, stream, 0xFF)
    split = _client_outcome(opcodes, stream, size_byte)
    check(split == whole, "a split read changed what the client parsed")


TARGETS = [
    Target("keyless_request", request_one_input, "keyless_frames",
           "key server: request framer + decoder + routing, pipelined and split reads", setup=store, max_len=8192),
    Target("keyless_response", response_one_input, "keyless_frames",
           "client: response framer + decoder + ID matching, pipelined and split reads", max_len=8192),
]
