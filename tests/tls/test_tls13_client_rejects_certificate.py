"""A client that rejects our certificate: its alert is reported, not answered with unexpected_message.

OpenSSL sends that alert before it installs its handshake keys, i.e. unprotected after our key
change; the engine reports it (AlertReceived + ConnectionClosed without an alert of ours) during the
handshake only. After the handshake an unprotected record is still unexpected_message.
"""

from __future__ import annotations

import ssl

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from keyless.tls.alerts import AlertDescription
from keyless.tls.events import AlertReceived, ConnectionClosed
from tests.tls.tls13_helpers import _issue, exchange, server_config


def _untrusting_client() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    other_ca = _issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "some other CA")
    from cryptography.hazmat.primitives.serialization import Encoding

    ctx.load_verify_locations(cadata=other_ca.public_bytes(Encoding.PEM).decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def test_client_alert_on_an_untrusted_certificate_is_reported() -> None:
    ex = exchange(server_config(), _untrusting_client())
    with pytest.raises(ssl.SSLCertVerificationError):
        for _ in range(10):
            try:
                ex.client.do_handshake()
            except ssl.SSLWantReadError:
                pass
            ex.server_step()
    ex.server_step()  # deliver the client's alert
    received = [e for e in ex.events if isinstance(e, AlertReceived)]
    closed = [e for e in ex.events if isinstance(e, ConnectionClosed)]
    assert [a.description for a in received] == [AlertDescription.unknown_ca]
    assert closed and closed[0].alert_sent is None


def test_unprotected_alert_after_the_handshake_is_unexpected_message() -> None:
    ex = exchange(server_config())
    ex.handshake()
    ex.conn.receive_data(bytes.fromhex("15030300020230"))  # a plaintext fatal unknown_ca alert record
    ex.server_step()
    closed = [e for e in ex.events if isinstance(e, ConnectionClosed)]
    assert closed and closed[0].alert_sent == AlertDescription.unexpected_message
