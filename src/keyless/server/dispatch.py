"""From a decoded request to an immediate answer, a key to run it on, or a hook job (pure, no I/O).

The order of the checks is the spec's: a response opcode sent as a request is 0x06 before anything
else (so it wins over a missing SKI); then opcodes that need no key (ping, seal/unseal, RPC,
custom); then an unknown or missing opcode is 0x05; then the key: a missing SKI is 0x08, an SKI
(or legacy digest) matching no key is 0x02. Wrong digest length and wrong key type (0x01) are
found by the key's executor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from keyless.keys.hooks import HookError, Hooks
from keyless.keys.operations import OPERATIONS, OperationError
from keyless.keys.store import KeyHandle, KeyStore
from keyless.protocol import RESPONSE_OPCODES, ErrorCode, Opcode


class RequestFields(Protocol):
    """What routing reads from a request (``keyless.protocol.Message`` and ``wire.Request`` both fit)."""

    @property
    def opcode(self) -> int | None: ...
    @property
    def payload(self) -> bytes | None: ...
    @property
    def ski(self) -> bytes | None: ...
    @property
    def digest(self) -> bytes | None: ...
    @property
    def custom_func_name(self) -> bytes | None: ...
    @property
    def extra(self) -> bytes | None: ...


class Answer(NamedTuple):
    """A reply: ``opcode`` is 0xF0, 0xF2 or 0xFF; ``error`` the code of a 0xFF; ``reason`` for the log."""

    opcode: int
    payload: bytes | None
    error: int | None = None
    reason: str = ""


class HookJob(NamedTuple):
    """Seal/unseal/custom work for an operator hook (run on the thread pool)."""

    run: Callable[[], bytes]


def error(code: ErrorCode, reason: str) -> Answer:
    return Answer(Opcode.ERROR, bytes((code,)), int(code), reason)


_NO_OPCODE = error(ErrorCode.BAD_OPCODE, "request without an opcode")
_RPC = error(ErrorCode.BAD_OPCODE, "RPC (0x23) is not supported")
_NO_SEALER = error(ErrorCode.INTERNAL, "seal/unseal requested but no sealer is configured")
_NO_CUSTOM = error(ErrorCode.BAD_OPCODE, "custom operation requested but no hook is configured")
_NO_SKI = error(ErrorCode.INTERNAL, "request without an SKI")
_NO_KEY = error(ErrorCode.KEY_NOT_FOUND, "no key with this SKI")
_PING, _SEAL, _UNSEAL, _RPC_OP, _CUSTOM = (int(o) for o in (Opcode.PING, Opcode.SEAL, Opcode.UNSEAL, Opcode.RPC,
                                                              Opcode.CUSTOM))
_RESPONSE_OPCODES = frozenset(int(o) for o in RESPONSE_OPCODES)


def route(request: RequestFields, store: KeyStore, hooks: Hooks) -> Answer | KeyHandle | HookJob:
    """What to do with ``request``; a ``KeyHandle`` means: run ``handle.execute(opcode, payload)``."""
    opcode = request.opcode
    if opcode in OPERATIONS:  # the common case first; OPERATIONS holds no response opcode
        ski = request.ski
        if ski is not None:
            key = store.find(ski)
        elif request.digest is not None:
            key = store.find_by_digest(request.digest)
        else:
            return _NO_SKI
        return _NO_KEY if key is None else key
    if opcode is None:
        return _NO_OPCODE
    if opcode in _RESPONSE_OPCODES:
        return error(ErrorCode.UNEXPECTED_OPCODE, f"response opcode 0x{opcode:02x} sent as a request")
    if opcode == _PING:
        return Answer(Opcode.PONG, request.payload)
    if opcode in (_SEAL, _UNSEAL):
        sealer = hooks.sealer
        if sealer is None:
            return _NO_SEALER
        method = sealer.seal if opcode == _SEAL else sealer.unseal
        payload, extra = request.payload or b"", request.extra
        return HookJob(lambda: method(payload, extra))
    if opcode == _RPC_OP:
        return _RPC
    if opcode == _CUSTOM:
        custom = hooks.custom
        if custom is None:
            return _NO_CUSTOM
        name, payload, extra = request.custom_func_name or b"", request.payload or b"", request.extra
        return HookJob(lambda: custom(name, payload, extra))
    return error(ErrorCode.BAD_OPCODE, f"unknown opcode 0x{opcode:02x}")


def perform(target: KeyHandle | HookJob, opcode: int, payload: bytes | None) -> Answer:
    """Run a key operation or hook and turn any outcome into an answer; never raises."""
    try:
        if isinstance(target, HookJob):
            return Answer(Opcode.RESPONSE, target.run())
        return Answer(Opcode.RESPONSE, target.execute(opcode, payload if payload is not None else b""))
    except Exception as exc:  # a key backend or hook bug must cost one request, not the connection
        return failure(exc)


def failure(exc: Exception) -> Answer:
    """The error answer for an exception raised by a key operation or hook."""
    if isinstance(exc, OperationError):
        return error(exc.code, exc.reason)
    if isinstance(exc, HookError):
        return Answer(Opcode.ERROR, bytes((exc.code & 0xFF,)), exc.code & 0xFF, str(exc))
    return error(ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")


def resolve(request: RequestFields, store: KeyStore, hooks: Hooks) -> Answer:
    """Route and perform inline: for tests and simple callers."""
    target = route(request, store, hooks)
    if isinstance(target, Answer):
        return target
    return perform(target, request.opcode or 0, request.payload)
