"""The TLS 1.2 server handshake's states, each carrying what is known at that point (as ``tls13_state`` does
for TLS 1.3): the negotiated session from ServerHello on, the certificate choice on a full handshake, the
keys once the master secret exists. Nothing is "not yet set", so no ``internal_error`` guards say so.

    ExpectClientHello ─▶ full:    [AwaitSignature] ─▶ [ExpectClientCertificate] ─▶ ExpectClientKeyExchange
                                  ─▶ [AwaitDecryption] ─▶ [ExpectCertificateVerify] ─▶ ExpectChangeCipherSpec
                      └▶ resumed: ExpectChangeCipherSpec
    ─▶ ExpectFinished ─▶ Connected
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keyless.tls import tls12_prf
from keyless.tls.config import CertifiedKey
from keyless.tls.messages import ClientHello
from keyless.tls.tls12_suites import CipherSuite12, EphemeralKey


@dataclass(slots=True)
class Session12:
    """The handshake as ServerHello fixed it (both paths), and the transcript from then on."""

    hello: ClientHello
    suite: CipherSuite12
    transcript: Any = field(repr=False)  # hashlib object of the suite's PRF hash
    server_random: bytes = field(repr=False)
    session_id: bytes = field(repr=False)
    sni: str | None
    alpn: bytes | None
    ems: bool
    resumed: bool
    send_ticket: bool
    group: int | None = None  # the ECDHE group of a full handshake
    # Whole messages, kept only while a client CertificateVerify (which signs them, §7.4.8) may come.
    transcript_raw: bytearray | None = field(default=None, repr=False)
    client_certificates: tuple[bytes, ...] = field(default=(), repr=False)
    ticket_sent: bool = False

    def update(self, message: bytes) -> None:
        self.transcript.update(message)
        if self.transcript_raw is not None:
            self.transcript_raw += message

    def transcript_hash(self) -> bytes:
        return bytes(self.transcript.copy().digest())


@dataclass(frozen=True, slots=True)
class CertificateChoice:
    """A full handshake's certificate, and how it is used: ECDHE signature scheme or RSA key exchange."""

    certified: CertifiedKey
    scheme: int | None  # ECDHE: the ServerKeyExchange signature scheme
    group: int | None  # ECDHE: the curve
    modulus_length: int = 0  # RSA key exchange: the key's modulus in bytes


@dataclass(frozen=True, slots=True)
class Keys12:
    """The master secret (for the session), the PRF keyed with it, and both directions' record keys."""

    master: bytes = field(repr=False)
    prf: tls12_prf.KeyedPRF = field(repr=False)
    client: tuple[bytes, bytes] = field(repr=False)  # key, fixed IV
    server: tuple[bytes, bytes] = field(repr=False)


class ExpectClientHello:
    __slots__ = ()


EXPECT_CLIENT_HELLO = ExpectClientHello()


@dataclass(frozen=True, slots=True)
class AwaitSignature:
    """The ServerKeyExchange signature is with the caller."""

    session: Session12
    choice: CertificateChoice
    ephemeral: EphemeralKey = field(repr=False)
    params: bytes


@dataclass(frozen=True, slots=True)
class ExpectClientCertificate:
    session: Session12
    choice: CertificateChoice
    ephemeral: EphemeralKey | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class ExpectClientKeyExchange:
    session: Session12
    choice: CertificateChoice
    ephemeral: EphemeralKey | None = field(repr=False)  # None for RSA key exchange


@dataclass(frozen=True, slots=True)
class AwaitDecryption:
    """The RSA premaster block is with the caller; ``random_premaster`` was drawn before asking (§7.4.7.1)."""

    session: Session12
    choice: CertificateChoice
    random_premaster: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ExpectCertificateVerify:
    session: Session12
    keys: Keys12


@dataclass(frozen=True, slots=True)
class ExpectChangeCipherSpec:
    session: Session12
    keys: Keys12


@dataclass(frozen=True, slots=True)
class ExpectFinished:
    session: Session12
    keys: Keys12


class Connected:
    __slots__ = ()


CONNECTED = Connected()

State12 = (
    ExpectClientHello
    | AwaitSignature
    | ExpectClientCertificate
    | ExpectClientKeyExchange
    | AwaitDecryption
    | ExpectCertificateVerify
    | ExpectChangeCipherSpec
    | ExpectFinished
    | Connected
)
