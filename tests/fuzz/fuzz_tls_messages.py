"""Every handshake-message and extension parser of the TLS 1.3 and 1.2 server, called directly.

``tls_messages``: the first byte picks the parser, the rest is its input: the whole ClientHello (which runs
every extension parser on its extensions), each extension parser on its own, the client's later messages
(Finished, KeyUpdate, Certificate, CertificateVerify; TLS 1.2 ClientKeyExchange ECDHE/RSA, Certificate),
and the client-certificate checks (chain verification, CertificateVerify signature) that consume them.

Invariant: each input gives a value or a ``TLSAlert`` whose description is one the RFCs prescribe for a
malformed or unacceptable message (decode_error, illegal_parameter, unexpected_message, bad_certificate,
decrypt_error, unknown_ca, ...), never internal_error and never another exception. A parsed ClientHello's
fields must be consistent with its raw bytes (what the transcript hashes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from cryptography import x509

from keyless.tls import extensions as ext
from keyless.tls import messages, tls12_messages
from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.client_auth import verify_client_certificate, verify_client_signature
from keyless.tls.codec import Reader
from tests.fuzz import keys
from tests.fuzz.harness import Target, check

# What a parser may answer with (RFC 8446 §6.2; RFC 5246 §7.2.2).
ALLOWED = frozenset({
    AlertDescription.decode_error, AlertDescription.illegal_parameter, AlertDescription.unexpected_message,
    AlertDescription.bad_certificate, AlertDescription.decrypt_error, AlertDescription.unknown_ca,
    AlertDescription.handshake_failure, AlertDescription.protocol_version, AlertDescription.missing_extension,
    AlertDescription.unsupported_extension,
    # a client chain that parses but does not verify gets OpenSSL's reason (tls/client_auth.py)
    AlertDescription.certificate_expired, AlertDescription.unsupported_certificate,
})


@functools.cache
def trusted() -> tuple[x509.Certificate, ...]:
    return (keys.fuzz_ca()[0],)


def _client_hello(data: bytes) -> object:
    hello = messages.parse_client_hello(data)
    check(hello.raw == data, "ClientHello.raw is not the message parsed")
    check(len(hello.random) == 32 and len(hello.legacy_session_id) <= 32, "random or session_id of a bad size")
    check(bool(hello.cipher_suites) and bool(hello.compression_methods), "empty suites or compression accepted")
    types = hello.extension_types
    check(len(types) == len(set(types)), "duplicate extension accepted")
    if 41 in types:
        check(types[-1] == 41, "pre_shared_key accepted before the last extension")
    if 41 in types and hello.tls13_extension_error is None:  # a malformed one is refused only in TLS 1.3
        psk = hello.pre_shared_key
        check(psk is not None and len(psk.identities) == len(psk.binders) >= 1, "PSK identities/binders mismatch")
    for _, body in hello.extensions:
        check(body in data, "extension body not taken from the message")
    return hello


def _in_reader(parser: Callable[[Reader], object]) -> Callable[[bytes], object]:
    def run(data: bytes) -> object:
        r = Reader(data)
        value = parser(r)
        r.expect_end("extension")  # what parse_client_hello's bounded Reader implies
        return value

    return run


def _chain(data: bytes) -> object:
    chain = tls12_messages.parse_client_certificate(data)
    if chain:  # both servers treat an empty chain as "no certificate" before verifying anything
        verify_client_certificate(chain, trusted(), keys.FIXED_NOW)
    return chain


def _signature(data: bytes) -> object:
    scheme, signature = messages.parse_certificate_verify(data)
    verify_client_signature(keys.fuzz_ca()[2], scheme, signature, b"signed content", allow_pkcs1=bool(scheme & 1))
    return scheme


PARSERS: tuple[tuple[str, Callable[[bytes], object]], ...] = (
    ("client_hello", _client_hello),
    ("server_name", _in_reader(ext.parse_server_name)),
    ("supported_versions", _in_reader(ext.parse_supported_versions)),
    ("supported_groups", _in_reader(lambda r: ext.parse_u16_list_ext(r, "supported_groups"))),
    ("key_share", _in_reader(ext.parse_key_share)),
    ("psk_modes", _in_reader(ext.parse_psk_modes)),
    ("alpn", _in_reader(ext.parse_alpn)),
    ("status_request", _in_reader(ext.parse_status_request)),
    ("cookie", _in_reader(ext.parse_cookie)),
    ("record_size_limit", _in_reader(ext.parse_record_size_limit)),
    ("renegotiation_info", _in_reader(ext.parse_renegotiation_info)),
    ("ec_point_formats", _in_reader(ext.parse_ec_point_formats)),
    ("pre_shared_key", _in_reader(ext.parse_pre_shared_key)),
    ("early_data", _in_reader(lambda r: ext.parse_empty(r, "early_data"))),
    ("finished", lambda d: messages.parse_finished(d, 32)),
    ("key_update", messages.parse_key_update),
    ("certificate13", messages.parse_client_certificate),
    ("certificate_verify", _signature),
    ("ecdhe_client_key_exchange", tls12_messages.parse_ecdhe_client_key_exchange),
    ("rsa_client_key_exchange", tls12_messages.parse_rsa_client_key_exchange),
    ("certificate12_chain", _chain),
)


def one_input(data: bytes) -> None:
    if not data:
        return
    name, parser = PARSERS[data[0] % len(PARSERS)]
    try:
        parser(data[1:])
    except TLSAlert as alert:
        check(alert.description in ALLOWED, f"{name}: alert {alert.description.name} ({alert})")


TARGETS = [
    Target("tls_messages", one_input, "tls_messages",
           "ClientHello, every extension parser, client Finished/KeyUpdate/Certificate/CertificateVerify, "
           "TLS 1.2 ClientKeyExchange", setup=trusted, max_len=8192),
]
