"""Optional hooks for the opcodes that are not private-key operations.

Seal/unseal (0x21/0x22) and custom (0x24) run code the operator supplies; without a hook the server
answers with the error the spec gives (0x08 for seal/unseal, 0x05 for custom). RPC (0x23) is
Go-specific and always answered with 0x05.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class SealHook(Protocol):
    def seal(self, payload: bytes, extra: bytes | None) -> bytes: ...

    def unseal(self, payload: bytes, extra: bytes | None) -> bytes: ...


class CustomHook(Protocol):
    def __call__(self, function_name: bytes, payload: bytes, extra: bytes | None) -> bytes: ...


class HookError(Exception):
    """A hook refused the request; ``code`` is the keyless error code to answer with."""

    def __init__(self, reason: str, code: int = 0x01) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True, slots=True)
class Hooks:
    sealer: SealHook | None = None
    custom: CustomHook | None = None
