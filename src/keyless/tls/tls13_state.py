"""The TLS 1.3 server handshake's states, each carrying exactly what is known at that point (in the spirit of
rustls's state types): a method that needs the handshake keys receives a state that has them, so no field
is ever "not yet set" and no ``internal_error`` guards are needed to say so.

    ExpectClientHello ─▶ [ExpectSecondClientHello] ─▶ AwaitSignature (full) ─┐
                                                  └─▶ (resumed) ─────────────┴▶ [ExpectClientCertificate
    ─▶ ExpectClientCertificateVerify] ─▶ ExpectClientFinished ─▶ Connected

Secrets are ``repr=False`` everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keyless.tls import key_schedule as ks
from keyless.tls.config import CertifiedKey
from keyless.tls.messages import ClientHello
from keyless.tls.suites import CipherSuite13


@dataclass(slots=True)
class Negotiated:
    """What the ClientHello decided (RFC 8446 §4.1.2 to §4.2.11); fixed for the rest of the handshake."""

    hello: ClientHello
    suite: CipherSuite13
    transcript: ks.Transcript = field(repr=False)
    group: int | None  # None only for a psk_ke resumption (no (EC)DHE)
    sni: str | None
    alpn: bytes | None
    psk: bytes | None = field(default=None, repr=False)  # set when a ticket is accepted
    psk_index: int | None = None
    client_certificates: tuple[bytes, ...] = field(default=(), repr=False)  # from the ticket when resumed

    @property
    def resumed(self) -> bool:
        return self.psk is not None


@dataclass(frozen=True, slots=True)
class ChosenCertificate:
    """The certificate for a full handshake and the scheme its CertificateVerify is signed with."""

    certified: CertifiedKey
    scheme: int


@dataclass(frozen=True, slots=True)
class HandshakeKeys:
    """After ServerHello (§7.1): the handshake secret and both handshake traffic secrets."""

    secret: ks.HandshakeSecret = field(repr=False)
    client: bytes = field(repr=False)
    server: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ApplicationKeys:
    """After the server Finished (§7.1): the master secret and both first application traffic secrets."""

    master: ks.MasterSecret = field(repr=False)
    client: bytes = field(repr=False)
    server: bytes = field(repr=False)


class ExpectClientHello:
    __slots__ = ()


EXPECT_CLIENT_HELLO = ExpectClientHello()


@dataclass(frozen=True, slots=True)
class ExpectSecondClientHello:
    """We sent a HelloRetryRequest for ``group``; the next ClientHello is compared with ``first``."""

    first: ClientHello
    suite: CipherSuite13
    transcript: ks.Transcript = field(repr=False)
    group: int


@dataclass(frozen=True, slots=True)
class AwaitSignature:
    """The CertificateVerify signature is with the caller (the one step that waits on the outside world)."""

    negotiated: Negotiated
    keys: HandshakeKeys
    certificate: ChosenCertificate


@dataclass(frozen=True, slots=True)
class ExpectClientCertificate:
    negotiated: Negotiated
    keys: HandshakeKeys
    application: ApplicationKeys


@dataclass(frozen=True, slots=True)
class ExpectClientCertificateVerify:
    negotiated: Negotiated
    keys: HandshakeKeys
    application: ApplicationKeys
    chain: tuple[bytes, ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ExpectClientFinished:
    negotiated: Negotiated
    keys: HandshakeKeys
    application: ApplicationKeys
    client_certificates: tuple[bytes, ...] = field(repr=False)


@dataclass(slots=True)
class Connected:
    """After the client Finished: only the traffic secrets remain (they move on with each KeyUpdate)."""

    suite: CipherSuite13
    client_secret: bytes = field(repr=False)
    server_secret: bytes = field(repr=False)


State = (
    ExpectClientHello
    | ExpectSecondClientHello
    | AwaitSignature
    | ExpectClientCertificate
    | ExpectClientCertificateVerify
    | ExpectClientFinished
    | Connected
)
