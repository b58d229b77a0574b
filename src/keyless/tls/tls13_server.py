"""The server side of a TLS 1.3 handshake (RFC 8446), one method per step of the protocol overview (§2):

    process_client_hello → (send_hello_retry_request → process_client_hello)
    → check_for_resumption → pick_certificate → send_server_parameters → send_server_certificate
    → [KeyOperationRequired … complete_key_operation] → send_certificate_verify → send_server_finished
    → read_client_certificate → read_client_certificate_verify → read_client_finished
    → send_new_session_tickets → (post-handshake: KeyUpdate)

The private-key step is an event answered later: this object never calls a key.
"""

from __future__ import annotations

import hmac
import weakref
from enum import Enum, auto

from keyless.keys.schemes import SignatureScheme
from keyless.tls import key_schedule as ks
from keyless.tls import messages
from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.client_auth import verify_client_certificate, verify_client_signature
from keyless.tls.config import CertifiedKey, ServerConfig, client_hello_info
from keyless.tls.events import HandshakeComplete
from keyless.tls.extensions import PSK_DHE_KE, PSK_KE, choose_alpn
from keyless.tls.handshake_host import HandshakeHost
from keyless.tls.hello_retry import check_second_client_hello
from keyless.tls.messages import ClientHello, ContentType, HandshakeType
from keyless.tls.suites import (
    GROUP_NAMES,
    TLS13,
    TLS13_SIGNATURE_SCHEMES,
    TLS13_SUITES_BY_CODE,
    CipherSuite13,
    check_key_share_encoding,
    choose_cipher_suite,
    choose_signature_scheme,
    key_exchange,
)
from keyless.tls.tickets import SessionState, TicketTooLarge

_CCS_RECORD_PAYLOAD = b"\x01"
_HANDSHAKE_RECORD = int(ContentType.handshake)  # a plain int: an IntEnum member lookup costs ~50 ns
# Post-handshake messages are not part of the transcript (RFC 8446 §4.4.1).
_POST_HANDSHAKE_TYPES = frozenset((int(HandshakeType.new_session_ticket), int(HandshakeType.key_update)))
_MAX_TICKET_AGE_MS = 1 << 32


class State(Enum):
    EXPECT_CLIENT_HELLO = auto()
    EXPECT_SECOND_CLIENT_HELLO = auto()
    AWAIT_KEY_OPERATION = auto()
    EXPECT_CLIENT_CERTIFICATE = auto()
    EXPECT_CLIENT_CERTIFICATE_VERIFY = auto()
    EXPECT_CLIENT_FINISHED = auto()
    CONNECTED = auto()


class ServerHandshake13:
    """One TLS 1.3 server handshake and the post-handshake messages that follow it."""

    # Per-connection state starts at these class-level defaults (all immutable): a new connection then
    # sets only what __init__ must, which matters at thousands of handshakes a second.
    suite: CipherSuite13 | None = None
    transcript: ks.Transcript | None = None
    group: int | None = None
    sni: str | None = None
    alpn: bytes | None = None
    certified_key: CertifiedKey | None = None
    scheme: int | None = None
    psk: bytes | None = None
    psk_index: int | None = None
    resumed = False
    hello_retry_sent = False
    ccs_sent = False
    ccs_received = False
    client_auth = False
    client_certificates: tuple[bytes, ...] = ()
    key_operations = 0
    tickets_sent = 0
    key_updates_without_data = 0
    _client_hello: ClientHello | None = None
    _handshake_secret: ks.HandshakeSecret | None = None
    _client_handshake_secret = b""
    _server_handshake_secret = b""
    _client_traffic_secret = b""
    _server_traffic_secret = b""
    _resumption_master_secret = b""
    _master_secret: ks.MasterSecret | None = None

    def __init__(self, host: HandshakeHost) -> None:
        # The connection owns this driver; a strong reference back would make every connection a reference
        # cycle that only the cyclic GC frees (~16 µs of GC per handshake, as measured for TLS 1.2).
        self.host: HandshakeHost = weakref.proxy(host)
        self.config: ServerConfig = host.config
        self.state = State.EXPECT_CLIENT_HELLO

    def __repr__(self) -> str:
        return f"<ServerHandshake13 {self.state.name} suite={self.suite.name if self.suite else None}>"

    @property
    def complete(self) -> bool:
        return self.state is State.CONNECTED

    # ---- §4.1.2 ClientHello ---------------------------------------------------------------------

    def process_client_hello(self, hello: ClientHello) -> None:
        """Negotiate everything a ClientHello decides, then either ask for a retry or answer it."""
        retrying = self.state is State.EXPECT_SECOND_CLIENT_HELLO
        if not retrying and self.state is not State.EXPECT_CLIENT_HELLO:
            raise TLSAlert(AlertDescription.unexpected_message, "ClientHello in the middle of a handshake")
        self.check_client_hello(hello)
        if retrying and self._client_hello is not None:
            check_second_client_hello(self._client_hello, hello, self.group or 0)

        suite = choose_cipher_suite(self.config.tls13_cipher_suites, hello.cipher_suites)
        if suite is None:
            raise TLSAlert(AlertDescription.handshake_failure, "no TLS 1.3 cipher suite in common")
        if retrying:
            if suite is not self.suite:
                raise TLSAlert(AlertDescription.illegal_parameter, "second ClientHello changed cipher suites")
        else:
            self.suite = suite
            self.transcript = ks.Transcript(suite.hash_name)

        peer_share: bytes | None = None
        if hello.supported_groups:
            group, peer_share = self.choose_group(hello)
            if peer_share is None:
                if retrying:
                    raise TLSAlert(AlertDescription.illegal_parameter, "no key share for the group we asked for")
                self.send_hello_retry_request(hello, group)
                return
            if retrying and (group != self.group or len(hello.key_shares or ()) != 1):
                raise TLSAlert(AlertDescription.illegal_parameter, "second ClientHello has the wrong key_share")
            self.group = group
        if retrying and hello.early_data:
            raise TLSAlert(AlertDescription.illegal_parameter, "early_data after HelloRetryRequest")
        self._client_hello = hello
        self.sni = hello.server_name
        self.alpn = choose_alpn(self.config.alpn_protocols, hello.alpn_protocols)

        self.check_for_resumption(hello)
        if peer_share is None and not self.resumed:
            raise TLSAlert(AlertDescription.handshake_failure, "psk_ke offered but no PSK could be resumed")
        if self.resumed and PSK_DHE_KE not in hello.psk_modes:
            peer_share = None  # psk_ke: the client did not offer (EC)DHE with its PSK
            self.group = None
        self.transcript_update(hello.raw)
        if not self.resumed:
            self.pick_certificate(hello)
        self.send_server_parameters(hello, peer_share)
        if self.resumed:
            self.send_server_finished()
        else:
            self.send_server_certificate(hello)
            self.request_certificate_verify()

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
            check_key_share_encoding(group, share)

    def choose_group(self, hello: ClientHello) -> tuple[int, bytes | None]:
        """Our most preferred group the client sent a share for; else our most preferred group it supports
        (which costs a HelloRetryRequest); else handshake_failure."""
        shares = dict(hello.key_shares or ())
        for group in self.config.groups:
            if group in shares:
                return group, shares[group]
        if self.state is State.EXPECT_SECOND_CLIENT_HELLO:
            return self.group or 0, None
        for group in self.config.groups:
            if group in hello.supported_groups:
                return group, None
        raise TLSAlert(AlertDescription.handshake_failure, "no key exchange group in common")

    # ---- §4.1.4 HelloRetryRequest ---------------------------------------------------------------

    def send_hello_retry_request(self, hello: ClientHello, group: int) -> None:
        if self.suite is None or self.transcript is None:
            raise TLSAlert(AlertDescription.internal_error, "no suite before HelloRetryRequest")
        self.transcript_update(hello.raw)
        self.transcript.restart_after_hello_retry()
        retry = messages.server_hello(
            messages.HELLO_RETRY_REQUEST_RANDOM,
            hello.legacy_session_id,
            self.suite.code,
            selected_group=group,
        )
        self.send_handshake(retry)
        self._client_hello = hello  # the second ClientHello is compared with it (§4.1.2)
        self.send_compat_change_cipher_spec(hello)
        if hello.early_data:
            self.host.skip_early_data()  # §4.2.10: after an HRR every early application_data record is dropped
        self.group = group
        self.hello_retry_sent = True
        self.state = State.EXPECT_SECOND_CLIENT_HELLO

    # ---- §4.2.11 pre_shared_key -----------------------------------------------------------------

    def check_for_resumption(self, hello: ClientHello) -> None:
        """Accept the first offered ticket that opens, is fresh and matches; then its binder must verify."""
        offered = hello.pre_shared_key
        ring = self.config.ticket_keys
        if offered is None or ring is None or self.suite is None or self.transcript is None:
            return
        if PSK_DHE_KE not in hello.psk_modes and not (self.config.allow_psk_ke and PSK_KE in hello.psk_modes):
            return
        now = self.config.clock()
        for index, identity in enumerate(offered.identities[:5]):
            state = ring.open(identity.identity)
            if state is None or not self.session_is_resumable(state, identity.obfuscated_ticket_age, now):
                continue
            early = ks.EarlySecret.create(self.suite, state.secret)
            truncated = hello.raw[: len(hello.raw) - offered.binders_length]
            expected = ks.finished_verify_data(
                self.suite.hash_name, early.resumption_binder_key(), self.transcript.digest_with(truncated)
            )
            if not hmac.compare_digest(expected, offered.binders[index]):
                raise TLSAlert(AlertDescription.decrypt_error, "PSK binder does not verify")
            self.psk = state.secret
            self.psk_index = index
            self.resumed = True
            self.client_certificates = state.client_certificates
            return

    def session_is_resumable(self, state: SessionState, obfuscated_age: int, now: float) -> bool:
        if self.suite is None or state.version != TLS13:
            return False
        if state.cipher_suite not in (s.code for s in self.config.tls13_cipher_suites):
            return False
        if _suite_hash(state.cipher_suite) != self.suite.hash_name:
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
        return state.sni == self.sni

    # ---- certificate selection (Go's GetCertificate) ---------------------------------------------

    def pick_certificate(self, hello: ClientHello) -> None:
        info = client_hello_info(hello, TLS13)
        certified = self.config.certificate_callback(info)
        if certified is None:
            raise TLSAlert(AlertDescription.handshake_failure, "no certificate for this ClientHello")
        scheme = choose_signature_scheme(certified.tls13_schemes, hello.signature_algorithms)
        if scheme is None:
            raise TLSAlert(AlertDescription.handshake_failure, "no signature scheme in common")
        self.certified_key = certified
        self.scheme = scheme

    # ---- §4.1.3 ServerHello + key schedule, §4.3.1 EncryptedExtensions ---------------------------

    def send_server_parameters(self, hello: ClientHello, peer_share: bytes | None) -> None:
        if self.suite is None:
            raise TLSAlert(AlertDescription.internal_error, "negotiation incomplete")
        key_share: tuple[int, bytes] | None = None
        if peer_share is not None and self.group is not None:
            our_share, shared_secret = key_exchange(self.group, peer_share)
            key_share = (self.group, our_share)
        elif self.resumed:
            shared_secret = bytes(self.suite.hash_length)  # psk_ke (§7.1: 0 in place of the (EC)DHE secret)
        else:
            raise TLSAlert(AlertDescription.internal_error, "no key exchange")
        server_hello = messages.server_hello(
            self.config.random_bytes(32),
            hello.legacy_session_id,
            self.suite.code,
            key_share=key_share,
            selected_psk=self.psk_index,
        )
        self.send_handshake(server_hello)
        self.send_compat_change_cipher_spec(hello)

        early = ks.EarlySecret.create(self.suite, self.psk) if self.psk else ks.EarlySecret.without_psk(self.suite)
        handshake_secret = early.handshake_secret(shared_secret)
        transcript_hash = self.transcript_hash()
        self._handshake_secret = handshake_secret
        self._client_handshake_secret = handshake_secret.client_handshake_traffic_secret(transcript_hash)
        self._server_handshake_secret = handshake_secret.server_handshake_traffic_secret(transcript_hash)
        self.host.record.set_write_key_tls13(self.suite, self._server_handshake_secret)
        self.host.set_read_key_tls13(self.suite, self._client_handshake_secret)
        if hello.early_data:
            # We never accept 0-RTT: the client's early records are undecryptable under the handshake key
            # and are skipped (RFC 8446 §4.2.10).
            self.host.skip_early_data()

        limit = self.negotiate_record_size_limit(hello)
        self.send_handshake(
            messages.encrypted_extensions(
                alpn=self.alpn,
                server_name_acknowledged=hello.server_name is not None and not self.resumed,
                record_size_limit=limit,
            )
        )

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

    def send_server_certificate(self, hello: ClientHello) -> None:
        certified = self.certified_key
        if certified is None:
            raise TLSAlert(AlertDescription.internal_error, "no certificate chosen")
        if self.config.client_ca:
            self.client_auth = True
            self.send_handshake(
                messages.certificate_request(
                    sorted(TLS13_SIGNATURE_SCHEMES),
                    self.config.client_ca_names,
                )
            )
        if hello.ocsp_requested:
            self.send_handshake(certified.certificate_message_with_ocsp)
        else:
            self.send_handshake(certified.certificate_message)

    def request_certificate_verify(self) -> None:
        """Hand the signature to the caller: the one place the handshake waits on the outside world."""
        if self.certified_key is None or self.scheme is None:
            raise TLSAlert(AlertDescription.internal_error, "no certificate chosen")
        to_sign = ks.certificate_verify_input(self.transcript_hash())
        self.state = State.AWAIT_KEY_OPERATION
        self.key_operations += 1
        scheme = self.scheme if isinstance(self.scheme, SignatureScheme) else SignatureScheme(self.scheme)
        self.host.request_key_operation(self.certified_key.key, "sign", scheme, to_sign, self.sni)

    def complete_key_operation(self, result: bytes | BaseException) -> None:
        if self.state is not State.AWAIT_KEY_OPERATION or self.scheme is None:
            raise TLSAlert(AlertDescription.internal_error, "no key operation was pending")
        if isinstance(result, BaseException):
            raise TLSAlert(AlertDescription.handshake_failure, "the private-key operation failed") from result
        if not result or len(result) > 0xFFFF:
            raise TLSAlert(AlertDescription.internal_error, "the key returned an unusable signature")
        self.send_certificate_verify(result)
        self.send_server_finished()

    def send_certificate_verify(self, signature: bytes) -> None:
        if self.scheme is None:
            raise TLSAlert(AlertDescription.internal_error, "no scheme")
        self.send_handshake(messages.certificate_verify(self.scheme, signature))

    # ---- §4.4.4 Finished, §7.1 application traffic secrets ----------------------------------------

    def send_server_finished(self) -> None:
        if self.suite is None or self._handshake_secret is None:
            raise TLSAlert(AlertDescription.internal_error, "no handshake secret")
        hash_name = self.suite.hash_name
        verify_data = ks.finished_verify_data(hash_name, self._server_handshake_secret, self.transcript_hash())
        self.send_handshake(messages.finished(verify_data))
        master = self._handshake_secret.master_secret()
        transcript_hash = self.transcript_hash()
        self._client_traffic_secret = master.client_application_traffic_secret(transcript_hash)
        self._server_traffic_secret = master.server_application_traffic_secret(transcript_hash)
        self._master_secret = master
        self.host.record.set_write_key_tls13(self.suite, self._server_traffic_secret)
        self.state = State.EXPECT_CLIENT_CERTIFICATE if self.client_auth else State.EXPECT_CLIENT_FINISHED

    # ---- client flight ------------------------------------------------------------------------------

    def handle_message(self, msg_type: int, body: bytes, raw: bytes) -> None:
        state = self.state
        if state is State.CONNECTED:
            self.handle_post_handshake(msg_type, body, raw)
        elif msg_type == HandshakeType.client_hello and state is State.EXPECT_SECOND_CLIENT_HELLO:
            self.process_client_hello(messages.parse_client_hello(raw))
        elif msg_type == HandshakeType.certificate and state is State.EXPECT_CLIENT_CERTIFICATE:
            self.read_client_certificate(body, raw)
        elif msg_type == HandshakeType.certificate_verify and state is State.EXPECT_CLIENT_CERTIFICATE_VERIFY:
            self.read_client_certificate_verify(body, raw)
        elif msg_type == HandshakeType.finished and state is State.EXPECT_CLIENT_FINISHED:
            self.read_client_finished(body, raw)
        else:
            raise TLSAlert(AlertDescription.unexpected_message, f"handshake message {msg_type} in {state.name}")

    def read_client_certificate(self, body: bytes, raw: bytes) -> None:
        chain = messages.parse_client_certificate(body)
        self.transcript_update(raw)
        if not chain:
            if self.config.require_client_certificate:
                raise TLSAlert(AlertDescription.certificate_required, "client sent no certificate")
            self.state = State.EXPECT_CLIENT_FINISHED
            return
        verify_client_certificate(chain, self.config.client_ca or (), self.config.clock())
        self.client_certificates = chain
        self.state = State.EXPECT_CLIENT_CERTIFICATE_VERIFY

    def read_client_certificate_verify(self, body: bytes, raw: bytes) -> None:
        scheme, signature = messages.parse_certificate_verify(body)
        if scheme not in TLS13_SIGNATURE_SCHEMES:
            raise TLSAlert(AlertDescription.illegal_parameter, "signature scheme not allowed in TLS 1.3")
        signed = ks.certificate_verify_input(self.transcript_hash(), server=False)
        verify_client_signature(self.client_certificates[0], scheme, signature, signed)
        self.transcript_update(raw)
        self.state = State.EXPECT_CLIENT_FINISHED

    def read_client_finished(self, body: bytes, raw: bytes) -> None:
        if self.suite is None:
            raise TLSAlert(AlertDescription.internal_error, "no suite")
        hash_name = self.suite.hash_name
        received = messages.parse_finished(body, self.suite.hash_length)
        expected = ks.finished_verify_data(hash_name, self._client_handshake_secret, self.transcript_hash())
        if not hmac.compare_digest(expected, received):
            raise TLSAlert(AlertDescription.decrypt_error, "client Finished does not verify")
        self.transcript_update(raw)
        if self._master_secret is None:
            raise TLSAlert(AlertDescription.internal_error, "no master secret")
        if self.tickets_wanted():  # the resumption master secret serves only to make tickets
            self._resumption_master_secret = self._master_secret.resumption_master_secret(self.transcript_hash())
        self.host.set_read_key_tls13(self.suite, self._client_traffic_secret)
        self._client_handshake_secret = self._server_handshake_secret = b""
        self.state = State.CONNECTED
        self.send_new_session_tickets()
        # Only the traffic secrets are needed from here on (for KeyUpdate): forget the rest.
        self._handshake_secret = self._master_secret = None
        self._resumption_master_secret = b""
        self.psk = None
        self.host.finish_handshake(
            HandshakeComplete(
                version=TLS13,
                cipher_suite=self.suite.name,
                group=GROUP_NAMES.get(self.group or 0),
                sni=self.sni,
                alpn=self.alpn.decode("latin-1") if self.alpn is not None else None,
                resumed=self.resumed,
                key_operations=self.key_operations,
                session_ticket_sent=self.tickets_sent > 0,
                client_certificates=self.client_certificates,
            )
        )

    # ---- §4.6.1 NewSessionTicket ----------------------------------------------------------------

    def tickets_wanted(self) -> bool:
        """Tickets are on, and the client offered a PSK mode it could resume them with."""
        hello = self._client_hello
        if self.config.ticket_keys is None or hello is None or not self.config.tickets_per_handshake:
            return False
        return PSK_DHE_KE in hello.psk_modes or (self.config.allow_psk_ke and PSK_KE in hello.psk_modes)

    def send_new_session_tickets(self) -> None:
        ring = self.config.ticket_keys
        if ring is None or self.suite is None or not self.tickets_wanted():
            return
        now = self.config.clock()
        for counter in range(self.config.tickets_per_handshake):
            nonce = counter.to_bytes(8, "big")
            psk = ks.resumption_psk(self.suite.hash_name, self._resumption_master_secret, nonce)
            age_add = int.from_bytes(self.config.random_bytes(4), "big")
            state = SessionState(
                version=TLS13,
                cipher_suite=self.suite.code,
                secret=psk,
                created_at=now,
                age_add=age_add,
                lifetime=self.config.ticket_lifetime,
                sni=self.sni,
                alpn=self.alpn.decode("latin-1") if self.alpn is not None else None,
                ems=True,
                client_certificates=self.client_certificates,
            )
            try:
                ticket = ring.seal(state)
            except TicketTooLarge:  # a huge client-certificate chain: resumption is optional, the connection is not
                return
            self.send_handshake(messages.new_session_ticket(self.config.ticket_lifetime, age_add, nonce, ticket))
            self.tickets_sent += 1

    # ---- §4.6.3 KeyUpdate ---------------------------------------------------------------------------

    def handle_post_handshake(self, msg_type: int, body: bytes, raw: bytes) -> None:
        if msg_type != HandshakeType.key_update:
            raise TLSAlert(AlertDescription.unexpected_message, f"post-handshake message {msg_type}")
        update_requested = messages.parse_key_update(body)
        self.key_updates_without_data += 1
        if self.key_updates_without_data > self.config.max_key_updates_without_data:
            raise TLSAlert(AlertDescription.unexpected_message, "too many KeyUpdates without application data")
        if self.suite is None:
            raise TLSAlert(AlertDescription.internal_error, "no suite")
        self._client_traffic_secret = ks.next_traffic_secret(self.suite.hash_name, self._client_traffic_secret)
        self.host.set_read_key_tls13(self.suite, self._client_traffic_secret)
        if update_requested and not self.host.closed:  # after our close_notify we send nothing more
            self.update_sending_key(request_peer_update=False)

    def update_sending_key(self, *, request_peer_update: bool) -> None:
        """Send KeyUpdate under the current key, then switch to the next server traffic secret."""
        if self.suite is None or self.state is not State.CONNECTED:
            raise TLSAlert(AlertDescription.internal_error, "KeyUpdate before the handshake completed")
        self.send_handshake(messages.key_update(request_peer_update))
        self._server_traffic_secret = ks.next_traffic_secret(self.suite.hash_name, self._server_traffic_secret)
        self.host.record.set_write_key_tls13(self.suite, self._server_traffic_secret)

    def note_application_data(self) -> None:
        self.key_updates_without_data = 0

    def handle_change_cipher_spec(self, payload: bytes) -> None:
        """Appendix D.4: one CCS {1} may arrive before the client's Finished; anything else is an error."""
        if payload != _CCS_RECORD_PAYLOAD or self.ccs_received or self.state is State.CONNECTED:
            raise TLSAlert(AlertDescription.unexpected_message, "unexpected change_cipher_spec")
        self.ccs_received = True

    # ---- plumbing -------------------------------------------------------------------------------------

    def send_handshake(self, message: bytes) -> None:
        if self.transcript is not None and message[0] not in _POST_HANDSHAKE_TYPES:
            self.transcript.update(message)
        self.host.record.write(_HANDSHAKE_RECORD, message)

    def transcript_update(self, raw: bytes) -> None:
        if self.transcript is None:
            raise TLSAlert(AlertDescription.internal_error, "no transcript")
        self.transcript.update(raw)

    def transcript_hash(self) -> bytes:
        if self.transcript is None:
            raise TLSAlert(AlertDescription.internal_error, "no transcript")
        return self.transcript.digest()


def _suite_hash(code: int) -> str | None:
    suite = TLS13_SUITES_BY_CODE.get(code)
    return suite.hash_name if suite is not None else None
