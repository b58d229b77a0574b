"""Helpers for the TLS 1.2 engine tests: the TLS 1.3 helpers' PKI and sites, a TLS 1.2-only Python ssl client
driven in memory, and key operations answered for both "sign" and "decrypt"."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from keyless.tls.events import HandshakeComplete, KeyOperationRequired
from tests.tls.tls13_helpers import HOSTNAME, Exchange, pki, server_config, site

__all__ = ["HOSTNAME", "Exchange12", "answer", "client_context12", "exchange12", "pki", "server_config", "site"]


def answer(event: KeyOperationRequired) -> bytes:
    """What the adapter does with a local key: sign, or raw-decrypt (errors are returned, not raised)."""
    key: Any = event.key
    if event.kind == "decrypt":
        return bytes(key.decrypt_sync(event.data))
    assert event.scheme is not None
    return bytes(key.sign_sync(event.scheme, event.data))


def client_context12(ciphers: str | None = None, **kwargs: Any) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki().ca_pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    for name, value in kwargs.items():
        setattr(ctx, name, value)
    return ctx


@dataclass
class Exchange12(Exchange):
    """``Exchange`` whose server step also answers decrypt operations (or injects a key error)."""

    key_error: BaseException | None = None

    def answer_key_operation(self, event: KeyOperationRequired) -> bytes | BaseException:
        try:
            return self.key_error if self.key_error is not None else answer(event)
        except Exception as exc:  # the key refused: the engine gets the error, like from the adapter
            return exc

    @property
    def complete(self) -> HandshakeComplete:
        found = [e for e in self.events if isinstance(e, HandshakeComplete)]
        assert len(found) == 1, self.events
        return found[0]


def exchange12(
    config: Any, ctx: ssl.SSLContext | None = None, session: Any = None, server_hostname: str | None = HOSTNAME
) -> Exchange12:
    from keyless.tls.connection import TLSServerConnection

    ctx = ctx or client_context12()
    to_client, to_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(to_client, to_server, server_hostname=server_hostname, session=session)
    return Exchange12(TLSServerConnection(config), client, to_client, to_server)
