"""Handshake messages (RFC 8446 §4): strict ClientHello parsing that keeps the raw bytes, serialisers for
what a server sends, and parsers for the few messages a TLS 1.3 client sends after its hello."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache

from keyless.tls import extensions as ext
from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.codec import Reader, Writer, handshake_message, read_certificate_list
from keyless.tls.extensions import ExtensionType, OfferedPsks


class HandshakeType(IntEnum):
    hello_request = 0
    client_hello = 1
    server_hello = 2
    new_session_ticket = 4
    end_of_early_data = 5
    encrypted_extensions = 8
    certificate = 11
    server_key_exchange = 12
    certificate_request = 13
    server_hello_done = 14
    certificate_verify = 15
    client_key_exchange = 16
    finished = 20
    certificate_status = 22
    key_update = 24
    message_hash = 254


class ContentType(IntEnum):
    change_cipher_spec = 20
    alert = 21
    handshake = 22
    application_data = 23


# RFC 8446 §4.1.3: ServerHello.random of a HelloRetryRequest is SHA-256("HelloRetryRequest").
HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")


@dataclass(frozen=True, slots=True)
class ClientHello:
    """A parsed ClientHello. ``raw`` is the whole handshake message (header included), for the transcript."""

    raw: bytes = field(repr=False)
    legacy_version: int
    random: bytes = field(repr=False)
    legacy_session_id: bytes = field(repr=False)
    cipher_suites: tuple[int, ...]
    compression_methods: bytes
    extensions: tuple[tuple[int, bytes], ...] = field(repr=False)
    server_name: str | None = None
    supported_versions: tuple[int, ...] | None = None
    supported_groups: tuple[int, ...] = ()
    signature_algorithms: tuple[int, ...] = ()
    signature_algorithms_cert: tuple[int, ...] | None = None
    key_shares: tuple[tuple[int, bytes], ...] | None = None
    psk_modes: tuple[int, ...] = ()
    pre_shared_key: OfferedPsks | None = field(default=None, repr=False)
    alpn_protocols: tuple[bytes, ...] = ()
    ocsp_requested: bool = False
    cookie: bytes | None = None
    early_data: bool = False
    record_size_limit: int | None = None
    extended_master_secret: bool = False
    renegotiation_info: bytes | None = None
    ec_point_formats: tuple[int, ...] | None = None
    session_ticket: bytes | None = field(default=None, repr=False)
    post_handshake_auth: bool = False
    # A version-specific extension whose body did not parse: fatal only once that version is negotiated.
    tls12_extension_error: TLSAlert | None = field(default=None, repr=False, compare=False)
    tls13_extension_error: TLSAlert | None = field(default=None, repr=False, compare=False)

    def check_extensions_for(self, version: int) -> None:
        """Raise the alert of a malformed extension that belongs to ``version`` (TLS 1.2 or 1.3); those of
        the other version are ignored, as RFC 8446 §4.2 and RFC 5246 §7.4.1.4 ask of what does not apply."""
        error = self.tls13_extension_error if version == _TLS13_ONLY else self.tls12_extension_error
        if error is not None:
            raise error

    def has_extension(self, ext_type: int) -> bool:
        return any(t == ext_type for t, _ in self.extensions)

    @property
    def extension_types(self) -> tuple[int, ...]:
        return tuple(t for t, _ in self.extensions)


def _u16_list(what: str) -> Callable[[Reader], object]:
    return lambda r: ext.parse_u16_list_ext(r, what)


def _empty(what: str) -> Callable[[Reader], object]:
    return lambda r: ext.parse_empty(r, what)


_BOTH = 0  # parsed whatever the version: a malformed body is fatal at once
_TLS12_ONLY = 0x0303  # parsed now, judged only if TLS 1.2 is negotiated (RFC 8446 §4.2: else ignored)
_TLS13_ONLY = 0x0304  # parsed now, judged only if TLS 1.3 is negotiated (TLS 1.2 ignores what it does not use)

# ClientHello field, parser, and the version the extension belongs to.
_EXTENSION_PARSERS: dict[int, tuple[str, Callable[[Reader], object], int]] = {
    ExtensionType.server_name: ("server_name", ext.parse_server_name, _BOTH),
    ExtensionType.supported_versions: ("supported_versions", ext.parse_supported_versions, _BOTH),
    ExtensionType.supported_groups: ("supported_groups", _u16_list("supported_groups"), _BOTH),
    ExtensionType.signature_algorithms: ("signature_algorithms", _u16_list("signature_algorithms"), _BOTH),
    ExtensionType.signature_algorithms_cert: (
        "signature_algorithms_cert", _u16_list("signature_algorithms_cert"), _BOTH,
    ),
    ExtensionType.application_layer_protocol_negotiation: ("alpn_protocols", ext.parse_alpn, _BOTH),
    ExtensionType.status_request: ("ocsp_requested", ext.parse_status_request, _BOTH),
    ExtensionType.record_size_limit: ("record_size_limit", ext.parse_record_size_limit, _BOTH),
    ExtensionType.key_share: ("key_shares", ext.parse_key_share, _TLS13_ONLY),
    ExtensionType.psk_key_exchange_modes: ("psk_modes", ext.parse_psk_modes, _TLS13_ONLY),
    ExtensionType.pre_shared_key: ("pre_shared_key", ext.parse_pre_shared_key, _TLS13_ONLY),
    ExtensionType.cookie: ("cookie", ext.parse_cookie, _TLS13_ONLY),
    ExtensionType.early_data: ("early_data", _empty("early_data"), _TLS13_ONLY),
    ExtensionType.post_handshake_auth: ("post_handshake_auth", _empty("post_handshake_auth"), _TLS13_ONLY),
    ExtensionType.extended_master_secret: ("extended_master_secret", _empty("extended_master_secret"), _TLS12_ONLY),
    ExtensionType.renegotiation_info: ("renegotiation_info", ext.parse_renegotiation_info, _TLS12_ONLY),
    ExtensionType.ec_point_formats: ("ec_point_formats", ext.parse_ec_point_formats, _TLS12_ONLY),
    ExtensionType.session_ticket: ("session_ticket", lambda r: r.rest(), _TLS12_ONLY),
}


_PRE_SHARED_KEY = int(ExtensionType.pre_shared_key)
_EXTENSION_HEADER = struct.Struct(">HH")  # extension_type, extension_data length
_KEY_SHARE_HEADER = struct.Struct(">HHHH")  # extension_type, length, KeyShareEntry.group, key_exchange length


def parse_client_hello(raw: bytes) -> ClientHello:
    """Parse a whole ClientHello handshake message (4-byte header included) per RFC 8446 §4.1.2."""
    r = Reader(raw)
    if r.u8() != HandshakeType.client_hello:
        raise TLSAlert(AlertDescription.unexpected_message, "expected ClientHello")
    body = r.vec24()
    r.expect_end("handshake message")
    legacy_version = body.u16()
    random = body.read(32)
    session_id = body.opaque8()
    if len(session_id) > 32:
        raise TLSAlert(AlertDescription.decode_error, "legacy_session_id longer than 32")
    cipher_suites = body.u16_list("cipher_suites")
    compression = body.opaque8()
    if not compression:
        raise TLSAlert(AlertDescription.decode_error, "empty compression_methods")
    parsed: dict[str, object] = {}
    deferred: dict[int, TLSAlert] = {}
    extensions: list[tuple[int, bytes]] = []
    if not body.at_end():  # a TLS 1.2 ClientHello may omit the extensions block entirely
        block = body.vec16()
        body.expect_end("ClientHello")
        seen: set[int] = set()
        after_psk = False
        # The extension headers are read straight from ``raw`` (the hot loop of every handshake); each
        # body still goes to its parser as a bounded Reader.
        pos, end = block.position, block.position + block.remaining
        while pos < end:
            if end - pos < 4:
                raise TLSAlert(AlertDescription.decode_error, "truncated extension header")
            ext_type, length = _EXTENSION_HEADER.unpack_from(raw, pos)
            start = pos + 4
            pos = start + length
            if pos > end:
                raise TLSAlert(AlertDescription.decode_error, "extension overruns the block")
            if ext_type in seen:
                raise TLSAlert(AlertDescription.illegal_parameter, f"duplicate extension {ext_type}")
            seen.add(ext_type)
            if after_psk:
                raise TLSAlert(AlertDescription.illegal_parameter, "pre_shared_key is not the last extension")
            after_psk = ext_type == _PRE_SHARED_KEY
            extensions.append((ext_type, raw[start:pos]))
            entry = _EXTENSION_PARSERS.get(ext_type)
            if entry is not None:
                name, parser, version = entry
                if version == _BOTH:
                    parsed[name] = parser(Reader(raw, start, pos))
                else:
                    try:
                        parsed[name] = parser(Reader(raw, start, pos))
                    except TLSAlert as alert:
                        # Kept, not raised: it matters only if this version is negotiated (RFC 8446 §4.2).
                        deferred.setdefault(version, alert)
    return ClientHello(
        raw=raw,
        legacy_version=legacy_version,
        random=random,
        legacy_session_id=session_id,
        cipher_suites=cipher_suites,
        compression_methods=compression,
        extensions=tuple(extensions),
        tls12_extension_error=deferred.get(_TLS12_ONLY),
        tls13_extension_error=deferred.get(_TLS13_ONLY),
        **parsed,  # type: ignore[arg-type]
    )


# ---- server messages ---------------------------------------------------------------------------


def server_hello(
    random: bytes,
    session_id: bytes,
    cipher_suite: int,
    *,
    key_share: tuple[int, bytes] | None = None,
    selected_group: int | None = None,
    selected_psk: int | None = None,
    cookie: bytes | None = None,
) -> bytes:
    """ServerHello (or HelloRetryRequest when ``random`` is HELLO_RETRY_REQUEST_RANDOM) for TLS 1.3.

    Built by concatenation rather than with ``Writer``: it is on every handshake's hot path.
    """
    exts = [b"\x00\x2b\x00\x02\x03\x04"]  # supported_versions: TLS 1.3
    if key_share is not None:
        group, public = key_share
        exts.append(_KEY_SHARE_HEADER.pack(ExtensionType.key_share, 4 + len(public), group, len(public)) + public)
    if selected_group is not None:
        exts.append(_u16(ExtensionType.key_share) + b"\x00\x02" + _u16(selected_group))
    if cookie is not None:
        exts.append(_u16(ExtensionType.cookie) + _u16(2 + len(cookie)) + _u16(len(cookie)) + cookie)
    if selected_psk is not None:
        exts.append(_u16(ExtensionType.pre_shared_key) + b"\x00\x02" + _u16(selected_psk))
    extensions = b"".join(exts)
    body = b"".join(
        (
            b"\x03\x03",
            random,
            bytes((len(session_id),)),
            session_id,
            _u16(cipher_suite),
            b"\x00",
            _u16(len(extensions)),
            extensions,
        )
    )
    return handshake_message(HandshakeType.server_hello, body)


def _u16(value: int) -> bytes:
    return value.to_bytes(2, "big")


@lru_cache(maxsize=256)
def encrypted_extensions(
    *, alpn: bytes | None, server_name_acknowledged: bool, record_size_limit: int | None
) -> bytes:
    """EncryptedExtensions; a handful of distinct values per server, so cached."""
    w = Writer()
    with w.block(2):
        if server_name_acknowledged:
            w.u16(ExtensionType.server_name)
            w.u16(0)
        if alpn is not None:
            ext.encode_extension(w, ExtensionType.application_layer_protocol_negotiation, ext.alpn_body(alpn))
        if record_size_limit is not None:
            w.u16(ExtensionType.record_size_limit)
            w.u16(2)
            w.u16(record_size_limit)
    return handshake_message(HandshakeType.encrypted_extensions, w.getvalue())


def certificate_request(signature_schemes: Sequence[int], authorities: Sequence[bytes] = ()) -> bytes:
    """CertificateRequest with an empty context; ``authorities`` are DER-encoded distinguished names."""
    w = Writer()
    w.u8(0)
    with w.block(2):
        w.u16(ExtensionType.signature_algorithms)
        with w.block(2), w.block(2):
            for scheme in signature_schemes:
                w.u16(scheme)
        if authorities:
            w.u16(ExtensionType.certificate_authorities)
            with w.block(2), w.block(2):
                for name in authorities:
                    w.opaque16(name)
    return handshake_message(HandshakeType.certificate_request, w.getvalue())


def certificate(chain_der: Sequence[bytes], ocsp_response: bytes | None = None) -> bytes:
    """Server Certificate (empty request context); the OCSP staple rides in the leaf's entry (§4.4.2.1)."""
    w = Writer()
    w.u8(0)
    with w.block(3):
        for index, der in enumerate(chain_der):
            w.opaque24(der)
            if index == 0 and ocsp_response is not None:
                status = bytes((1,)) + len(ocsp_response).to_bytes(3, "big") + ocsp_response
                with w.block(2):
                    ext.encode_extension(w, ExtensionType.status_request, status)
            else:
                w.u16(0)
    return handshake_message(HandshakeType.certificate, w.getvalue())


def certificate_verify(scheme: int, signature: bytes) -> bytes:
    return handshake_message(HandshakeType.certificate_verify, _u16(scheme) + _u16(len(signature)) + signature)


def finished(verify_data: bytes) -> bytes:
    return handshake_message(HandshakeType.finished, verify_data)


def new_session_ticket(lifetime: int, age_add: int, nonce: bytes, ticket: bytes) -> bytes:
    w = Writer()
    w.u32(lifetime)
    w.u32(age_add)
    w.opaque8(nonce)
    w.opaque16(ticket)
    w.u16(0)
    return handshake_message(HandshakeType.new_session_ticket, w.getvalue())


def key_update(update_requested: bool) -> bytes:
    return handshake_message(HandshakeType.key_update, bytes((1 if update_requested else 0,)))


# ---- client messages after the hello -----------------------------------------------------------


def parse_finished(body: bytes, hash_length: int) -> bytes:
    if len(body) != hash_length:
        raise TLSAlert(AlertDescription.decode_error, "Finished has the wrong length")
    return body


def parse_key_update(body: bytes) -> bool:
    """Returns whether the peer requested an update of our sending keys."""
    if len(body) != 1:
        raise TLSAlert(AlertDescription.decode_error, "KeyUpdate has the wrong length")
    if body[0] > 1:
        raise TLSAlert(AlertDescription.illegal_parameter, "bad KeyUpdateRequest value")
    return body[0] == 1


def parse_client_certificate(body: bytes) -> tuple[bytes, ...]:
    """Client Certificate: context must be empty (we sent an empty one); returns the DER chain."""
    r = Reader(body)
    if r.opaque8():
        raise TLSAlert(AlertDescription.illegal_parameter, "unexpected certificate_request_context")
    entries = r.vec24()
    r.expect_end("Certificate")
    return read_certificate_list(entries, extensions=True)


def parse_certificate_verify(body: bytes) -> tuple[int, bytes]:
    r = Reader(body)
    scheme = r.u16()
    signature = r.opaque16()
    r.expect_end("CertificateVerify")
    return scheme, signature
