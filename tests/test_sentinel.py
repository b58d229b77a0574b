"""One ``NEED_DATA`` for every sans-IO parser in keyless."""

from __future__ import annotations

from keyless.protocol import NEED_DATA as PROTOCOL_NEED_DATA
from keyless.protocol import MessageDecoder
from keyless.sentinel import NEED_DATA, NeedData
from keyless.tls import NEED_DATA as TLS_NEED_DATA
from keyless.tls import ServerConfig, TLSServerConnection


def test_protocol_and_tls_share_the_sentinel() -> None:
    assert PROTOCOL_NEED_DATA is NEED_DATA and TLS_NEED_DATA is NEED_DATA and NeedData() is NEED_DATA
    assert repr(NEED_DATA) == "NEED_DATA"
    assert MessageDecoder().next_message() is NEED_DATA
    assert TLSServerConnection(ServerConfig(certificate_callback=lambda hello: None)).next_event() is NEED_DATA
