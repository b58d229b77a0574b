"""The server side of a TLS 1.3 handshake (RFC 8446), one method per step of the protocol overview (§2):

    process_client_hello → (send_hello_retry_request → process_client_hello)
    → check_for_resumption → pick_certificate → send_server_parameters → send_server_certificate
    → [KeyOperationRequired … complete_key_operation] → send_certificate_verify → send_server_finished
    → read_client_certificate → read_client_certificate_verify → read_client_finished
    → send_new_session_tickets → (post-handshake: KeyUpdate)

Each step receives the state it needs (``tls13_state``: what the ClientHello decided, the handshake keys,
the application keys) and returns or installs the next one, so nothing is ever "not yet set".
The private-key step is an event answered later: this object never calls a key.
"""

from __future__ import annotations

import hmac
import weakref

from keyless.keys.schemes import SignatureScheme
from keyless.tls import key_schedule as ks
from keyless.tls import messages
from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.client_auth import verify_client_certificate, verify_client_signature
from keyless.tls.config import ServerConfig, client_hello_info
from keyless.tls.events import HandshakeComplete
from keyless.tls.extensions import PSK_DHE_KE, PSK_KE, choose_alpn
from keyless.tls.handshake_host import HandshakeHost
from keyless.tls.hello_retry import check_second_client_hello
from keyless.tls.hybrid import check_share_encoding, key_exchange
from keyless.tls.messages import ClientHello, ContentType, HandshakeType
from keyless.tls.suites import (
    GROUP_NAMES,
    HYBRID_GROUPS,
    TLS13,
    TLS13_SIGNATURE_SCHEMES,
    TLS13_SUITES_BY_CODE,
    CipherSuite13,
    choose_cipher_suite,
    choose_signature_scheme,
)
from keyless.tls.tickets import SessionState, TicketTooLarge
from keyless.tls.tls13_state import (
    EXPECT_CLIENT_HELLO,
    ApplicationKeys,
    AwaitSignature,
    ChosenCertificate,
    Connected,
    ExpectClientCertificate,
    ExpectClientCertificateVerify,
    ExpectClientFinished,
    ExpectSecondClientHello,
    HandshakeKeys,
    Negotiated,
    State,
)

_CCS_RECORD_PAYLOAD = b"\x01"
_HANDSHAKE_RECORD = int(ContentType.handshake)  # a plain int: an IntEnum member lookup costs ~50 ns
_MAX_TICKET_AGE_MS = 1 << 32


class ServerHandshake13:
    """One TLS 1.3 server handshake and the post-handshake messages that follow it."""

    # Counters start at these class-level defaults (immutable): a new connection sets only what __init__
    # must, which matters at thousands of handshakes a second.
    ccs_sent = False
    ccs_received = False
    key_operations = 0
    tickets_sent = 0
    key_updates_without_data = 0

    def __init__(self, host: HandshakeHost) -> None:
        # The connection owns this driver; a strong reference back would make every connection a reference
        # cycle that only the cyclic GC frees (~16 µs of GC per handshake, as measured for TLS 1.2).
        self.host: HandshakeHost = weakref.proxy(host)
        self.config: ServerConfig = host.config
        self.state: State = EXPECT_CLIENT_HELLO

    def __repr__(self) -> str:
        return f"<ServerHandshake13 {type(self.state).__name__}>"

    @property
    def complete(self) -> bool:
        return isinstance(self.state, Connected)

    # ---- §4.1.2 ClientHello ---------------------------------------------------------------------

    def process_client_hello(self, hello: ClientHello) -> None:
        """Negotiate everything a ClientHello decides, then either ask for a retry or answer it."""
        retry = self.state if isinstance(self.state, ExpectSecondClientHello) else None
        if retry is None and self.state is not EXPECT_CLIENT_HELLO:
            raise TLSAlert(AlertDescription.unexpected_message, "ClientHello in the middle of a handshake")
        self.check_client_hello(hello)
        if retry is not None:
            check_second_client_hello(retry.first, hello, retry.group)

        suite = choose_cipher_suite(self.config.tls13_cipher_suites, hello.cipher_suites)
        if suite is None:
            raise TLSAlert(AlertDescription.handshake_failure, "no TLS 1.3 cipher suite in common")
        if retry is not None and suite is not retry.suite:
            raise TLSAlert(AlertDescription.illegal_parameter, "second ClientHello changed cipher suites")
        transcript = retry.transcript if retry is not None else ks.Transcript(suite.hash_name)

        group: int | None = None
        peer_share: bytes | None = None
        if hello.supported_groups:
            group, peer_share = self.choose_group(hello, retry)
            if peer_share is None:
                if retry is not None:
                    raise TLSAlert(AlertDescription.illegal_parameter, "no key share for the group we asked for")
                self.send_hello_retry_request(hello, suite, transcript, group)
                return
        negotiated = Negotiated(
            hello=hello,
            suite=suite,
            transcript=transcript,
            group=group,
            sni=hello.server_name,
            alpn=choose_alpn(self.config.alpn_protocols, hello.alpn_protocols),
        )

        self.check_for_resumption(negotiated)
        if peer_share is None and not negotiated.resumed:
            raise TLSAlert(AlertDescription.handshake_failure, "psk_ke offered but no PSK could be resumed")
        if negotiated.resumed and PSK_DHE_KE not in hello.psk_modes:
            peer_share = None  # psk_ke: the client did not offer (EC)DHE with its PSK
            negotiated.group = None
        transcript.update(hello.raw)
        certificate = None if negotiated.resumed else self.pick_certificate(negotiated)
        keys = self.send_server_parameters(negotiated, peer_share)
        if certificate is None:
            self.send_server_finished(negotiated, keys)
        else:
            self.send_server_certificate(negotiated, certificate)
            self.request_certificate_verify(negotiated, keys, certificate)

    def check_client_hello(self, hello: ClientHello) -> None:
        """The §4.1.2 and §9.2 rules that do not depend on our configuration."""
        hello.check_extensions_for(TLS13)
        if hello.compression_methods != b"\x00":
            raise TLSAlert(AlertDescription.illegal_parameter, "TLS 1.3 requires null compression only")
        if hello.legacy_version != 0x0303:
            raise TLSAlert(AlertDescription.protocol_version, "bad legacy_version")
        has_groups = bool(hello.supported_groups)
        if has_groups != (hello.key_shares is not None):
            raise TLSAlert(AlertDescription.missing_extension, "supported_groups and key_share go together")
        if hello.pre_shared_key is not None and not hello.psk_modes:
            raise TLSAlert(AlertDescription.missing_extension, "pre_shared_key without psk_key_exchange_modes")
        if hello.pre_shared_key is None and not hello.signature_algorithms:
            raise TLSAlert(AlertDescription.missing_extension, "no signature_algorithms")
        if not has_groups and not (
            self.config.allow_psk_ke and hello.pre_shared_key is not None and PSK_KE in hello.psk_modes
        ):
            # Without (EC)DHE only a psk_ke resumption could proceed, and only where configured.
            raise TLSAlert(AlertDescription.missing_extension, "no supported_groups/key_share")
        supported = frozenset(hello.supported_groups)
        for group, share in hello.key_shares or ():  # §4.2.8: every share, not only the one we use
            if group not in supported:
                raise TLSAlert(AlertDescription.illegal_parameter, "key_share for a group not in supported_groups")
            check_share_encoding(group, share)

    def choose_group(self, hello: ClientHello, retry: ExpectSecondClientHello | None) -> tuple[int, bytes | None]:
        """Our most preferred group the client sent a share for; else our most preferred group it supports
        (which costs a HelloRetryRequest); else handshake_failure. After a retry: the group we asked for.

        With ``hybrid_hello_retry``, a classical share is not taken while the client supports a hybrid group we
        prefer to it: we ask for that group's share instead (a round trip for post-quantum key agreement).
        A group the client sent a share for is never asked for (§4.1.4): it would have been chosen above."""
        shares = dict(hello.key_shares or ())
        if retry is not None:
            share = shares.get(retry.group)
            if share is None or len(shares) != 1:
                raise TLSAlert(AlertDescription.illegal_parameter, "second ClientHello has the wrong key_share")
            return retry.group, share
        for group in self.config.groups:
            if group in shares:
                if self.config.hybrid_hello_retry and group not in HYBRID_GROUPS:
                    for preferred in self.config.groups[: self.config.groups.index(group)]:
                        if preferred in HYBRID_GROUPS and preferred in hello.supported_groups:
                            return preferred, None
                return group, shares[group]
        for group in self.config.groups:
            if group in hello.supported_groups:
                return group, None
        raise TLSAlert(AlertDescription.handshake_failure, "no key exchange group in common")

    # ---- §4.1.4 HelloRetryRequest ---------------------------------------------------------------

    def send_hello_retry_request(self, hello: ClientHello, suite: CipherSuite13, transcript: ks.Transcript,
                                 group: int) -> None:
        transcript.update(hello.raw)
        transcript.restart_after_hello_retry()
        retry = messages.server_hello(
            messages.HELLO_RETRY_REQUEST_RANDOM,
            hello.legacy_session_id,
            suite.code,
            selected_group=group,
        )
        self.send_handshake(retry, transcript)
        self.send_compat_change_cipher_spec(hello)
        if hello.early_data:
            self.host.skip_early_data()  # §4.2.10: after an HRR every early application_data record is dropped
        # The second ClientHello is compared with this one (§4.1.2).
        self.state = ExpectSecondClientHello(first=hello, suite=suite, transcript=transcript, group=group)

    # ---- §4.2.11 pre_shared_key -----------------------------------------------------------------

    def check_for_resumption(self, negotiated: Negotiated) -> None:
        """Accept the first offered ticket that opens, is fresh and matches; then its binder must verify."""
        hello = negotiated.hello
        offered = hello.pre_shared_key
        ring = self.config.ticket_keys
        if offered is None or ring is None:
            return
        if PSK_DHE_KE not in hello.psk_modes and not (self.config.allow_psk_ke and PSK_KE in hello.psk_modes):
            return
        suite = negotiated.suite
        now = self.config.clock()
        for index, identity in enumerate(offered.identities[:5]):
            state = ring.open(identity.identity)
            if state is None or not self.session_is_resumable(negotiated, state, identity.obfuscated_ticket_age, now):
                continue
            early = ks.EarlySecret.create(suite, state.secret)
            truncated = hello.raw[: len(hello.raw) - offered.binders_length]
            expected = ks.finished_verify_data(
                suite.hash_name, early.resumption_binder_key(), negotiated.transcript.digest_with(truncated)
            )
            if not hmac.compare_digest(expected, offered.binders[index]):
                raise TLSAlert(AlertDescription.decrypt_error, "PSK binder does not verify")
            negotiated.psk = state.secret
            negotiated.psk_index = index
            negotiated.client_certificates = state.client_certificates
            return

    def session_is_resumable(self, negotiated: Negotiated, state: SessionState, obfuscated_age: int,
                             now: float) -> bool:
        if state.version != TLS13:
            return False
        if state.cipher_suite not in (s.code for s in self.config.tls13_cipher_suites):
            return False
        if _suite_hash(state.cipher_suite) != negotiated.suite.hash_name:
            return False  # §4.2.11: the PSK's hash must be the negotiated suite's hash
        age = now - state.created_at
        if age < -self.config.max_ticket_age_skew or age > min(state.lifetime, 604800):
            return False
        client_age = ((obfuscated_age - state.age_add) % _MAX_TICKET_AGE_MS) / 1000.0
        if abs(client_age - age) > self.config.max_ticket_age_skew:
            return False
        if self.config.client_ca and not state.client_certificates:
            # A session that never showed a client certificate does not resume where one is asked for (the
            # TLS 1.2 rule too): the full handshake will send the CertificateRequest.
            return False
        return state.sni == negotiated.sni

    # ---- certificate selection (Go's GetCertificate) ---------------------------------------------

    def pick_certificate(self, negotiated: Negotiated) -> ChosenCertificate:
        hello = negotiated.hello
        info = client_hello_info(hello, TLS13)
        certified = self.config.certificate_callback(info)
        if certified is None:
            raise TLSAlert(AlertDescription.handshake_failure, "no certificate for this ClientHello")
        scheme = choose_signature_scheme(certified.tls13_schemes, hello.signature_algorithms)
        if scheme is None:
            raise TLSAlert(AlertDescription.handshake_failure, "no signature scheme in common")
        return ChosenCertificate(certified, scheme)

    # ---- §4.1.3 ServerHello + key schedule, §4.3.1 EncryptedExtensions ---------------------------

    def send_server_parameters(self, negotiated: Negotiated, peer_share: bytes | None) -> HandshakeKeys:
        hello, suite = negotiated.hello, negotiated.suite
        key_share: tuple[int, bytes] | None = None
        if peer_share is not None and negotiated.group is not None:
            our_share, shared_secret = key_exchange(negotiated.group, peer_share)
            key_share = (negotiated.group, our_share)
        else:  # psk_ke (process_client_hello allows it only with a PSK): §7.1, 0 in place of the (EC)DHE secret
            shared_secret = bytes(suite.hash_length)
        server_hello = messages.server_hello(
            self.config.random_bytes(32),
            hello.legacy_session_id,
            suite.code,
            key_share=key_share,
            selected_psk=negotiated.psk_index,
        )
        self.send_handshake(server_hello, negotiated.transcript)
        self.send_compat_change_cipher_spec(hello)

        psk = negotiated.psk
        early = ks.EarlySecret.create(suite, psk) if psk else ks.EarlySecret.without_psk(suite)
        handshake_secret = early.handshake_secret(shared_secret)
        transcript_hash = negotiated.transcript.digest()
        keys = HandshakeKeys(
            secret=handshake_secret,
            client=handshake_secret.client_handshake_traffic_secret(transcript_hash),
            server=handshake_secret.server_handshake_traffic_secret(transcript_hash),
        )
        self.host.record.set_write_key_tls13(suite, keys.server)
        self.host.set_read_key_tls13(suite, keys.client)
        if hello.early_data:
            # We never accept 0-RTT: the client's early records are undecryptable under the handshake key
            # and are skipped (RFC 8446 §4.2.10).
            self.host.skip_early_data()

        limit = self.negotiate_record_size_limit(hello)
        self.send_handshake(
            messages.encrypted_extensions(
                alpn=negotiated.alpn,
                server_name_acknowledged=hello.server_name is not None and not negotiated.resumed,
                record_size_limit=limit,
            ),
            negotiated.transcript,
        )
        return keys

    def negotiate_record_size_limit(self, hello: ClientHello) -> int | None:
        """RFC 8449: answer a client's record_size_limit with ours; each side then sends records under the
        other's limit (in TLS 1.3 the limit counts the inner content-type byte)."""
        if hello.record_size_limit is None:
            return None
        ours = self.config.record_size_limit or 16385
        record = self.host.record
        record.max_fragment = min(16384, hello.record_size_limit - 1)
        record.max_receive_fragment = min(16384, ours - 1)
        return ours

    def send_compat_change_cipher_spec(self, hello: ClientHello) -> None:
        """Appendix D.4: a client in middlebox-compatibility mode (non-empty session id) gets one CCS
        right after our first handshake message."""
        if hello.legacy_session_id and not self.ccs_sent:
            self.host.record.write(ContentType.change_cipher_spec, _CCS_RECORD_PAYLOAD)
            self.ccs_sent = True

    # ---- §4.3.2 CertificateRequest, §4.4.2 Certificate, §4.4.3 CertificateVerify ----------------

    def send_server_certificate(self, negotiated: Negotiated, certificate: ChosenCertificate) -> None:
        if self.config.client_ca:
            request = messages.certificate_request(sorted(TLS13_SIGNATURE_SCHEMES), self.config.client_ca_names)
            self.send_handshake(request, negotiated.transcript)
        certified = certificate.certified
        if negotiated.hello.ocsp_requested:
            self.send_handshake(certified.certificate_message_with_ocsp, negotiated.transcript)
        else:
            self.send_handshake(certified.certificate_message, negotiated.transcript)

    def request_certificate_verify(self, negotiated: Negotiated, keys: HandshakeKeys,
                                   certificate: ChosenCertificate) -> None:
        """Hand the signature to the caller: the one place the handshake waits on the outside world."""
        to_sign = ks.certificate_verify_input(negotiated.transcript.digest())
        self.state = AwaitSignature(negotiated, keys, certificate)
        self.key_operations += 1
        scheme = certificate.scheme
        typed = scheme if isinstance(scheme, SignatureScheme) else SignatureScheme(scheme)
        self.host.request_key_operation(certificate.certified.key, "sign", typed, to_sign, negotiated.sni)

    def complete_key_operation(self, result: bytes | BaseException) -> None:
        state = self.state
        if not isinstance(state, AwaitSignature):
            raise TLSAlert(AlertDescription.internal_error, "no key operation was pending")
        if isinstance(result, BaseException):
            raise TLSAlert(AlertDescription.handshake_failure, "the private-key operation failed") from result
        if not result or len(result) > 0xFFFF:
            raise TLSAlert(AlertDescription.internal_error, "the key returned an unusable signature")
        self.send_certificate_verify(state, result)
        self.send_server_finished(state.negotiated, state.keys)

    def send_certificate_verify(self, state: AwaitSignature, signature: bytes) -> None:
        message = messages.certificate_verify(state.certificate.scheme, signature)
        self.send_handshake(message, state.negotiated.transcript)

    # ---- §4.4.4 Finished, §7.1 application traffic secrets ----------------------------------------

    def send_server_finished(self, negotiated: Negotiated, keys: HandshakeKeys) -> None:
        suite, transcript = negotiated.suite, negotiated.transcript
        verify_data = ks.finished_verify_data(suite.hash_name, keys.server, transcript.digest())
        self.send_handshake(messages.finished(verify_data), transcript)
        master = keys.secret.master_secret()
        transcript_hash = transcript.digest()
        application = ApplicationKeys(
            master=master,
            client=master.client_application_traffic_secret(transcript_hash),
            server=master.server_application_traffic_secret(transcript_hash),
        )
        self.host.record.set_write_key_tls13(suite, application.server)
        if self.config.client_ca and not negotiated.resumed:
            self.state = ExpectClientCertificate(negotiated, keys, application)
        else:
            self.state = ExpectClientFinished(negotiated, keys, application, negotiated.client_certificates)

    # ---- client flight ------------------------------------------------------------------------------

    def handle_message(self, msg_type: int, body: bytes, raw: bytes) -> None:
        state = self.state
        if isinstance(state, Connected):
            self.handle_post_handshake(state, msg_type, body)
        elif msg_type == HandshakeType.client_hello and isinstance(state, ExpectSecondClientHello):
            self.process_client_hello(messages.parse_client_hello(raw))
        elif msg_type == HandshakeType.certificate and isinstance(state, ExpectClientCertificate):
            self.read_client_certificate(state, body, raw)
        elif msg_type == HandshakeType.certificate_verify and isinstance(state, ExpectClientCertificateVerify):
            self.read_client_certificate_verify(state, body, raw)
        elif msg_type == HandshakeType.finished and isinstance(state, ExpectClientFinished):
            self.read_client_finished(state, body, raw)
        else:
            raise TLSAlert(AlertDescription.unexpected_message,
                           f"handshake message {msg_type} in {type(state).__name__}")

    def read_client_certificate(self, state: ExpectClientCertificate, body: bytes, raw: bytes) -> None:
        chain = messages.parse_client_certificate(body)
        state.negotiated.transcript.update(raw)
        if not chain:
            if self.config.require_client_certificate:
                raise TLSAlert(AlertDescription.certificate_required, "client sent no certificate")
            self.state = ExpectClientFinished(state.negotiated, state.keys, state.application, ())
            return
        verify_client_certificate(
            chain, self.config.client_ca or (), self.config.clock(), self.config.client_verify_depth
        )
        self.state = ExpectClientCertificateVerify(state.negotiated, state.keys, state.application, chain)

    def read_client_certificate_verify(self, state: ExpectClientCertificateVerify, body: bytes, raw: bytes) -> None:
        scheme, signature = messages.parse_certificate_verify(body)
        if scheme not in TLS13_SIGNATURE_SCHEMES:
            raise TLSAlert(AlertDescription.illegal_parameter, "signature scheme not allowed in TLS 1.3")
        transcript = state.negotiated.transcript
        signed = ks.certificate_verify_input(transcript.digest(), server=False)
        verify_client_signature(state.chain[0], scheme, signature, signed)
        transcript.update(raw)
        self.state = ExpectClientFinished(state.negotiated, state.keys, state.application, state.chain)

    def read_client_finished(self, state: ExpectClientFinished, body: bytes, raw: bytes) -> None:
        negotiated = state.negotiated
        suite, transcript = negotiated.suite, negotiated.transcript
        received = messages.parse_finished(body, suite.hash_length)
        expected = ks.finished_verify_data(suite.hash_name, state.keys.client, transcript.digest())
        if not hmac.compare_digest(expected, received):
            raise TLSAlert(AlertDescription.decrypt_error, "client Finished does not verify")
        transcript.update(raw)
        application = state.application
        self.host.set_read_key_tls13(suite, application.client)
        # From here on only the traffic secrets are kept (for KeyUpdate): the handshake state is dropped.
        self.state = Connected(suite, application.client, application.server)
        if self.tickets_wanted(negotiated.hello):  # the resumption master secret serves only to make tickets
            resumption_master_secret = application.master.resumption_master_secret(transcript.digest())
            self.send_new_session_tickets(negotiated, resumption_master_secret, state.client_certificates)
        self.host.finish_handshake(
            HandshakeComplete(
                version=TLS13,
                cipher_suite=suite.name,
                group=GROUP_NAMES.get(negotiated.group or 0),
                sni=negotiated.sni,
                alpn=negotiated.alpn.decode("latin-1") if negotiated.alpn is not None else None,
                resumed=negotiated.resumed,
                key_operations=self.key_operations,
                session_ticket_sent=self.tickets_sent > 0,
                client_certificates=state.client_certificates,
            )
        )

    # ---- §4.6.1 NewSessionTicket ----------------------------------------------------------------

    def tickets_wanted(self, hello: ClientHello) -> bool:
        """Tickets are on, and the client offered a PSK mode it could resume them with."""
        if self.config.ticket_keys is None or not self.config.tickets_per_handshake:
            return False
        return PSK_DHE_KE in hello.psk_modes or (self.config.allow_psk_ke and PSK_KE in hello.psk_modes)

    def send_new_session_tickets(self, negotiated: Negotiated, resumption_master_secret: bytes,
                                 client_certificates: tuple[bytes, ...]) -> None:
        ring = self.config.ticket_keys
        if ring is None:
            return
        suite = negotiated.suite
        now = self.config.clock()
        for counter in range(self.config.tickets_per_handshake):
            nonce = counter.to_bytes(8, "big")
            psk = ks.resumption_psk(suite.hash_name, resumption_master_secret, nonce)
            age_add = int.from_bytes(self.config.random_bytes(4), "big")
            state = SessionState(
                version=TLS13,
                cipher_suite=suite.code,
                secret=psk,
                created_at=now,
                age_add=age_add,
                lifetime=self.config.ticket_lifetime,
                sni=negotiated.sni,
                alpn=negotiated.alpn.decode("latin-1") if negotiated.alpn is not None else None,
                ems=True,
                client_certificates=client_certificates,
            )
            try:
                ticket = ring.seal(state)
            except TicketTooLarge:  # a huge client-certificate chain: resumption is optional, the connection is not
                return
            self.send_handshake(messages.new_session_ticket(self.config.ticket_lifetime, age_add, nonce, ticket))
            self.tickets_sent += 1

    # ---- §4.6.3 KeyUpdate ---------------------------------------------------------------------------

    def handle_post_handshake(self, state: Connected, msg_type: int, body: bytes) -> None:
        if msg_type != HandshakeType.key_update:
            raise TLSAlert(AlertDescription.unexpected_message, f"post-handshake message {msg_type}")
        update_requested = messages.parse_key_update(body)
        self.key_updates_without_data += 1
        if self.key_updates_without_data > self.config.max_key_updates_without_data:
            raise TLSAlert(AlertDescription.unexpected_message, "too many KeyUpdates without application data")
        state.client_secret = ks.next_traffic_secret(state.suite.hash_name, state.client_secret)
        self.host.set_read_key_tls13(state.suite, state.client_secret)
        if update_requested and not self.host.closed:  # after our close_notify we send nothing more
            self.update_sending_key(request_peer_update=False)

    def update_sending_key(self, *, request_peer_update: bool) -> None:
        """Send KeyUpdate under the current key, then switch to the next server traffic secret."""
        state = self.state
        if not isinstance(state, Connected):
            raise TLSAlert(AlertDescription.internal_error, "KeyUpdate before the handshake completed")
        self.send_handshake(messages.key_update(request_peer_update))
        state.server_secret = ks.next_traffic_secret(state.suite.hash_name, state.server_secret)
        self.host.record.set_write_key_tls13(state.suite, state.server_secret)

    def note_application_data(self) -> None:
        self.key_updates_without_data = 0

    def handle_change_cipher_spec(self, payload: bytes) -> None:
        """Appendix D.4: one CCS {1} may arrive before the client's Finished; anything else is an error."""
        if payload != _CCS_RECORD_PAYLOAD or self.ccs_received or isinstance(self.state, Connected):
            raise TLSAlert(AlertDescription.unexpected_message, "unexpected change_cipher_spec")
        self.ccs_received = True

    # ---- plumbing -------------------------------------------------------------------------------------

    def send_handshake(self, message: bytes, transcript: ks.Transcript | None = None) -> None:
        """Queue a handshake message; ``transcript`` is None only for post-handshake messages (§4.4.1)."""
        if transcript is not None:
            transcript.update(message)
        self.host.record.write(_HANDSHAKE_RECORD, message)


def _suite_hash(code: int) -> str | None:
    suite = TLS13_SUITES_BY_CODE.get(code)
    return suite.hash_name if suite is not None else None
