"""The client against a scripted key server built on Python's own TLS server: which tags go on the wire,
every error code as its typed exception, and a key server that breaks the protocol."""

from __future__ import annotations

import asyncio
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from keyless.client import (
    BadOpcodeError,
    CertificateNotFoundError,
    CryptoError,
    ExpiredError,
    FormatError,
    InternalError,
    KeylessClient,
    KeyNotFoundError,
    KeyServerError,
    OperationContext,
    ReadError,
    RemoteConfigurationError,
    ResponseError,
    UnexpectedOpcodeError,
    VersionMismatchError,
    make_ssl_context,
)
from keyless.keys.base import KeyOperationError
from keyless.keys.schemes import SignatureScheme
from keyless.keys.ski import ski_of
from keyless.pki import DemoPKI
from keyless.protocol import Message, Opcode, encode_message
from tests.client.scripted import error_answer, start_scripted

EXPECTED = {
    0x01: CryptoError, 0x02: KeyNotFoundError, 0x03: ReadError, 0x04: VersionMismatchError, 0x05: BadOpcodeError,
    0x06: UnexpectedOpcodeError, 0x07: FormatError, 0x08: InternalError, 0x09: CertificateNotFoundError,
    0x0A: ExpiredError, 0x0B: RemoteConfigurationError, 0x42: KeyServerError,
}
PUBLIC = ec.generate_private_key(ec.SECP256R1()).public_key()


def client_for(pki: DemoPKI, port: int, **options: object) -> KeylessClient:
    context = make_ssl_context(pki.edge_cert, pki.edge_key, pki.ca)
    return KeylessClient([f"127.0.0.1:{port}"], context, server_name="localhost", health_interval=0,
                         **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_each_error_code_is_its_typed_exception(client_pki: DemoPKI, code: int) -> None:
    async def main() -> None:
        server = await start_scripted(client_pki, error_answer(code))
        try:
            async with client_for(client_pki, server.port) as client:
                with pytest.raises(KeyServerError) as caught:
                    await client.remote_key(PUBLIC).sign(SignatureScheme.ECDSA_SECP256R1_SHA256, b"m")
                assert type(caught.value) is EXPECTED[code]
                assert isinstance(caught.value, KeyOperationError)
                assert caught.value.code == code
                assert f"0x{code:02x}" in str(caught.value)
        finally:
            await server.close()

    asyncio.run(main())


def test_only_safe_tags_unless_configured(client_pki: DemoPKI) -> None:
    def sign(message: Message) -> bytes:
        return encode_message(Message.response(message.id, b"sig"))

    context = OperationContext(sni="www.example.com", server_ip="192.0.2.1", cert_id="cert-7",
                               client_ip="2001:db8::1", request_id="req-123")

    async def main() -> list[Message]:
        server = await start_scripted(client_pki, sign)
        try:
            async with client_for(client_pki, server.port) as plain:
                await plain.remote_key(PUBLIC, context=context).sign(SignatureScheme.ECDSA_SECP256R1_SHA256, b"m")
            async with client_for(client_pki, server.port, send_client_ip=True, send_request_id=True) as full:
                key = full.remote_key(PUBLIC).with_context(sni="www.example.com", client_ip="2001:db8::1",
                                                           request_id="req-123")
                await key.sign(SignatureScheme.ECDSA_SECP256R1_SHA256, b"m")
        finally:
            await server.close()
        return server.received

    plain, full = asyncio.run(main())
    assert plain.opcode == Opcode.ECDSA_SIGN_SHA256 and plain.ski == ski_of(PUBLIC) and len(plain.payload or b"") == 32
    assert plain.sni == b"www.example.com" and plain.server_ip == bytes([192, 0, 2, 1]) and plain.cert_id == b"cert-7"
    assert plain.client_ip is None and plain.request_context is None and plain.unknown == ()
    assert full.client_ip == bytes.fromhex("20010db8000000000000000000000001")
    assert json.loads(full.request_context or b"") == {"request_id": "req-123"}


def test_protocol_violation_closes_and_retries_once(client_pki: DemoPKI) -> None:
    bogus = [encode_message(Message.response(999_999, b"?"))]  # an answer to an ID nobody sent

    def answer(message: Message) -> bytes:
        return bogus.pop() if bogus else encode_message(Message.response(message.id, b"good"))

    async def main() -> tuple[bytes, int]:
        server = await start_scripted(client_pki, answer)
        try:
            async with client_for(client_pki, server.port, connections_per_server=1) as client:
                result = await client.remote_key(PUBLIC).sign(SignatureScheme.ECDSA_SECP256R1_SHA256, b"m")
                return result, len(server.received)
        finally:
            await server.close()

    # The bogus answer poisons the first connection; the operation is retried on a fresh one.
    assert asyncio.run(asyncio.wait_for(main(), 10)) == (b"good", 2)


def test_pong_to_a_sign_request_is_a_violation(client_pki: DemoPKI) -> None:
    async def main() -> None:
        server = await start_scripted(client_pki, lambda m: encode_message(Message.pong(m.id, b"")))
        try:
            async with client_for(client_pki, server.port, retries=0) as client:
                with pytest.raises(ResponseError):
                    await client.remote_key(PUBLIC).sign(SignatureScheme.ECDSA_SECP256R1_SHA256, b"m")
        finally:
            await server.close()

    asyncio.run(main())


def test_broken_connection_is_retried_once(client_pki: DemoPKI) -> None:
    drops = [b""]  # the first request's connection is dropped; then answers come

    def answer(message: Message) -> bytes:
        return drops.pop() if drops else encode_message(Message.response(message.id, b"sig"))

    def always_drop(message: Message) -> bytes:
        return b""

    async def main() -> tuple[bytes, int, int]:
        server = await start_scripted(client_pki, answer)
        dropper = await start_scripted(client_pki, always_drop)
        try:
            async with client_for(client_pki, server.port, connections_per_server=1) as client:
                result = await client.remote_key(PUBLIC).sign(SignatureScheme.ECDSA_SECP256R1_SHA256, b"m")
            async with client_for(client_pki, dropper.port, connections_per_server=1) as client:
                from keyless.client import ConnectionLost

                with pytest.raises(ConnectionLost):
                    await client.remote_key(PUBLIC).sign(SignatureScheme.ECDSA_SECP256R1_SHA256, b"m")
            return result, len(server.received), len(dropper.received)
        finally:
            await server.close()
            await dropper.close()

    result, answered_after, dropped = asyncio.run(asyncio.wait_for(main(), 10))
    assert result == b"sig" and answered_after == 2
    assert dropped == 2  # one attempt and exactly one retry
