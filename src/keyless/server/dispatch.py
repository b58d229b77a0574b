"""From a decoded request to either an immediate answer or a job that needs a key (pure, no I/O).

The order of the checks is the spec's: a response opcode sent as a request is 0x06 before anything
else (so it wins over a missing SKI); then opcodes that need no key (ping, seal/unseal, RPC,
custom); then an unknown or missing opcode is 0x05; then the key: a missing SKI is 0x08, an SKI
(or legacy digest) matching no key is 0x02. Wrong digest length and wrong key type (0x01) are
found by the key's executor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from keyless.keys.hooks import HookError, Hooks
from keyless.keys.operations import OPERATIONS, OperationError
from keyless.keys.store import KeyStore
from keyless.protocol import RESPONSE_OPCODES, ErrorCode, Message, Opcode


@dataclass(frozen=True, slots=True)
class Answer:
    """Reply now: ``opcode`` is 0xF0, 0xF2 or 0xFF."""

    opcode: int
    payload: bytes | None
    reason: str = ""  # why, for the log line of a failed request

    @property
    def error(self) -> int | None:
        return self.payload[0] if self.opcode == Opcode.ERROR and self.payload else None


@dataclass(frozen=True, slots=True)
class Job:
    """Work to run (inline, or on the thread pool when ``offload``); ``run()`` returns the payload
    or raises ``OperationError``/``HookError``."""

    run: Callable[[], bytes]
    offload: bool
    key_operation: bool  # counts as a sign request in the metrics


def error(code: ErrorCode, reason: str) -> Answer:
    return Answer(Opcode.ERROR, bytes((code,)), reason)


_PAYLOADLESS_OK = (Opcode.PING,)


def route(message: Message, store: KeyStore, hooks: Hooks) -> Answer | Job:
    opcode = message.opcode
    if opcode is None:
        return error(ErrorCode.BAD_OPCODE, "request without an opcode")
    if opcode in RESPONSE_OPCODES:
        return error(ErrorCode.UNEXPECTED_OPCODE, f"response opcode 0x{opcode:02x} sent as a request")
    if opcode == Opcode.PING:
        return Answer(Opcode.PONG, message.payload)
    if opcode in (Opcode.SEAL, Opcode.UNSEAL):
        return _seal_job(message, hooks)
    if opcode == Opcode.RPC:
        return error(ErrorCode.BAD_OPCODE, "RPC (0x23) is not supported")
    if opcode == Opcode.CUSTOM:
        return _custom_job(message, hooks)
    if opcode not in OPERATIONS:
        return error(ErrorCode.BAD_OPCODE, f"unknown opcode 0x{opcode:02x}")
    if message.ski is not None:
        key = store.find(message.ski)
    elif message.digest is not None:
        key = store.find_by_digest(message.digest)
    else:
        return error(ErrorCode.INTERNAL, "request without an SKI")
    if key is None:
        return error(ErrorCode.KEY_NOT_FOUND, "no key with this SKI")
    execute = key.execute
    payload = message.payload if message.payload is not None else b""
    return Job(lambda: execute(opcode, payload), key.offload, True)


def _seal_job(message: Message, hooks: Hooks) -> Answer | Job:
    sealer = hooks.sealer
    if sealer is None:
        return error(ErrorCode.INTERNAL, "seal/unseal requested but no sealer is configured")
    payload = message.payload or b""
    extra = message.extra
    method = sealer.seal if message.opcode == Opcode.SEAL else sealer.unseal
    return Job(lambda: method(payload, extra), True, False)


def _custom_job(message: Message, hooks: Hooks) -> Answer | Job:
    custom = hooks.custom
    if custom is None:
        return error(ErrorCode.BAD_OPCODE, "custom operation requested but no hook is configured")
    name = message.custom_func_name or b""
    payload = message.payload or b""
    extra = message.extra
    return Job(lambda: custom(name, payload, extra), True, False)


def run_job(job: Job) -> Answer:
    """Run ``job`` and turn any outcome into an answer; never raises."""
    try:
        return Answer(Opcode.RESPONSE, job.run())
    except OperationError as exc:
        return error(exc.code, exc.reason)
    except HookError as exc:
        return Answer(Opcode.ERROR, bytes((exc.code & 0xFF,)), str(exc))
    except Exception as exc:  # a key backend or hook bug must cost one request, not the connection
        return error(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")
