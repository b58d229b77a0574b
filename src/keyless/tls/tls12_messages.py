"""TLS 1.2 handshake messages a server sends (RFC 5246 §7.4, RFC 8422 §5.4, RFC 5077 §3.3, RFC 6066 §8)
and the client messages it parses (ClientKeyExchange, Certificate, CertificateVerify).

The ClientHello parser and the Finished framing are shared with TLS 1.3 (``messages.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from keyless.tls import extensions as ext
from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.codec import Reader, Writer, handshake_message, read_certificate_list
from keyless.tls.messages import HandshakeType

# DigitallySigned (RFC 5246 §4.7) has the same wire form as the TLS 1.3 CertificateVerify body: a 2-byte
# SignatureAndHashAlgorithm (a SignatureScheme code point) and an opaque<0..2^16-1> signature — so
# TLS 1.2 parses its client CertificateVerify with the same function.
from keyless.tls.messages import parse_certificate_verify as parse_certificate_verify

TLS12_VERSION = 0x0303
NAMED_CURVE = 3  # ECCurveType.named_curve (RFC 8422 §5.4)
UNCOMPRESSED = 0  # ECPointFormat.uncompressed

# ClientCertificateType (RFC 5246 §7.4.4, RFC 8422 §5.5)
RSA_SIGN = 1
ECDSA_SIGN = 64


# Fixed encodings of the extensions a ServerHello may carry: type (2) + length (2) + body.
_RENEGOTIATION_INFO = b"\xff\x01\x00\x01\x00"  # RFC 5746 §3.6: empty renegotiated_connection
_EXTENDED_MASTER_SECRET = b"\x00\x17\x00\x00"
_EC_POINT_FORMATS = b"\x00\x0b\x00\x02\x01\x00"  # uncompressed only
_SESSION_TICKET = b"\x00\x23\x00\x00"
_SERVER_NAME = b"\x00\x00\x00\x00"
_STATUS_REQUEST = b"\x00\x05\x00\x00"


@functools.lru_cache(maxsize=256)
def server_hello_extensions(
    *,
    renegotiation_info: bool,
    extended_master_secret: bool,
    ec_point_formats: bool,
    session_ticket: bool,
    alpn: bytes | None,
    server_name: bool,
    status_request: bool,
    record_size_limit: int | None = None,
) -> bytes:
    """The extensions block of our ServerHello, with its length: what we answer, each only if the client sent
    the matching extension. A server sees a handful of combinations, so the blocks are cached."""
    parts: list[bytes] = []
    if renegotiation_info:
        parts.append(_RENEGOTIATION_INFO)
    if extended_master_secret:
        parts.append(_EXTENDED_MASTER_SECRET)
    if ec_point_formats:
        parts.append(_EC_POINT_FORMATS)
    if session_ticket:
        parts.append(_SESSION_TICKET)
    if alpn is not None:
        body = ext.alpn_body(alpn)
        parts.append(b"\x00\x10" + len(body).to_bytes(2, "big") + body)
    if server_name:
        parts.append(_SERVER_NAME)
    if status_request:
        parts.append(_STATUS_REQUEST)
    if record_size_limit is not None:  # RFC 8449 §4: our limit, answered only to a client that sent one
        parts.append(b"\x00\x1c\x00\x02" + record_size_limit.to_bytes(2, "big"))
    block = b"".join(parts)
    return len(block).to_bytes(2, "big") + block


def server_hello(random: bytes, session_id: bytes, cipher_suite: int, extensions_block: bytes) -> bytes:
    """RFC 5246 §7.4.1.3, assembled from fixed pieces (``extensions_block`` from ``server_hello_extensions``)."""
    body = b"".join(
        (
            b"\x03\x03",
            random,
            bytes((len(session_id),)),
            session_id,
            cipher_suite.to_bytes(2, "big"),
            b"\x00",  # compression: null
            extensions_block,
        )
    )
    return handshake_message(HandshakeType.server_hello, body)



@functools.lru_cache(maxsize=1024)
def certificate(chain_der: tuple[bytes, ...]) -> bytes:
    """RFC 5246 §7.4.2: certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1> (no 1.3 context or extensions).

    Cached per chain (a site's chain is the same tuple object for every handshake)."""
    entries = b"".join(len(der).to_bytes(3, "big") + der for der in chain_der)
    return handshake_message(HandshakeType.certificate, len(entries).to_bytes(3, "big") + entries)


def certificate_status(ocsp_response: bytes) -> bytes:
    """RFC 6066 §8: CertificateStatus with status_type ocsp(1)."""
    w = Writer()
    w.u8(1)
    w.opaque24(ocsp_response)
    return handshake_message(HandshakeType.certificate_status, w.getvalue())


def ecdhe_params(group: int, public: bytes) -> bytes:
    """ServerECDHParams: curve_type named_curve, the group, and our point (RFC 8422 §5.4)."""
    return bytes((NAMED_CURVE,)) + group.to_bytes(2, "big") + bytes((len(public),)) + public


def server_key_exchange(params: bytes, scheme: int, signature: bytes) -> bytes:
    """RFC 8422 §5.4: ServerECDHParams, then the signature (scheme, opaque<0..2^16-1>) over the randoms and them."""
    if len(signature) > 0xFFFF:
        raise TLSAlert(AlertDescription.internal_error, "signature too long")
    body = b"".join((params, scheme.to_bytes(2, "big"), len(signature).to_bytes(2, "big"), signature))
    return handshake_message(HandshakeType.server_key_exchange, body)


def certificate_request(signature_schemes: Sequence[int], authorities: Sequence[bytes]) -> bytes:
    """RFC 5246 §7.4.4: certificate_types, supported_signature_algorithms, certificate_authorities."""
    w = Writer()
    w.opaque8(bytes((RSA_SIGN, ECDSA_SIGN)))
    with w.block(2):
        for scheme in signature_schemes:
            w.u16(scheme)
    with w.block(2):
        for name in authorities:
            w.opaque16(name)
    return handshake_message(HandshakeType.certificate_request, w.getvalue())


def server_hello_done() -> bytes:
    return handshake_message(HandshakeType.server_hello_done, b"")


def new_session_ticket(lifetime_hint: int, ticket: bytes) -> bytes:
    """RFC 5077 §3.3: ticket_lifetime_hint (seconds) and the opaque ticket."""
    w = Writer()
    w.u32(lifetime_hint)
    w.opaque16(ticket)
    return handshake_message(HandshakeType.new_session_ticket, w.getvalue())


# ---- client messages -------------------------------------------------------------------------------


def parse_ecdhe_client_key_exchange(body: bytes) -> bytes:
    """ClientECDiffieHellmanPublic: ecdh_Yc<1..2^8-1> (RFC 8422 §5.7)."""
    return _one_vector(body, 1, "empty ECDH public key")


def parse_rsa_client_key_exchange(body: bytes) -> bytes:
    """EncryptedPreMasterSecret: a 2-byte length then the RSA ciphertext (RFC 5246 §7.4.7.1).

    Only the framing is checked here (public information); whether the ciphertext has the modulus length or
    decrypts to anything is left to the key and to implicit rejection.
    """
    return _one_vector(body, 2, "empty encrypted premaster")


def _one_vector(body: bytes, length_size: int, empty: str) -> bytes:
    """A ClientKeyExchange that is one non-empty vector with a ``length_size``-byte length, and nothing else."""
    r = Reader(body)
    value = r.opaque8() if length_size == 1 else r.opaque16()
    r.expect_end("ClientKeyExchange")
    if not value:
        raise TLSAlert(AlertDescription.decode_error, empty)
    return value


def parse_client_certificate(body: bytes) -> tuple[bytes, ...]:
    r = Reader(body)
    entries = r.vec24()
    r.expect_end("Certificate")
    return read_certificate_list(entries, extensions=False)
