"""ClientHello extension parsers (RFC 8446 §4.2, RFC 6066, RFC 7301, RFC 8449, RFC 7627, RFC 5746).

Each parser receives exactly the extension's body as a ``Reader`` and must consume it whole; every
failure is a ``TLSAlert``. Vectors declared ``<1..n>`` must be non-empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.codec import Reader, Writer, unpack_u16s


class ExtensionType(IntEnum):
    server_name = 0
    max_fragment_length = 1
    status_request = 5
    supported_groups = 10
    ec_point_formats = 11
    signature_algorithms = 13
    use_srtp = 14
    heartbeat = 15
    application_layer_protocol_negotiation = 16
    signed_certificate_timestamp = 18
    client_certificate_type = 19
    server_certificate_type = 20
    padding = 21
    encrypt_then_mac = 22
    extended_master_secret = 23
    record_size_limit = 28
    session_ticket = 35
    pre_shared_key = 41
    early_data = 42
    supported_versions = 43
    cookie = 44
    psk_key_exchange_modes = 45
    certificate_authorities = 47
    oid_filters = 48
    post_handshake_auth = 49
    signature_algorithms_cert = 50
    key_share = 51
    renegotiation_info = 0xFF01


MAX_PSK_IDENTITIES = 5  # like Go's maxClientPSKIdentities: more only costs us binder work

PSK_KE = 0
PSK_DHE_KE = 1


def _decode_error(what: str) -> TLSAlert:
    return TLSAlert(AlertDescription.decode_error, what)


_PRINTABLE_ASCII = bytes(range(0x21, 0x7F))  # deleting these from a valid host name leaves nothing


def parse_server_name(r: Reader) -> str | None:
    """RFC 6066 §3: ServerNameList<1..2^16-1>; we keep the one host_name (type 0), ASCII, no trailing dot."""
    names = r.vec16()
    r.expect_end("server_name")
    if names.at_end():
        raise _decode_error("empty server_name list")
    host: str | None = None
    while not names.at_end():
        name_type = names.u8()
        value = names.opaque16()
        if name_type != 0:
            continue
        if not value:
            raise _decode_error("empty host_name")  # HostName<1..2^16-1>: out of range
        if host is not None:
            raise TLSAlert(AlertDescription.illegal_parameter, "two host_name entries")
        if value.endswith(b".") or value.translate(None, _PRINTABLE_ASCII):
            # Well encoded, unacceptable value (control characters, non-ASCII, a trailing dot): RFC 8446 §6.2
            # keeps decode_error for what cannot be parsed.
            raise TLSAlert(AlertDescription.illegal_parameter, "host_name is not an ASCII host name")
        host = value.decode("ascii").lower()
    return host


def parse_u16_list_ext(r: Reader, what: str) -> tuple[int, ...]:
    values = r.u16_list(what)
    r.expect_end(what)
    return values


def parse_supported_versions(r: Reader) -> tuple[int, ...]:
    """ProtocolVersion versions<2..254> (client form)."""
    n = r.u8()
    if n % 2 or n < 2:
        raise _decode_error("bad supported_versions length")
    raw = r.read(n)
    r.expect_end("supported_versions")
    return unpack_u16s(raw)


def parse_key_share(r: Reader) -> tuple[tuple[int, bytes], ...]:
    """KeyShareClientHello: client_shares<0..2^16-1> of (group, key_exchange<1..2^16-1>); groups unique.

    Every share is kept: the extension's length bounds their number (a count limit would drop shares and
    could make us ask, in a HelloRetryRequest, for a group the client did send — RFC 8446 §4.1.4)."""
    shares = r.vec16()
    r.expect_end("key_share")
    out: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    while not shares.at_end():
        group = shares.u16()
        key = shares.opaque16()
        if not key:
            raise _decode_error("empty key_exchange")
        if group in seen:
            raise TLSAlert(AlertDescription.illegal_parameter, "duplicate key_share group")
        seen.add(group)
        out.append((group, key))
    return tuple(out)


def parse_psk_modes(r: Reader) -> tuple[int, ...]:
    return _u8_list(r, "psk_key_exchange_modes")


def _u8_list(r: Reader, name: str) -> tuple[int, ...]:
    """An extension that is one non-empty ``uint8 list<1..2^8-1>``."""
    items = r.opaque8()
    r.expect_end(name)
    if not items:
        raise _decode_error(f"empty {name}")
    return tuple(items)


def parse_alpn(r: Reader) -> tuple[bytes, ...]:
    """RFC 7301: ProtocolNameList<2..2^16-1> of ProtocolName<1..2^8-1>."""
    names = r.vec16()
    r.expect_end("alpn")
    out: list[bytes] = []
    while not names.at_end():
        name = names.opaque8()
        if not name:
            raise _decode_error("empty ALPN protocol name")
        out.append(name)
    if not out:
        raise _decode_error("empty ALPN list")
    return tuple(out)


def parse_status_request(r: Reader) -> bool:
    """RFC 6066 §8: we only note whether an OCSP (type 1) staple was asked for."""
    status_type = r.u8()
    r.vec16()  # responder_id_list
    r.vec16()  # request_extensions
    r.expect_end("status_request")
    return status_type == 1


def parse_cookie(r: Reader) -> bytes:
    cookie = r.opaque16()
    r.expect_end("cookie")
    if not cookie:
        raise _decode_error("empty cookie")
    return cookie


def parse_record_size_limit(r: Reader) -> int:
    limit = r.u16()
    r.expect_end("record_size_limit")
    if limit < 64:
        raise TLSAlert(AlertDescription.illegal_parameter, "record_size_limit below 64")
    return limit


def parse_empty(r: Reader, what: str) -> bool:
    r.expect_end(what)
    return True


def parse_renegotiation_info(r: Reader) -> bytes:
    value = r.opaque8()
    r.expect_end("renegotiation_info")
    return value


def parse_ec_point_formats(r: Reader) -> tuple[int, ...]:
    return _u8_list(r, "ec_point_formats")


@dataclass(frozen=True, slots=True)
class PskIdentity:
    identity: bytes
    obfuscated_ticket_age: int


@dataclass(frozen=True, slots=True)
class OfferedPsks:
    """pre_shared_key in a ClientHello; ``binders_length`` = bytes of the binders list incl. its 2-byte prefix,
    so the truncated ClientHello for the binder transcript is ``raw[:-binders_length]`` (RFC 8446 §4.2.11.2)."""

    identities: tuple[PskIdentity, ...]
    binders: tuple[bytes, ...]
    binders_length: int


def parse_pre_shared_key(r: Reader) -> OfferedPsks:
    identities_r = r.vec16()
    start_binders = r.position
    binders_r = r.vec16()
    binders_length = r.position - start_binders
    r.expect_end("pre_shared_key")
    identities: list[PskIdentity] = []
    while not identities_r.at_end():
        identity = identities_r.opaque16()
        age = identities_r.u32()
        if not identity:
            raise _decode_error("empty PSK identity")
        identities.append(PskIdentity(identity, age))
    binders: list[bytes] = []
    while not binders_r.at_end():
        binder = binders_r.opaque8()
        if len(binder) < 32:
            raise _decode_error("PSK binder too short")
        binders.append(binder)
    if not identities or not binders:
        raise _decode_error("empty PSK identities or binders")  # identities<7..>, binders<33..>
    if len(identities) != len(binders):
        raise TLSAlert(AlertDescription.illegal_parameter, "PSK identities and binders do not match")
    return OfferedPsks(tuple(identities), tuple(binders), binders_length)


# ---- server-side extension encoders ---------------------------------------------------------------


def encode_extension(w: Writer, ext_type: int, body: bytes) -> None:
    w.u16(ext_type)
    w.opaque16(body)


def choose_alpn(ours: Sequence[str], offered: Sequence[bytes]) -> bytes | None:
    """RFC 7301 §3.2: our preference; no overlap is fatal (no_application_protocol). Same in TLS 1.2 and 1.3."""
    if not ours or not offered:
        return None
    offered_set = set(offered)
    for protocol in ours:
        encoded = protocol.encode()
        if encoded in offered_set:
            return encoded
    raise TLSAlert(AlertDescription.no_application_protocol, "no ALPN protocol in common")


def alpn_body(protocol: bytes) -> bytes:
    return (len(protocol) + 1).to_bytes(2, "big") + bytes((len(protocol),)) + protocol
