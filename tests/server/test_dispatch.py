"""Which error each request earns, in the spec's order of checks."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from keyless.keys.hooks import HookError, Hooks
from keyless.keys.ski import ski_of
from keyless.keys.store import InMemoryKeyStore, LocalKeyHandle
from keyless.protocol import ErrorCode, Message, Opcode
from keyless.server.dispatch import Answer, HookJob, perform, resolve

KEY = ec.generate_private_key(ec.SECP256R1())
SKI = ski_of(KEY.public_key())
STORE = InMemoryKeyStore([LocalKeyHandle(KEY, "test")])
DIGEST = hashlib.sha256(b"x").digest()


def outcome(message: Message, hooks: Hooks | None = None) -> Answer:
    return resolve(message, STORE, hooks or Hooks())


@pytest.mark.parametrize(("message", "code"), [
    (Message(1, Opcode.RESPONSE), ErrorCode.UNEXPECTED_OPCODE),
    (Message(1, Opcode.PONG), ErrorCode.UNEXPECTED_OPCODE),
    (Message(1, Opcode.ERROR, b"\x01"), ErrorCode.UNEXPECTED_OPCODE),
    (Message(1, None, DIGEST, ski=SKI), ErrorCode.BAD_OPCODE),
    (Message(1, 0x99, DIGEST, ski=SKI), ErrorCode.BAD_OPCODE),
    (Message(1, 0xDF, DIGEST, ski=SKI), ErrorCode.BAD_OPCODE),  # 0xC0-0xC2: ML-DSA
    (Message(1, Opcode.RPC, b""), ErrorCode.BAD_OPCODE),
    (Message(1, Opcode.CUSTOM, b"", custom_func_name=b"f"), ErrorCode.BAD_OPCODE),
    (Message(1, Opcode.SEAL, b"blob"), ErrorCode.INTERNAL),
    (Message(1, Opcode.UNSEAL, b"blob"), ErrorCode.INTERNAL),
    (Message(1, Opcode.ECDSA_SIGN_SHA256, DIGEST), ErrorCode.INTERNAL),
    (Message(1, Opcode.ECDSA_SIGN_SHA256, DIGEST, ski=bytes(20)), ErrorCode.KEY_NOT_FOUND),
    (Message(1, Opcode.ECDSA_SIGN_SHA256, DIGEST, digest=bytes(32)), ErrorCode.KEY_NOT_FOUND),
    (Message(1, Opcode.ECDSA_SIGN_SHA256, DIGEST[:31], ski=SKI), ErrorCode.CRYPTO_FAILED),
    (Message(1, Opcode.ECDSA_SIGN_SHA256, None, ski=SKI), ErrorCode.CRYPTO_FAILED),
    (Message(1, Opcode.RSA_SIGN_SHA256, DIGEST, ski=SKI), ErrorCode.CRYPTO_FAILED),
    (Message(1, Opcode.RSA_DECRYPT, bytes(256), ski=SKI), ErrorCode.CRYPTO_FAILED),
    (Message(1, Opcode.ED25519_SIGN, b"m", ski=SKI), ErrorCode.CRYPTO_FAILED),
])
def test_error_codes(message: Message, code: ErrorCode) -> None:
    answer = outcome(message)
    assert answer.opcode == Opcode.ERROR and answer.error == code, answer


def test_response_opcode_wins_over_missing_ski() -> None:
    assert outcome(Message(1, Opcode.RESPONSE, DIGEST)).error == ErrorCode.UNEXPECTED_OPCODE


def test_ping_echoes_payload_or_nothing() -> None:
    assert outcome(Message(3, Opcode.PING, b"Hello!"))[:3] == (Opcode.PONG, b"Hello!", None)
    assert outcome(Message(3, Opcode.PING))[:3] == (Opcode.PONG, None, None)


class Sealer:
    def seal(self, payload: bytes, extra: bytes | None) -> bytes:
        return b"sealed:" + payload

    def unseal(self, payload: bytes, extra: bytes | None) -> bytes:
        raise HookError("expired", ErrorCode.EXPIRED)


def test_hooks_run_when_configured() -> None:
    hooks = Hooks(sealer=Sealer(), custom=lambda name, payload, extra: name + b"(" + payload + b")")
    assert outcome(Message(1, Opcode.SEAL, b"x"), hooks)[:2] == (Opcode.RESPONSE, b"sealed:x")
    assert outcome(Message(1, Opcode.UNSEAL, b"x"), hooks).error == ErrorCode.EXPIRED
    assert outcome(Message(1, Opcode.CUSTOM, b"a", custom_func_name=b"f"), hooks)[:2] == (Opcode.RESPONSE, b"f(a)")


def test_a_crashing_backend_costs_one_request() -> None:
    def boom() -> bytes:
        raise RuntimeError("bug")

    answer = perform(HookJob(boom), Opcode.CUSTOM, b"")
    assert (answer.opcode, answer.error) == (Opcode.ERROR, ErrorCode.INTERNAL)
    assert isinstance(answer, Answer) and "RuntimeError" in answer.reason
