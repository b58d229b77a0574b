"""The server side of a TLS 1.2 handshake (RFC 5246 §7.3), shaped like Go's handshake_server.go:

    process_client_hello → check_for_resumption
      ├─ resumed:  do_resume_handshake (ServerHello, ChangeCipherSpec, Finished)
      │            → read client ChangeCipherSpec → read_finished
      └─ full:     do_full_handshake: pick_certificate_and_suite → ServerHello, Certificate, [CertificateStatus]
                   → ECDHE: [KeyOperationRequired "sign"] ServerKeyExchange, [CertificateRequest], ServerHelloDone
                   → [client Certificate] → read_client_key_exchange
                       (RSA: [KeyOperationRequired "decrypt"] → implicit rejection, keys/premaster.py)
                   → establish_keys → [CertificateVerify] → client ChangeCipherSpec → read_finished
                   → send_session_ticket → ChangeCipherSpec, Finished

The private-key step is an event answered later: this object never calls a key. Extended master secret
(RFC 7627) is required unless configured otherwise; renegotiation is refused (RFC 5746 indication sent);
only AEAD suites exist (tls12_suites.py).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import weakref
from enum import Enum, auto
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric import rsa

from keyless.keys.premaster import MIN_MODULUS_LENGTH, PREMASTER_LENGTH, unpad_premaster
from keyless.keys.schemes import SignatureScheme
from keyless.tls import messages, tls12_prf
from keyless.tls import tls12_messages as msg12
from keyless.tls.alerts import AlertDescription, AlertLevel, TLSAlert
from keyless.tls.client_auth import verify_client_certificate
from keyless.tls.config import CertifiedKey, ServerConfig, client_hello_info
from keyless.tls.events import HandshakeComplete
from keyless.tls.extensions import choose_alpn
from keyless.tls.handshake_host import HandshakeHost
from keyless.tls.messages import ClientHello, ContentType, HandshakeType
from keyless.tls.record import MAX_PLAINTEXT
from keyless.tls.suites import (
    GROUP_NAMES,
    TLS12,
    server_random_with_downgrade,
)
from keyless.tls.tickets import SessionState, TicketTooLarge
from keyless.tls.tls12_suites import (
    CLIENT_SIGNATURE_SCHEMES,
    TLS12_SUITES_BY_CODE,
    TLS_EMPTY_RENEGOTIATION_INFO_SCSV,
    TLS_FALLBACK_SCSV,
    CipherSuite12,
    EphemeralKey,
    agree,
    enabled_suites,
    generate_ephemeral,
    negotiate,
    verify_client_signature12,
)

log = logging.getLogger(__name__)

NO_RENEGOTIATION = 100  # AlertDescription no_renegotiation (RFC 5246 §7.2.2), always a warning
MAX_RENEGOTIATION_REFUSALS = 2  # then the peer is not listening: close with a fatal alert
_CCS_PAYLOAD = b"\x01"


class State(Enum):
    EXPECT_CLIENT_HELLO = auto()
    AWAIT_SIGNATURE = auto()  # ServerKeyExchange signature, from the key
    EXPECT_CLIENT_CERTIFICATE = auto()
    EXPECT_CLIENT_KEY_EXCHANGE = auto()
    AWAIT_DECRYPTION = auto()  # RSA premaster, from the key
    EXPECT_CERTIFICATE_VERIFY = auto()
    EXPECT_CHANGE_CIPHER_SPEC = auto()
    EXPECT_FINISHED = auto()
    CONNECTED = auto()


class ServerHandshake12:
    """One TLS 1.2 server handshake, driven by ``connection.TLSServerConnection``."""

    # Per-handshake state starts from these class defaults (immutable values): __init__ sets only the rest.
    state = State.EXPECT_CLIENT_HELLO
    hello: ClientHello | None = None
    suite: CipherSuite12 | None = None
    group: int | None = None
    certified_key: CertifiedKey | None = None
    scheme: int | None = None
    sni: str | None = None
    alpn: bytes | None = None
    server_random = b""
    session_id = b""
    ems = False
    secure_renegotiation = False
    resumed = False
    send_ticket = False
    ticket_sent = False
    client_auth = False
    client_certificates: tuple[bytes, ...] = ()
    key_operations = 0
    renegotiation_refusals = 0
    record_size_limit: int | None = None  # ours, echoed in ServerHello when the client sent one (RFC 8449)
    _peer_record_size_limit = 0  # the most plaintext per record we may send once protected
    _transcript: Any = None  # hashlib object of the suite's PRF hash
    _transcript_raw: bytearray | None = None  # whole messages, only for a client CertificateVerify
    _ephemeral: EphemeralKey | None = None
    _params = b""
    _modulus_length = 0
    _random_premaster = b""
    _master = b""
    _master_prf: tls12_prf.KeyedPRF | None = None  # the master secret, keyed once for key block and Finished
    _client_key: tuple[bytes, bytes] = (b"", b"")
    _server_key: tuple[bytes, bytes] = (b"", b"")

    def __init__(self, host: HandshakeHost) -> None:
        # The connection owns this driver; a strong reference back would make every connection a reference
        # cycle that only the cyclic GC frees (measured: ~17 µs of GC per handshake through the adapter).
        self.host: HandshakeHost = weakref.proxy(host)
        self.record = host.record  # the connection's RecordLayer (no reference back): the frequent calls
        self.config: ServerConfig = host.config

    def __repr__(self) -> str:  # no secrets
        return f"<ServerHandshake12 {self.state.name} suite={self.suite.name if self.suite else None}>"

    @property
    def complete(self) -> bool:
        return self.state is State.CONNECTED

    # ---- §7.4.1.2 ClientHello ---------------------------------------------------------------------

    def process_client_hello(self, hello: ClientHello) -> None:
        if self.state is not State.EXPECT_CLIENT_HELLO:
            raise TLSAlert(AlertDescription.unexpected_message, "ClientHello in the middle of a handshake")
        self.check_client_hello(hello)
        self.hello = hello
        self.sni = hello.server_name
        self.alpn = choose_alpn(self.config.alpn_protocols, hello.alpn_protocols)
        self.ems = hello.extended_master_secret
        self.negotiate_record_size_limit(hello)
        session = self.check_for_resumption(hello)
        if session is not None:
            self.do_resume_handshake(hello, session)
        else:
            self.do_full_handshake(hello)

    def check_client_hello(self, hello: ClientHello) -> None:
        """The rules of RFC 5246, 5746, 7507, 7627 and 8422 that do not depend on the certificate."""
        hello.check_extensions_for(TLS12)
        offers_tls12 = hello.legacy_version >= TLS12 or TLS12 in (hello.supported_versions or ())
        if not offers_tls12:
            raise TLSAlert(AlertDescription.protocol_version, "client does not offer TLS 1.2")
        if 0 not in hello.compression_methods:
            raise TLSAlert(AlertDescription.illegal_parameter, "client does not offer null compression")
        if TLS_FALLBACK_SCSV in hello.cipher_suites and self.config.enable_tls13:
            raise TLSAlert(AlertDescription.inappropriate_fallback, "fallback to TLS 1.2 while we offer TLS 1.3")
        if hello.renegotiation_info is not None and hello.renegotiation_info != b"":
            raise TLSAlert(AlertDescription.handshake_failure, "non-empty renegotiation_info in an initial hello")
        self.secure_renegotiation = (
            hello.renegotiation_info is not None or TLS_EMPTY_RENEGOTIATION_INFO_SCSV in hello.cipher_suites
        )
        if not hello.extended_master_secret and self.config.require_extended_master_secret:
            raise TLSAlert(AlertDescription.handshake_failure, "client does not support extended master secret")
        if hello.ec_point_formats is not None and 0 not in hello.ec_point_formats:
            raise TLSAlert(AlertDescription.illegal_parameter, "client does not support uncompressed points")

    def negotiate_record_size_limit(self, hello: ClientHello) -> None:
        """RFC 8449 §4: in TLS 1.2 the limit counts plaintext bytes and is at most 2^14; it binds protected
        records only (the client's after its ChangeCipherSpec, ours after ours)."""
        if hello.record_size_limit is None:
            return
        self.record_size_limit = min(self.config.record_size_limit or MAX_PLAINTEXT, MAX_PLAINTEXT)
        self._peer_record_size_limit = min(hello.record_size_limit, MAX_PLAINTEXT)
        self.record.max_receive_fragment = self.record_size_limit

    # ---- resumption: RFC 5077 tickets, then RFC 5246 session IDs ----------------------------------

    def check_for_resumption(self, hello: ClientHello) -> SessionState | None:
        state: SessionState | None = None
        ring = self.config.ticket_keys
        if ring is not None and hello.session_ticket:
            state = ring.open(hello.session_ticket)
        cache = self.config.session_cache
        if state is None and cache is not None and hello.legacy_session_id:
            state = cache.get(hello.legacy_session_id)
        if state is None or not self.session_is_resumable(hello, state):
            return None
        return state

    def session_is_resumable(self, hello: ClientHello, state: SessionState) -> bool:
        if state.version != TLS12 or state.expired(self.config.clock()):
            return False
        suite = TLS12_SUITES_BY_CODE.get(state.cipher_suite)
        if suite is None or suite not in self.enabled_suites() or suite.code not in hello.cipher_suites:
            return False
        if state.sni != hello.server_name:
            return False  # a session of one site never resumes on another
        if self.config.client_ca and not state.client_certificates:
            return False
        # RFC 7627 §5.3: a session with EMS must not resume without it (abort); one without EMS must not
        # resume when the client now offers it (full handshake instead).
        if state.ems and not hello.extended_master_secret:
            raise TLSAlert(AlertDescription.handshake_failure, "resumption without extended master secret")
        return state.ems == hello.extended_master_secret

    def do_resume_handshake(self, hello: ClientHello, state: SessionState) -> None:
        suite = TLS12_SUITES_BY_CODE[state.cipher_suite]
        self.suite = suite
        self.resumed = True
        self.ems = state.ems
        self.client_certificates = state.client_certificates
        self.set_master_secret(state.secret)
        self.start_transcript(hello)
        # RFC 5077 §3.4 and RFC 5246 §7.4.1.3: echoing the client's session ID signals the resumption.
        self.session_id = hello.legacy_session_id
        self.send_server_hello(hello)
        self.establish_keys()
        self.send_change_cipher_spec_and_finished()
        self.state = State.EXPECT_CHANGE_CIPHER_SPEC

    # ---- full handshake ----------------------------------------------------------------------------

    def do_full_handshake(self, hello: ClientHello) -> None:
        self.pick_certificate_and_suite(hello)
        certified = self.certified_key
        if certified is None or self.suite is None:
            raise TLSAlert(AlertDescription.internal_error, "negotiation incomplete")
        self.start_transcript(hello)
        if self.config.session_cache is not None:
            self.session_id = self.config.random_bytes(32)
        self.send_ticket = (
            self.config.ticket_keys is not None
            and hello.session_ticket is not None
            and self.config.tickets_per_handshake > 0
        )
        self.send_server_hello(hello)
        self.send_handshake(msg12.certificate(certified.chain_der))
        if self.stapling(hello):
            self.send_handshake(msg12.certificate_status(certified.ocsp_response or b""))
        if self.suite.ecdhe:
            self.request_server_key_exchange_signature()
        else:
            self.send_server_hello_done()

    def enabled_suites(self) -> tuple[CipherSuite12, ...]:
        return enabled_suites(tuple(self.config.tls12_cipher_suites), self.config.enable_rsa_key_exchange)

    def pick_certificate_and_suite(self, hello: ClientHello) -> None:
        """Go's GetCertificate, then the first suite in our order the client offers and the key can serve."""
        info = client_hello_info(hello, TLS12)
        config = self.config
        certified = config.certificate_callback(info)
        if certified is None:
            raise TLSAlert(AlertDescription.handshake_failure, "no certificate for this ClientHello")
        choice = negotiate(
            certified.key_type,
            certified.tls12_schemes,
            certified.rsa_key_exchange,
            tuple(config.tls12_cipher_suites),
            config.enable_rsa_key_exchange,
            config.groups,
            config.tls12_allow_sha1_signatures,
            hello.cipher_suites,
            hello.signature_algorithms,
            hello.supported_groups,
        )
        if choice is None:
            raise TLSAlert(AlertDescription.handshake_failure, "no cipher suite, group or signature scheme in common")
        suite, scheme, group = choice
        self.choose(certified, suite, scheme, group)

    def choose(self, certified: CertifiedKey, suite: CipherSuite12, scheme: int | None, group: int | None) -> None:
        self.certified_key, self.suite, self.scheme, self.group = certified, suite, scheme, group
        if suite.key_exchange == "RSA":
            # rsa_key_exchange is set only for an RSA leaf key (checked when the CertifiedKey was made), so no
            # isinstance here: against cryptography's ABCs it is a Python-level __instancecheck__ per call.
            if not certified.rsa_key_exchange:
                raise TLSAlert(AlertDescription.internal_error, "RSA key exchange needs an RSA certificate")
            public = cast(rsa.RSAPublicKey, certified.chain[0].public_key())
            self._modulus_length = (public.key_size + 7) // 8
            if self._modulus_length < MIN_MODULUS_LENGTH:
                raise TLSAlert(AlertDescription.handshake_failure, "RSA key too small for key exchange")

    def stapling(self, hello: ClientHello) -> bool:
        return bool(hello.ocsp_requested and self.certified_key and self.certified_key.ocsp_response)

    def send_server_hello(self, hello: ClientHello) -> None:
        suite = self.suite
        if suite is None:
            raise TLSAlert(AlertDescription.internal_error, "no suite")
        random = self.config.random_bytes(32)
        if self.config.enable_tls13:
            random = server_random_with_downgrade(random, TLS12)  # RFC 8446 §4.1.3
        self.server_random = random
        extensions = msg12.server_hello_extensions(
            renegotiation_info=self.secure_renegotiation,
            extended_master_secret=self.ems,
            ec_point_formats=suite.ecdhe and hello.ec_point_formats is not None and not self.resumed,
            session_ticket=self.send_ticket,
            alpn=self.alpn,
            server_name=hello.server_name is not None and not self.resumed,
            status_request=not self.resumed and self.stapling(hello),
            record_size_limit=self.record_size_limit,
        )
        self.send_handshake(msg12.server_hello(random, self.session_id, suite.code, extensions))

    # ---- §7.4.3 ServerKeyExchange: the key operation -----------------------------------------------

    def request_server_key_exchange_signature(self) -> None:
        hello = self.hello
        if self.group is None or self.scheme is None or self.certified_key is None or hello is None:
            raise TLSAlert(AlertDescription.internal_error, "negotiation incomplete")
        self._ephemeral, public = generate_ephemeral(self.group)
        self._params = msg12.ecdhe_params(self.group, public)
        signed = hello.random + self.server_random + self._params
        self.state = State.AWAIT_SIGNATURE
        self.key_operations += 1
        self.host.request_key_operation(
            self.certified_key.key, "sign", SignatureScheme(self.scheme), signed, self.sni
        )

    def complete_key_operation(self, result: bytes | BaseException) -> None:
        if self.state is State.AWAIT_SIGNATURE:
            if isinstance(result, BaseException):
                raise TLSAlert(AlertDescription.handshake_failure, "the private-key operation failed") from result
            if not result or len(result) > 0xFFFF or self.scheme is None:
                raise TLSAlert(AlertDescription.internal_error, "the key returned an unusable signature")
            self.send_handshake(msg12.server_key_exchange(self._params, self.scheme, bytes(result)))
            self.send_server_hello_done()
        elif self.state is State.AWAIT_DECRYPTION:
            self.finish_rsa_key_exchange(result)
        else:
            raise TLSAlert(AlertDescription.internal_error, "no key operation was pending")

    def send_server_hello_done(self) -> None:
        if self.config.client_ca:
            self.client_auth = True
            self.send_handshake(msg12.certificate_request(CLIENT_SIGNATURE_SCHEMES, self.config.client_ca_names))
        self.send_handshake(msg12.server_hello_done())
        self.state = State.EXPECT_CLIENT_CERTIFICATE if self.client_auth else State.EXPECT_CLIENT_KEY_EXCHANGE

    # ---- the client's flight -------------------------------------------------------------------------

    def handle_message(self, msg_type: int, body: bytes, raw: bytes) -> None:
        state = self.state
        if state is State.CONNECTED:
            self.handle_post_handshake(msg_type)
        elif msg_type == HandshakeType.certificate and state is State.EXPECT_CLIENT_CERTIFICATE:
            self.read_client_certificate(body, raw)
        elif msg_type == HandshakeType.client_key_exchange and state is State.EXPECT_CLIENT_KEY_EXCHANGE:
            self.read_client_key_exchange(body, raw)
        elif msg_type == HandshakeType.certificate_verify and state is State.EXPECT_CERTIFICATE_VERIFY:
            self.read_client_certificate_verify(body, raw)
        elif msg_type == HandshakeType.finished and state is State.EXPECT_FINISHED:
            self.read_finished(body, raw)
        else:
            raise TLSAlert(AlertDescription.unexpected_message, f"handshake message {msg_type} in {state.name}")

    def read_client_certificate(self, body: bytes, raw: bytes) -> None:
        chain = msg12.parse_client_certificate(body)
        self.transcript_update(raw)
        if not chain:
            if self.config.require_client_certificate:
                raise TLSAlert(AlertDescription.handshake_failure, "client sent no certificate")
        else:
            verify_client_certificate(chain, self.config.client_ca or (), self.config.clock())
            self.client_certificates = chain
        self.state = State.EXPECT_CLIENT_KEY_EXCHANGE

    def read_client_key_exchange(self, body: bytes, raw: bytes) -> None:
        suite, hello = self.suite, self.hello
        if suite is None or hello is None or self.certified_key is None:
            raise TLSAlert(AlertDescription.internal_error, "negotiation incomplete")
        if not self.client_certificates:
            self._transcript_raw = None  # no CertificateVerify will need it
        if suite.ecdhe:
            point = msg12.parse_ecdhe_client_key_exchange(body)
            if self._ephemeral is None or self.group is None:
                raise TLSAlert(AlertDescription.internal_error, "no ephemeral key")
            premaster = agree(self.group, self._ephemeral, point)
            self._ephemeral = None
            self.transcript_update(raw)
            self.derive_master_secret(premaster)
            self.after_key_exchange()
            return
        ciphertext = msg12.parse_rsa_client_key_exchange(body)
        self.transcript_update(raw)
        # RFC 5246 §7.4.7.1: the substitute premaster is drawn before the key is asked, whatever happens next.
        self._random_premaster = self.config.random_bytes(PREMASTER_LENGTH)
        self.state = State.AWAIT_DECRYPTION
        self.key_operations += 1
        self.host.request_key_operation(self.certified_key.key, "decrypt", None, ciphertext, self.sni)

    def finish_rsa_key_exchange(self, result: bytes | BaseException) -> None:
        """Implicit rejection: a bad block, a wrong length or a failed key all give the random premaster,
        and the only visible consequence is that the client's Finished will not verify."""
        hello = self.hello
        if hello is None:
            raise TLSAlert(AlertDescription.internal_error, "no ClientHello")
        raw_block = b"" if isinstance(result, BaseException) else bytes(result)
        client_version = hello.legacy_version.to_bytes(2, "big")
        premaster = unpad_premaster(raw_block, self._modulus_length, client_version, self._random_premaster)
        self._random_premaster = b""
        self.derive_master_secret(premaster)
        self.after_key_exchange()

    def derive_master_secret(self, premaster: bytes) -> None:
        suite, hello = self.suite, self.hello
        if suite is None or hello is None:
            raise TLSAlert(AlertDescription.internal_error, "negotiation incomplete")
        if self.ems:
            # RFC 7627 §4: session_hash covers the handshake up to and including ClientKeyExchange.
            master = tls12_prf.extended_master_secret(suite.hash_name, premaster, self.transcript_hash())
        else:
            master = tls12_prf.master_secret(suite.hash_name, premaster, hello.random, self.server_random)
        self.set_master_secret(master)

    def set_master_secret(self, master: bytes) -> None:
        """Keep the master secret (for the session) and the PRF keyed with it (key block, both Finished)."""
        if self.suite is None:
            raise TLSAlert(AlertDescription.internal_error, "no suite")
        self._master = master
        self._master_prf = tls12_prf.KeyedPRF(self.suite.hash_name, master)

    def after_key_exchange(self) -> None:
        self.establish_keys()
        self.state = State.EXPECT_CERTIFICATE_VERIFY if self.client_certificates else State.EXPECT_CHANGE_CIPHER_SPEC

    def read_client_certificate_verify(self, body: bytes, raw: bytes) -> None:
        scheme, signature = msg12.parse_certificate_verify(body)
        if self._transcript_raw is None:
            raise TLSAlert(AlertDescription.internal_error, "no transcript for CertificateVerify")
        # RFC 5246 §7.4.8: the signature covers every handshake message so far.
        verify_client_signature12(self.client_certificates[0], scheme, signature, bytes(self._transcript_raw))
        self.transcript_update(raw)
        self._transcript_raw = None
        self.state = State.EXPECT_CHANGE_CIPHER_SPEC

    # ---- §6.3 keys, §7.1 ChangeCipherSpec, §7.4.9 Finished -----------------------------------------

    def establish_keys(self) -> None:
        suite, hello, master_prf = self.suite, self.hello, self._master_prf
        if suite is None or hello is None or master_prf is None:
            raise TLSAlert(AlertDescription.internal_error, "negotiation incomplete")
        block = tls12_prf.key_block(
            suite.hash_name, master_prf, self.server_random, hello.random, suite.key_block_length
        )
        k, iv = suite.key_length, suite.fixed_iv_length
        self._client_key = (block[:k], block[2 * k : 2 * k + iv])
        self._server_key = (block[k : 2 * k], block[2 * k + iv : 2 * k + 2 * iv])

    def handle_change_cipher_spec(self, payload: bytes) -> None:
        if self.state is not State.EXPECT_CHANGE_CIPHER_SPEC or payload != _CCS_PAYLOAD or self.suite is None:
            raise TLSAlert(AlertDescription.unexpected_message, "unexpected change_cipher_spec")
        self.host.check_key_change_allowed()
        key, iv = self._client_key
        self.record.set_read_key_tls12(self.suite, key, iv)
        self._client_key = (b"", b"")
        self.state = State.EXPECT_FINISHED

    def read_finished(self, body: bytes, raw: bytes) -> None:
        if self.suite is None or self._master_prf is None:
            raise TLSAlert(AlertDescription.internal_error, "no suite")
        received = messages.parse_finished(body, tls12_prf.VERIFY_DATA_LENGTH)
        expected = tls12_prf.finished_verify_data(
            self.suite.hash_name, self._master_prf, tls12_prf.CLIENT_FINISHED, self.transcript_hash()
        )
        if not hmac.compare_digest(expected, received):
            raise TLSAlert(AlertDescription.decrypt_error, "client Finished does not verify")
        self.transcript_update(raw)
        if not self.resumed:
            cache = self.config.session_cache
            keep_session = cache is not None and bool(self.session_id)
            session = self.session_state() if self.send_ticket or keep_session else None
            if session is not None:
                self.send_session_ticket(session)
            self.send_change_cipher_spec_and_finished()
            if cache is not None and session is not None and keep_session:
                cache.put(self.session_id, session)
        self._master, self._master_prf = b"", None
        self.state = State.CONNECTED
        self.host.finish_handshake(
            HandshakeComplete(
                version=TLS12,
                cipher_suite=self.suite.name,
                group=GROUP_NAMES.get(self.group) if self.group is not None else None,
                sni=self.sni,
                alpn=self.alpn.decode("latin-1") if self.alpn is not None else None,
                resumed=self.resumed,
                key_operations=self.key_operations,
                session_ticket_sent=self.ticket_sent,
                client_certificates=self.client_certificates,
            )
        )

    def session_state(self) -> SessionState:
        if self.suite is None:
            raise TLSAlert(AlertDescription.internal_error, "no suite")
        return SessionState(
            version=TLS12,
            cipher_suite=self.suite.code,
            secret=self._master,
            created_at=self.config.clock(),
            lifetime=self.config.ticket_lifetime,
            sni=self.sni,
            alpn=self.alpn.decode("latin-1") if self.alpn is not None else None,
            ems=self.ems,
            client_certificates=self.client_certificates,
        )

    def send_session_ticket(self, session: SessionState) -> None:
        """RFC 5077 §3.3: NewSessionTicket goes before our ChangeCipherSpec (and into the transcript)."""
        ring = self.config.ticket_keys
        if not self.send_ticket or ring is None:
            return
        try:
            ticket = ring.seal(session)
        except TicketTooLarge:
            # We promised a ticket in ServerHello; RFC 5077 §3.3 says to send an empty one instead.
            self.send_handshake(msg12.new_session_ticket(0, b""))
            return
        self.send_handshake(msg12.new_session_ticket(self.config.ticket_lifetime, ticket))
        self.ticket_sent = True

    def send_change_cipher_spec_and_finished(self) -> None:
        if self.suite is None or self._master_prf is None:
            raise TLSAlert(AlertDescription.internal_error, "no suite")
        self.record.write(ContentType.change_cipher_spec, _CCS_PAYLOAD)
        if self._peer_record_size_limit:
            self.record.max_fragment = self._peer_record_size_limit  # from our first protected record on
        key, iv = self._server_key
        self.record.set_write_key_tls12(self.suite, key, iv)
        self._server_key = (b"", b"")
        verify_data = tls12_prf.finished_verify_data(
            self.suite.hash_name, self._master_prf, tls12_prf.SERVER_FINISHED, self.transcript_hash()
        )
        self.send_handshake(messages.finished(verify_data))

    # ---- after the handshake: renegotiation is refused (RFC 5746 §4.4 allows a server to) ---------------

    def handle_post_handshake(self, msg_type: int) -> None:
        if msg_type != HandshakeType.client_hello:
            raise TLSAlert(AlertDescription.unexpected_message, f"handshake message {msg_type} after the handshake")
        self.renegotiation_refusals += 1
        if self.renegotiation_refusals > MAX_RENEGOTIATION_REFUSALS:
            raise TLSAlert(AlertDescription.unexpected_message, "client keeps asking to renegotiate")
        self.record.write(ContentType.alert, bytes((AlertLevel.WARNING, NO_RENEGOTIATION)))

    def note_application_data(self) -> None:
        self.renegotiation_refusals = 0

    # ---- transcript -----------------------------------------------------------------------------------

    def start_transcript(self, hello: ClientHello) -> None:
        if self.suite is None:
            raise TLSAlert(AlertDescription.internal_error, "no suite")
        self._transcript = hashlib.new(self.suite.hash_name)
        self._transcript.update(hello.raw)
        if self.config.client_ca and not self.resumed:
            # A client CertificateVerify signs the messages themselves (§7.4.8), not their hash.
            self._transcript_raw = bytearray(hello.raw)

    def send_handshake(self, message: bytes) -> None:
        self.transcript_update(message)
        self.record.write(ContentType.handshake, message)

    def transcript_update(self, raw: bytes) -> None:
        if self._transcript is None:
            raise TLSAlert(AlertDescription.internal_error, "no transcript")
        self._transcript.update(raw)
        if self._transcript_raw is not None:
            self._transcript_raw += raw

    def transcript_hash(self) -> bytes:
        if self._transcript is None:
            raise TLSAlert(AlertDescription.internal_error, "no transcript")
        return bytes(self._transcript.copy().digest())
