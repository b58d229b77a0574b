"""Events returned by ``TLSServerConnection.next_event()`` (frozen, slotted, like h11's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from keyless.keys.base import AsyncPrivateKey
from keyless.keys.schemes import SignatureScheme
from keyless.sentinel import NEED_DATA as NEED_DATA
from keyless.sentinel import NeedData as NeedData


class Event:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class KeyOperationRequired(Event):
    """The handshake needs the private key: answer with ``complete_key_operation(op_id, result)``.

    ``data`` is the whole message to sign (``kind="sign"``) or the RSA ciphertext (``kind="decrypt"``).
    ``server_name`` is the SNI the client sent (context a key server may log or apply policy to).
    """

    op_id: int
    key: AsyncPrivateKey = field(repr=False)
    kind: Literal["sign", "decrypt"]
    scheme: SignatureScheme | None
    data: bytes = field(repr=False)
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class HandshakeComplete(Event):
    version: int
    cipher_suite: str
    group: str | None
    sni: str | None
    alpn: str | None
    resumed: bool
    key_operations: int
    session_ticket_sent: bool
    client_certificates: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class ApplicationData(Event):
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AlertReceived(Event):
    level: int
    description: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The last event. ``alert_sent`` is the fatal alert we sent (None for a clean close)."""

    alert_sent: int | None
    reason: str
