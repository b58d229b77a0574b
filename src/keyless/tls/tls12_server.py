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

Each step receives the state it needs (``tls12_state``: the session as ServerHello fixed it, the certificate
choice, the keys) and installs the next one. The private-key step is an event answered later: this object
never calls a key. Extended master secret (RFC 7627) is required unless configured otherwise; renegotiation
is refused (RFC 5746 indication sent); only AEAD suites exist (tls12_suites.py).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import weakref
from typing import cast

from cryptography.hazmat.primitives.asymmetric import rsa

from keyless.keys.premaster import MIN_MODULUS_LENGTH, PREMASTER_LENGTH, unpad_premaster
from keyless.keys.schemes import SignatureScheme
from keyless.tls import messages, tls12_prf
from keyless.tls import tls12_messages as msg12
from keyless.tls.alerts import AlertDescription, AlertLevel, TLSAlert
from keyless.tls.client_auth import verify_client_certificate
from keyless.tls.config import ServerConfig, client_hello_info
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
from keyless.tls.tls12_state import (
    CONNECTED,
    EXPECT_CLIENT_HELLO,
    AwaitDecryption,
    AwaitSignature,
    CertificateChoice,
    Connected,
    ExpectCertificateVerify,
    ExpectChangeCipherSpec,
    ExpectClientCertificate,
    ExpectClientKeyExchange,
    ExpectFinished,
    Keys12,
    Session12,
    State12,
)
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


class ServerHandshake12:
    """One TLS 1.2 server handshake, driven by ``connection.TLSServerConnection``."""

    # Counters and per-hello answers start from these class defaults (immutable): __init__ sets only the rest.
    secure_renegotiation = False
    key_operations = 0
    renegotiation_refusals = 0
    record_size_limit: int | None = None  # ours, echoed in ServerHello when the client sent one (RFC 8449)
    _peer_record_size_limit = 0  # the most plaintext per record we may send once protected

    def __init__(self, host: HandshakeHost) -> None:
        # The connection owns this driver; a strong reference back would make every connection a reference
        # cycle that only the cyclic GC frees (measured: ~17 µs of GC per handshake through the adapter).
        self.host: HandshakeHost = weakref.proxy(host)
        self.record = host.record  # the connection's RecordLayer (no reference back): the frequent calls
        self.config: ServerConfig = host.config
        self.state: State12 = EXPECT_CLIENT_HELLO

    def __repr__(self) -> str:  # no secrets
        return f"<ServerHandshake12 {type(self.state).__name__}>"

    @property
    def complete(self) -> bool:
        return self.state is CONNECTED

    # ---- §7.4.1.2 ClientHello ---------------------------------------------------------------------

    def process_client_hello(self, hello: ClientHello) -> None:
        if self.state is not EXPECT_CLIENT_HELLO:
            raise TLSAlert(AlertDescription.unexpected_message, "ClientHello in the middle of a handshake")
        self.check_client_hello(hello)
        alpn = choose_alpn(self.config.alpn_protocols, hello.alpn_protocols)
        self.negotiate_record_size_limit(hello)
        resumable = self.check_for_resumption(hello)
        if resumable is not None:
            self.do_resume_handshake(hello, resumable, alpn)
        else:
            self.do_full_handshake(hello, alpn)

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

    def do_resume_handshake(self, hello: ClientHello, state: SessionState, alpn: bytes | None) -> None:
        suite = TLS12_SUITES_BY_CODE[state.cipher_suite]
        session = self.start_session(
            hello, suite, alpn,
            # RFC 5077 §3.4 and RFC 5246 §7.4.1.3: echoing the client's session ID signals the resumption.
            session_id=hello.legacy_session_id, resumed=True, send_ticket=False, ems=state.ems,
        )
        session.client_certificates = state.client_certificates
        self.send_server_hello(session, stapling=False)
        keys = self.establish_keys(session, state.secret)
        self.send_change_cipher_spec_and_finished(session, keys)
        self.state = ExpectChangeCipherSpec(session, keys)

    # ---- full handshake ----------------------------------------------------------------------------

    def do_full_handshake(self, hello: ClientHello, alpn: bytes | None) -> None:
        suite, choice = self.pick_certificate_and_suite(hello)
        session = self.start_session(
            hello, suite, alpn,
            session_id=self.config.random_bytes(32) if self.config.session_cache is not None else b"",
            resumed=False,
            send_ticket=(
                self.config.ticket_keys is not None
                and hello.session_ticket is not None
                and self.config.tickets_per_handshake > 0
            ),
            ems=hello.extended_master_secret,
        )
        session.group = choice.group
        certified = choice.certified
        stapling = bool(hello.ocsp_requested and certified.ocsp_response)
        self.send_server_hello(session, stapling=stapling)
        self.send_handshake(session, msg12.certificate(certified.chain_der))
        if stapling:
            self.send_handshake(session, msg12.certificate_status(certified.ocsp_response or b""))
        if suite.ecdhe:
            self.request_server_key_exchange_signature(session, choice)
        else:
            self.send_server_hello_done(session, choice, None)

    def enabled_suites(self) -> tuple[CipherSuite12, ...]:
        return enabled_suites(tuple(self.config.tls12_cipher_suites), self.config.enable_rsa_key_exchange)

    def pick_certificate_and_suite(self, hello: ClientHello) -> tuple[CipherSuite12, CertificateChoice]:
        """Go's GetCertificate, then the first suite in our order the client offers and the key can serve."""
        info = client_hello_info(hello, TLS12)
        config = self.config
        certified = config.certificate_callback(info)
        if certified is None:
            raise TLSAlert(AlertDescription.handshake_failure, "no certificate for this ClientHello")
        negotiated = negotiate(
            certified.key_type,
            certified.tls12_schemes,
            certified.rsa_key_exchange,
            tuple(config.tls12_cipher_suites),
            config.enable_rsa_key_exchange,
            config.ecdhe_groups,  # TLS 1.2 has no hybrid groups
            config.tls12_allow_sha1_signatures,
            hello.cipher_suites,
            hello.signature_algorithms,
            hello.supported_groups,
        )
        if negotiated is None:
            raise TLSAlert(AlertDescription.handshake_failure, "no cipher suite, group or signature scheme in common")
        suite, scheme, group = negotiated
        modulus_length = 0
        if suite.key_exchange == "RSA":
            # rsa_key_exchange is set only for an RSA leaf key (checked when the CertifiedKey was made), so no
            # isinstance here: against cryptography's ABCs it is a Python-level __instancecheck__ per call.
            if not certified.rsa_key_exchange:
                raise TLSAlert(AlertDescription.internal_error, "RSA key exchange needs an RSA certificate")
            public = cast(rsa.RSAPublicKey, certified.chain[0].public_key())
            modulus_length = (public.key_size + 7) // 8
            if modulus_length < MIN_MODULUS_LENGTH:
                raise TLSAlert(AlertDescription.handshake_failure, "RSA key too small for key exchange")
        return suite, CertificateChoice(certified, scheme, group, modulus_length)

    def start_session(self, hello: ClientHello, suite: CipherSuite12, alpn: bytes | None, *, session_id: bytes,
                      resumed: bool, send_ticket: bool, ems: bool) -> Session12:
        """The session as ServerHello fixes it; the transcript starts with the ClientHello."""
        random = self.config.random_bytes(32)
        if self.config.enable_tls13:
            random = server_random_with_downgrade(random, TLS12)  # RFC 8446 §4.1.3
        transcript = hashlib.new(suite.hash_name)
        transcript.update(hello.raw)
        session = Session12(
            hello=hello, suite=suite, transcript=transcript, server_random=random, session_id=session_id,
            sni=hello.server_name, alpn=alpn, ems=ems, resumed=resumed, send_ticket=send_ticket,
        )
        if self.config.client_ca and not resumed:
            # A client CertificateVerify signs the messages themselves (§7.4.8), not their hash.
            session.transcript_raw = bytearray(hello.raw)
        return session

    def send_server_hello(self, session: Session12, *, stapling: bool) -> None:
        hello, suite = session.hello, session.suite
        extensions = msg12.server_hello_extensions(
            renegotiation_info=self.secure_renegotiation,
            extended_master_secret=session.ems,
            ec_point_formats=suite.ecdhe and hello.ec_point_formats is not None and not session.resumed,
            session_ticket=session.send_ticket,
            alpn=session.alpn,
            server_name=hello.server_name is not None and not session.resumed,
            status_request=stapling,
            record_size_limit=self.record_size_limit,
        )
        self.send_handshake(session, msg12.server_hello(session.server_random, session.session_id, suite.code,
                                                        extensions))

    # ---- §7.4.3 ServerKeyExchange: the key operation -----------------------------------------------

    def request_server_key_exchange_signature(self, session: Session12, choice: CertificateChoice) -> None:
        if choice.group is None or choice.scheme is None:  # negotiate() gives both for an ECDHE suite
            raise TLSAlert(AlertDescription.internal_error, "ECDHE suite without a group and a scheme")
        ephemeral, public = generate_ephemeral(choice.group)
        params = msg12.ecdhe_params(choice.group, public)
        signed = session.hello.random + session.server_random + params
        self.state = AwaitSignature(session, choice, ephemeral, params)
        self.key_operations += 1
        self.host.request_key_operation(
            choice.certified.key, "sign", SignatureScheme(choice.scheme), signed, session.sni
        )

    def complete_key_operation(self, result: bytes | BaseException) -> None:
        state = self.state
        if isinstance(state, AwaitSignature):
            if isinstance(result, BaseException):
                raise TLSAlert(AlertDescription.handshake_failure, "the private-key operation failed") from result
            if not result or len(result) > 0xFFFF or state.choice.scheme is None:
                raise TLSAlert(AlertDescription.internal_error, "the key returned an unusable signature")
            message = msg12.server_key_exchange(state.params, state.choice.scheme, bytes(result))
            self.send_handshake(state.session, message)
            self.send_server_hello_done(state.session, state.choice, state.ephemeral)
        elif isinstance(state, AwaitDecryption):
            self.finish_rsa_key_exchange(state, result)
        else:
            raise TLSAlert(AlertDescription.internal_error, "no key operation was pending")

    def send_server_hello_done(self, session: Session12, choice: CertificateChoice,
                               ephemeral: EphemeralKey | None) -> None:
        if self.config.client_ca:
            self.send_handshake(session, msg12.certificate_request(CLIENT_SIGNATURE_SCHEMES,
                                                                   self.config.client_ca_names))
            self.send_handshake(session, msg12.server_hello_done())
            self.state = ExpectClientCertificate(session, choice, ephemeral)
        else:
            self.send_handshake(session, msg12.server_hello_done())
            self.state = ExpectClientKeyExchange(session, choice, ephemeral)

    # ---- the client's flight -------------------------------------------------------------------------

    def handle_message(self, msg_type: int, body: bytes, raw: bytes) -> None:
        state = self.state
        if isinstance(state, Connected):
            self.handle_post_handshake(msg_type)
        elif msg_type == HandshakeType.certificate and isinstance(state, ExpectClientCertificate):
            self.read_client_certificate(state, body, raw)
        elif msg_type == HandshakeType.client_key_exchange and isinstance(state, ExpectClientKeyExchange):
            self.read_client_key_exchange(state, body, raw)
        elif msg_type == HandshakeType.certificate_verify and isinstance(state, ExpectCertificateVerify):
            self.read_client_certificate_verify(state, body, raw)
        elif msg_type == HandshakeType.finished and isinstance(state, ExpectFinished):
            self.read_finished(state, body, raw)
        else:
            raise TLSAlert(AlertDescription.unexpected_message,
                           f"handshake message {msg_type} in {type(state).__name__}")

    def read_client_certificate(self, state: ExpectClientCertificate, body: bytes, raw: bytes) -> None:
        chain = msg12.parse_client_certificate(body)
        session = state.session
        session.update(raw)
        if not chain:
            if self.config.require_client_certificate:
                raise TLSAlert(AlertDescription.handshake_failure, "client sent no certificate")
        else:
            verify_client_certificate(
                chain, self.config.client_ca or (), self.config.clock(), self.config.client_verify_depth
            )
            session.client_certificates = chain
        self.state = ExpectClientKeyExchange(session, state.choice, state.ephemeral)

    def read_client_key_exchange(self, state: ExpectClientKeyExchange, body: bytes, raw: bytes) -> None:
        session, choice = state.session, state.choice
        if not session.client_certificates:
            session.transcript_raw = None  # no CertificateVerify will need it
        if session.suite.ecdhe:
            if state.ephemeral is None or choice.group is None:
                raise TLSAlert(AlertDescription.internal_error, "ECDHE without an ephemeral key")
            point = msg12.parse_ecdhe_client_key_exchange(body)
            premaster = agree(choice.group, state.ephemeral, point)
            session.update(raw)
            self.after_key_exchange(session, premaster)
            return
        ciphertext = msg12.parse_rsa_client_key_exchange(body)
        session.update(raw)
        # RFC 5246 §7.4.7.1: the substitute premaster is drawn before the key is asked, whatever happens next.
        random_premaster = self.config.random_bytes(PREMASTER_LENGTH)
        self.state = AwaitDecryption(session, choice, random_premaster)
        self.key_operations += 1
        self.host.request_key_operation(choice.certified.key, "decrypt", None, ciphertext, session.sni)

    def finish_rsa_key_exchange(self, state: AwaitDecryption, result: bytes | BaseException) -> None:
        """Implicit rejection: a bad block, a wrong length or a failed key all give the random premaster,
        and the only visible consequence is that the client's Finished will not verify."""
        raw_block = b"" if isinstance(result, BaseException) else bytes(result)
        client_version = state.session.hello.legacy_version.to_bytes(2, "big")
        premaster = unpad_premaster(raw_block, state.choice.modulus_length, client_version, state.random_premaster)
        self.after_key_exchange(state.session, premaster)

    def after_key_exchange(self, session: Session12, premaster: bytes) -> None:
        suite = session.suite
        if session.ems:
            # RFC 7627 §4: session_hash covers the handshake up to and including ClientKeyExchange.
            master = tls12_prf.extended_master_secret(suite.hash_name, premaster, session.transcript_hash())
        else:
            master = tls12_prf.master_secret(suite.hash_name, premaster, session.hello.random, session.server_random)
        keys = self.establish_keys(session, master)
        if session.client_certificates:
            self.state = ExpectCertificateVerify(session, keys)
        else:
            self.state = ExpectChangeCipherSpec(session, keys)

    def read_client_certificate_verify(self, state: ExpectCertificateVerify, body: bytes, raw: bytes) -> None:
        session = state.session
        scheme, signature = msg12.parse_certificate_verify(body)
        if session.transcript_raw is None:  # kept since the ClientHello whenever client_ca is set
            raise TLSAlert(AlertDescription.internal_error, "no transcript for CertificateVerify")
        # RFC 5246 §7.4.8: the signature covers every handshake message so far.
        verify_client_signature12(session.client_certificates[0], scheme, signature, bytes(session.transcript_raw))
        session.update(raw)
        session.transcript_raw = None
        self.state = ExpectChangeCipherSpec(session, state.keys)

    # ---- §6.3 keys, §7.1 ChangeCipherSpec, §7.4.9 Finished -----------------------------------------

    def establish_keys(self, session: Session12, master: bytes) -> Keys12:
        """The master secret, the PRF keyed with it once (key block, both Finished), both record keys."""
        suite = session.suite
        prf = tls12_prf.KeyedPRF(suite.hash_name, master)
        block = tls12_prf.key_block(
            suite.hash_name, prf, session.server_random, session.hello.random, suite.key_block_length
        )
        k, iv = suite.key_length, suite.fixed_iv_length
        return Keys12(
            master=master,
            prf=prf,
            client=(block[:k], block[2 * k : 2 * k + iv]),
            server=(block[k : 2 * k], block[2 * k + iv : 2 * k + 2 * iv]),
        )

    def handle_change_cipher_spec(self, payload: bytes) -> None:
        state = self.state
        if not isinstance(state, ExpectChangeCipherSpec) or payload != _CCS_PAYLOAD:
            raise TLSAlert(AlertDescription.unexpected_message, "unexpected change_cipher_spec")
        self.host.check_key_change_allowed()
        key, iv = state.keys.client
        self.record.set_read_key_tls12(state.session.suite, key, iv)
        self.state = ExpectFinished(state.session, state.keys)

    def read_finished(self, state: ExpectFinished, body: bytes, raw: bytes) -> None:
        session, keys = state.session, state.keys
        suite = session.suite
        received = messages.parse_finished(body, tls12_prf.VERIFY_DATA_LENGTH)
        expected = tls12_prf.finished_verify_data(
            suite.hash_name, keys.prf, tls12_prf.CLIENT_FINISHED, session.transcript_hash()
        )
        if not hmac.compare_digest(expected, received):
            raise TLSAlert(AlertDescription.decrypt_error, "client Finished does not verify")
        session.update(raw)
        if not session.resumed:
            cache = self.config.session_cache
            keep_session = cache is not None and bool(session.session_id)
            resumable = self.session_state(session, keys) if session.send_ticket or keep_session else None
            if resumable is not None:
                self.send_session_ticket(session, resumable)
            self.send_change_cipher_spec_and_finished(session, keys)
            if cache is not None and resumable is not None and keep_session:
                cache.put(session.session_id, resumable)
        self.state = CONNECTED  # the keys and the session are dropped with the state
        self.host.finish_handshake(
            HandshakeComplete(
                version=TLS12,
                cipher_suite=suite.name,
                group=GROUP_NAMES.get(session.group) if session.group is not None else None,
                sni=session.sni,
                alpn=session.alpn.decode("latin-1") if session.alpn is not None else None,
                resumed=session.resumed,
                key_operations=self.key_operations,
                session_ticket_sent=session.ticket_sent,
                client_certificates=session.client_certificates,
            )
        )

    def session_state(self, session: Session12, keys: Keys12) -> SessionState:
        return SessionState(
            version=TLS12,
            cipher_suite=session.suite.code,
            secret=keys.master,
            created_at=self.config.clock(),
            lifetime=self.config.ticket_lifetime,
            sni=session.sni,
            alpn=session.alpn.decode("latin-1") if session.alpn is not None else None,
            ems=session.ems,
            client_certificates=session.client_certificates,
        )

    def send_session_ticket(self, session: Session12, resumable: SessionState) -> None:
        """RFC 5077 §3.3: NewSessionTicket goes before our ChangeCipherSpec (and into the transcript)."""
        ring = self.config.ticket_keys
        if not session.send_ticket or ring is None:
            return
        try:
            ticket = ring.seal(resumable)
        except TicketTooLarge:
            # We promised a ticket in ServerHello; RFC 5077 §3.3 says to send an empty one instead.
            self.send_handshake(session, msg12.new_session_ticket(0, b""))
            return
        self.send_handshake(session, msg12.new_session_ticket(self.config.ticket_lifetime, ticket))
        session.ticket_sent = True

    def send_change_cipher_spec_and_finished(self, session: Session12, keys: Keys12) -> None:
        self.record.write(ContentType.change_cipher_spec, _CCS_PAYLOAD)
        if self._peer_record_size_limit:
            self.record.max_fragment = self._peer_record_size_limit  # from our first protected record on
        key, iv = keys.server
        self.record.set_write_key_tls12(session.suite, key, iv)
        verify_data = tls12_prf.finished_verify_data(
            session.suite.hash_name, keys.prf, tls12_prf.SERVER_FINISHED, session.transcript_hash()
        )
        self.send_handshake(session, messages.finished(verify_data))

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

    # ---- plumbing -------------------------------------------------------------------------------------

    def send_handshake(self, session: Session12, message: bytes) -> None:
        session.update(message)
        self.record.write(ContentType.handshake, message)
