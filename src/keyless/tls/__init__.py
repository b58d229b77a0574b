"""keyless.tls: a sans-IO TLS 1.3 (and 1.2) server whose private-key operations are events.

Bytes in (``receive_data``), events out (``next_event``), bytes out (``data_to_send``); the handshake
pauses on ``KeyOperationRequired`` until the caller answers with ``complete_key_operation``.

The public names below are imported lazily so that importing one submodule (``keyless.tls.suites``
from the record layer, say) does not pull in the whole engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keyless.tls.alerts import AlertDescription, TLSAlert, TLSUsageError
    from keyless.tls.config import CertifiedKey, ClientHelloInfo, ServerConfig, static_certificate
    from keyless.tls.connection import TLSServerConnection
    from keyless.tls.events import (
        NEED_DATA,
        AlertReceived,
        ApplicationData,
        ConnectionClosed,
        Event,
        HandshakeComplete,
        KeyOperationRequired,
    )

_EXPORTS = {
    "AlertDescription": "alerts",
    "TLSAlert": "alerts",
    "TLSUsageError": "alerts",
    "CertifiedKey": "config",
    "ClientHelloInfo": "config",
    "ServerConfig": "config",
    "static_certificate": "config",
    "TLSServerConnection": "connection",
    "NEED_DATA": "events",
    "AlertReceived": "events",
    "ApplicationData": "events",
    "ConnectionClosed": "events",
    "Event": "events",
    "HandshakeComplete": "events",
    "KeyOperationRequired": "events",
}

__all__ = [
    "NEED_DATA",
    "AlertDescription",
    "AlertReceived",
    "ApplicationData",
    "CertifiedKey",
    "ClientHelloInfo",
    "ConnectionClosed",
    "Event",
    "HandshakeComplete",
    "KeyOperationRequired",
    "ServerConfig",
    "TLSAlert",
    "TLSServerConnection",
    "TLSUsageError",
    "static_certificate",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keyless.tls' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"keyless.tls.{module}"), name)
    globals()[name] = value
    return value
