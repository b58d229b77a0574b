"""Name the certificate a key server presented when it failed verification (expired, not yet valid,
replaced by one from another CA, wrong name): "certificate has expired" alone does not tell an operator
which certificate, or since when.

Python's ``ssl`` does not expose the peer certificate of a failed handshake, so a second handshake is
made without verification, only to read the certificate (nothing is sent over it). Its subject, issuer,
serial and validity dates are public data: safe to log.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl

from cryptography import x509


def describe_certificate(der: bytes, now: datetime.datetime | None = None) -> str:
    cert = x509.load_der_x509_certificate(der)
    now = now or datetime.datetime.now(datetime.UTC)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now > not_after:
        state = f"EXPIRED since {not_after:%Y-%m-%d %H:%M:%S} UTC"
    elif now < not_before:
        state = f"NOT YET VALID until {not_before:%Y-%m-%d %H:%M:%S} UTC"
    else:
        state = "within its dates"
    return (f"certificate subject={cert.subject.rfc4514_string()} issuer={cert.issuer.rfc4514_string()} "
            f"serial={cert.serial_number:x} valid {not_before:%Y-%m-%d %H:%M:%S} to "
            f"{not_after:%Y-%m-%d %H:%M:%S} UTC ({state})")


class _Grab(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


async def presented_certificate(host: str, port: int, server_hostname: str, timeout: float,
                                client_files: tuple[str, str] | None = None) -> str | None:
    """A description of the certificate the server at ``host:port`` presents, or None if it cannot be read.
    ``client_files`` (our certificate and key files): a key server that requires a client certificate
    ends a TLS 1.2 handshake without one before we see its certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client_files is not None:
        try:
            context.load_cert_chain(*client_files)
        except (OSError, ssl.SSLError):
            pass
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(_Grab, host, port, ssl=context, server_hostname=server_hostname), timeout)
    except (OSError, ssl.SSLError, TimeoutError):
        return None  # it may still refuse us (our certificate): then there is nothing more to say
    try:
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        return describe_certificate(der) if der else None
    except ValueError:
        return None
    finally:
        transport.abort()


__all__ = ["describe_certificate", "presented_certificate"]
