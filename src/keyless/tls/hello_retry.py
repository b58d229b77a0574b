"""RFC 8446 §4.1.2: the ClientHello that answers our HelloRetryRequest must be the first one again, except:

- key_share: now the single share of the group we asked for;
- early_data: removed (a client may not send 0-RTT after a HelloRetryRequest);
- cookie: added if the HelloRetryRequest carried one (ours never does, so no cookie may appear);
- pre_shared_key: ticket ages and binders recomputed, PSKs the chosen suite cannot use removed;
- padding: added, removed or changed.

Anything else that differs — version, random, session id, cipher suites, compression, SNI, groups,
signature algorithms, ALPN, any other extension's bytes or the order of the extensions — is
``illegal_parameter``. This is what keeps the second hello from choosing a different certificate, site
or key-server name than the first one was answered for.
"""

from __future__ import annotations

from keyless.tls.alerts import AlertDescription, TLSAlert
from keyless.tls.extensions import ExtensionType
from keyless.tls.messages import ClientHello

_KEY_SHARE = int(ExtensionType.key_share)
_MAY_CHANGE_IN_SECOND = frozenset((int(ExtensionType.padding), int(ExtensionType.pre_shared_key)))
_MAY_GO_FROM_FIRST = _MAY_CHANGE_IN_SECOND | {int(ExtensionType.early_data)}


def _changed(what: str) -> TLSAlert:
    return TLSAlert(AlertDescription.illegal_parameter, f"second ClientHello changed {what}")


def check_second_client_hello(first: ClientHello, second: ClientHello, requested_group: int) -> None:
    """Raise illegal_parameter unless ``second`` is ``first`` with only the changes §4.1.2 allows."""
    if second.legacy_version != first.legacy_version:
        raise _changed("legacy_version")
    if second.random != first.random:
        raise _changed("random")
    if second.legacy_session_id != first.legacy_session_id:
        raise _changed("legacy_session_id")
    if second.cipher_suites != first.cipher_suites:
        raise _changed("cipher_suites")
    if second.compression_methods != first.compression_methods:
        raise _changed("compression_methods")
    if second.early_data:
        raise TLSAlert(AlertDescription.illegal_parameter, "early_data after HelloRetryRequest")
    shares = second.key_shares or ()
    if len(shares) != 1 or shares[0][0] != requested_group:
        raise TLSAlert(AlertDescription.illegal_parameter, "second ClientHello has the wrong key_share")
    before = [(t, b"" if t == _KEY_SHARE else body) for t, body in first.extensions if t not in _MAY_GO_FROM_FIRST]
    after = [(t, b"" if t == _KEY_SHARE else body) for t, body in second.extensions if t not in _MAY_CHANGE_IN_SECOND]
    if before != after:
        raise _changed(_first_difference(before, after))
    _check_updated_psks(first, second)


def _check_updated_psks(first: ClientHello, second: ClientHello) -> None:
    """The second pre_shared_key may only keep (in order) identities the first offered."""
    if second.pre_shared_key is None:
        return
    if first.pre_shared_key is None:
        raise _changed("pre_shared_key (added)")
    remaining = iter(identity.identity for identity in first.pre_shared_key.identities)
    for identity in second.pre_shared_key.identities:
        if not any(identity.identity == earlier for earlier in remaining):
            raise _changed("pre_shared_key identities")


def _first_difference(before: list[tuple[int, bytes]], after: list[tuple[int, bytes]]) -> str:
    for (type_before, body_before), (type_after, body_after) in zip(before, after, strict=False):
        if type_before != type_after:
            return f"the extensions (order or presence: {type_before} became {type_after})"
        if body_before != body_after:
            return f"extension {_name(type_before)}"
    return "the extensions (one added or removed)"


def _name(ext_type: int) -> str:
    try:
        return ExtensionType(ext_type).name
    except ValueError:
        return str(ext_type)
