"""A key store backend for keys that live in a PKCS#11 token (an HSM, SoftHSM2, a smart card).

``load_pkcs11_keys(uri)`` opens the token the URI names (``keyless.keys.pkcs11_uri``), finds the
private-key objects it selects, reads each key's public half from the token (RSA modulus and
exponent from the key itself; ECDSA/Ed25519 CKA_EC_POINT from the public-key object, or else the
certificate, with the same CKA_ID) and returns one ``Pkcs11KeyHandle`` per key, indexed by the SKI
of that public key exactly as a key loaded from a file would be.

Every operation runs on the token; the private key never enters this process:

- ECDSA: CKM_ECDSA over the digest the request carries; the token's raw r||s becomes DER.
- RSA PKCS#1 v1.5: CKM_RSA_PKCS over DigestInfo || digest that we build (MD5SHA1: no DigestInfo).
- RSA-PSS: CKM_RSA_PKCS_PSS over the digest, MGF1 with the same hash, salt = hash length.
- RSA decrypt: CKM_RSA_X_509, the raw k-byte block with the padding left in place (the edge strips
  it in constant time, as for local keys).
- Ed25519: CKM_EDDSA over the whole message.

PKCS#11 calls block (python-pkcs11 releases the GIL around them), so every handle has ``offload``
set and the server runs it on its thread pool. Each token has a small pool of sessions
(``Pkcs11Token``): a thread takes a session, uses it, and gives it back. A session error that means
"this session or the token is gone" drops the session (and the idle ones) and the operation is
tried once more on a freshly opened session, so a token that comes back is reconnected without a
restart. Errors reach the edge as keyless codes only (0x01 for input the token refused, 0x08 for
a token that does not answer); the PKCS#11 error name goes to the log, the PIN never does.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pkcs11
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error

from keyless.keys.base import AsyncPrivateKey, BlockingPrivateKey
from keyless.keys.operations import Action, OpcodeKey, OperationError, operation_for
from keyless.keys.pkcs11_uri import Pkcs11Uri, Pkcs11UriError
from keyless.keys.schemes import KeyKind
from keyless.keys.ski import ski_of
from keyless.keys.store import KeyHandle, legacy_rsa_digest
from keyless.protocol import ErrorCode

log = logging.getLogger(__name__)
_tokens_lock = threading.Lock()

DEFAULT_SESSIONS = 4
SESSION_WAIT_SECONDS = 10.0
MIN_RSA_BITS = 2048

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

# RFC 8017 section 9.2, note 1: the DER DigestInfo prefix for each hash, keyed by digest length
# (every hash the opcodes use has a distinct length; 36 bytes is MD5||SHA-1, signed bare).
_DIGEST_INFO: dict[int, bytes] = {
    20: bytes.fromhex("3021300906052b0e03021a05000414"),
    28: bytes.fromhex("302d300d06096086480165030402040500041c"),
    32: bytes.fromhex("3031300d060960864801650304020105000420"),
    48: bytes.fromhex("3041300d060960864801650304020205000430"),
    64: bytes.fromhex("3051300d060960864801650304020305000440"),
    36: b"",
}
_PSS_PARAMS: dict[int, tuple[Mechanism, pkcs11.MGF, int]] = {
    32: (Mechanism.SHA256, pkcs11.MGF.SHA256, 32),
    48: (Mechanism.SHA384, pkcs11.MGF.SHA384, 48),
    64: (Mechanism.SHA512, pkcs11.MGF.SHA512, 64),
}
_CURVES: dict[bytes, ec.EllipticCurve] = {  # DER OBJECT IDENTIFIERs of CKA_EC_PARAMS
    bytes.fromhex("06082a8648ce3d030107"): ec.SECP256R1(),
    bytes.fromhex("06052b81040022"): ec.SECP384R1(),
    bytes.fromhex("06052b81040023"): ec.SECP521R1(),
}
# Ed25519 in CKA_EC_PARAMS: the OID 1.3.101.112, or PKCS#11 3.0's PrintableString "edwards25519".
_ED25519_PARAMS = frozenset({bytes.fromhex("06032b6570"), b"\x13\x0cedwards25519"})

# The token refused this input (wrong length, not below the modulus...): the request's fault, 0x01.
_INPUT_ERRORS: tuple[type[PKCS11Error], ...] = (
    pkcs11.exceptions.DataInvalid, pkcs11.exceptions.DataLenRange, pkcs11.exceptions.EncryptedDataInvalid,
    pkcs11.exceptions.EncryptedDataLenRange,
)


_ATTRIBUTE_ERRORS: tuple[type[PKCS11Error], ...] = (
    pkcs11.exceptions.AttributeTypeInvalid, pkcs11.exceptions.AttributeSensitive,
)


class Pkcs11LoadError(Exception):
    """The token or a key on it cannot be used; the message names the URI (without PIN) and why."""


class PooledSession:
    """A session of the pool and the key objects already found in it (object handles belong to a session)."""

    __slots__ = ("keys", "session")

    def __init__(self, session: Any) -> None:
        self.session = session
        self.keys: dict[bytes, Any] = {}  # SKI -> private-key object in this session


class Pkcs11Token:
    """One token reached through one PKCS#11 module, with a pool of logged-in sessions.

    PKCS#11 logs in per application and token, not per session: the first session logs in with the
    PIN, later ones share that login, and when the last session closes the login ends, so the next
    session logs in again. That is also how a lost token is reconnected.
    """

    def __init__(self, uri: Pkcs11Uri, pin: str | None, size: int = DEFAULT_SESSIONS) -> None:
        self.uri = uri
        self._pin = pin
        self._size = size
        self._lock = threading.Lock()
        self._idle: queue.LifoQueue[PooledSession] = queue.LifoQueue()
        self._open = 0  # sessions that exist (idle or in use)
        self._token: Any = None

    def __repr__(self) -> str:
        return f"<Pkcs11Token {self.uri.display} sessions={self._open}/{self._size}>"

    def set_pin(self, pin: str | None) -> None:
        self._pin = pin

    @property
    def context_pin(self) -> str | None:
        """The PIN again, for keys with CKA_ALWAYS_AUTHENTICATE (a CKU_CONTEXT_SPECIFIC login per use)."""
        return self._pin

    def _find_token(self) -> Any:
        lib = pkcs11.lib(self.uri.module_path)
        uri = self.uri
        matches = []
        for slot in lib.get_slots(token_present=True):
            if uri.slot_id is not None and slot.slot_id != uri.slot_id:
                continue
            token = slot.get_token()
            if not token.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED:
                continue  # an empty slot's blank token (SoftHSM2 always offers one): nothing to load
            if any(wanted is not None and wanted != actual for wanted, actual in (
                (uri.token, token.label), (uri.serial, token.serial.decode("ascii", "replace")),
                (uri.manufacturer, token.manufacturer_id), (uri.model, token.model),
            )):
                continue
            matches.append(token)
        if not matches:
            raise Pkcs11LoadError(f"{uri.display}: no token matches")
        if len(matches) > 1:
            raise Pkcs11LoadError(f"{uri.display}: {len(matches)} tokens match; add token=, serial= or slot-id=")
        return matches[0]

    def _open_session(self) -> PooledSession:
        """A new session; the caller holds ``_lock``. Logs in when no other session of ours is open."""
        if self._token is None or self._open == 0:
            self._token = self._find_token()
        token = self._token
        if self._open == 0 and self._pin is not None:
            try:
                session = token.open(user_pin=self._pin)
            except pkcs11.exceptions.UserAlreadyLoggedIn:
                # Another part of this process holds a session logged in to this token (a store
                # being replaced by a reload): the login is shared, so a plain session is enough.
                session = token.open()
        else:
            session = token.open()
        self._open += 1
        return PooledSession(session)

    @contextmanager
    def session(self) -> Iterator[PooledSession]:
        """Lend a session; a ``PKCS11Error`` other than refused input drops it (see ``discard``).

        The module's lock is held meanwhile: python-pkcs11 calls C_Initialize without
        CKF_OS_LOCKING_OK, which tells the module it will never be called from two threads at once
        (SoftHSM2 then disables its own locking and corrupts state if it is). So calls into one
        module are serialised; they still run on the server's thread pool, off the event loop.
        """
        module_lock = _module_lock(self.uri.module_path)
        if not module_lock.acquire(timeout=SESSION_WAIT_SECONDS):
            raise OperationError("the HSM is busy", ErrorCode.INTERNAL)
        try:
            with self._borrow() as session:
                yield session
        finally:
            module_lock.release()

    @contextmanager
    def _borrow(self) -> Iterator[PooledSession]:
        session: PooledSession | None
        try:
            session = self._idle.get_nowait()
        except queue.Empty:
            session = None
        if session is None:
            with self._lock:
                if self._open < self._size:
                    session = self._open_session()
            if session is None:
                try:
                    session = self._idle.get(timeout=SESSION_WAIT_SECONDS)
                except queue.Empty:
                    raise OperationError("every HSM session is busy", ErrorCode.INTERNAL) from None
        try:
            yield session
        except _INPUT_ERRORS:
            self._idle.put(session)
            raise
        except PKCS11Error:
            self.discard(session)
            raise
        except BaseException:
            self._idle.put(session)
            raise
        else:
            self._idle.put(session)

    def discard(self, session: PooledSession) -> None:
        """Close ``session`` and every idle one: after a session error the others are suspect too."""
        dead = [session]
        while True:
            try:
                dead.append(self._idle.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            for each in dead:
                self._open -= 1
                try:
                    each.session.close()
                except PKCS11Error:
                    pass  # already gone with the token
            if self._open <= 0:
                self._open = 0
                self._token = None

    def close(self) -> None:
        with _module_lock(self.uri.module_path), self._lock:
            while True:
                try:
                    session = self._idle.get_nowait()
                except queue.Empty:
                    break
                self._open -= 1
                try:
                    session.session.close()
                except PKCS11Error:
                    pass


_module_locks: dict[str, threading.RLock] = {}
_module_locks_lock = threading.Lock()


def _module_lock(module_path: str) -> threading.RLock:
    with _module_locks_lock:
        lock = _module_locks.get(module_path)
        if lock is None:
            lock = _module_locks[module_path] = threading.RLock()
        return lock


# One Pkcs11Token per (module, token selector) in this process, shared by reloads: a reload must not
# log in a second time while the old store's sessions are still serving requests.
_tokens: dict[tuple[str, str], Pkcs11Token] = {}


def token_for(uri: Pkcs11Uri, pin: str | None) -> Pkcs11Token:
    key = (uri.module_path, repr((uri.token, uri.serial, uri.manufacturer, uri.model, uri.slot_id)))
    with _tokens_lock:
        token = _tokens.get(key)
        if token is None:
            token = _tokens[key] = Pkcs11Token(uri, pin)
        else:
            token.set_pin(pin)
        return token


def close_all_tokens() -> None:
    """Close every pooled session (tests, shutdown)."""
    with _tokens_lock:
        for token in _tokens.values():
            token.close()
        _tokens.clear()


def _integer(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _octet_string_content(value: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around the point; a few tokens store the bare point."""
    if len(value) >= 2 and value[0] == 0x04:
        length, offset = value[1], 2
        if length & 0x80:
            count = length & 0x7F
            length, offset = _integer(value[2:2 + count]), 2 + count
        if offset + length == len(value):
            return value[offset:]
    return value


def _attribute(obj: Any, attribute: Attribute) -> Any:
    try:
        return obj[attribute]
    except PKCS11Error:  # AttributeTypeInvalid / AttributeSensitive: the object lacks it
        return None


def _find(session: Any, template: dict[Attribute, Any]) -> list[Any]:
    """Every object matching ``template``, the search finished: a session runs one search at a time."""
    return list(session.get_objects(template))


def _companion(session: Any, key_id: bytes | None, object_class: ObjectClass) -> Any:
    """The public-key or certificate object stored next to a private key (same CKA_ID)."""
    if not key_id:
        return None
    found = _find(session, {Attribute.CLASS: object_class, Attribute.ID: bytes(key_id)})
    return found[0] if found else None


def _public_key_of(session: Any, private: Any) -> PublicKey:
    """The public half of ``private``, from attributes on the token; raises ``ValueError`` with a reason."""
    key_type = _attribute(private, Attribute.KEY_TYPE)
    key_id = _attribute(private, Attribute.ID)
    if key_type == KeyType.RSA:
        source = private if _attribute(private, Attribute.MODULUS) else _companion(session, key_id,
                                                                                  ObjectClass.PUBLIC_KEY)
        if source is None:
            raise ValueError("the RSA key shows no modulus and has no public-key object with its CKA_ID")
        public = rsa.RSAPublicNumbers(_integer(source[Attribute.PUBLIC_EXPONENT]),
                                      _integer(source[Attribute.MODULUS])).public_key()
        if public.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA-{public.key_size} is too short (at least {MIN_RSA_BITS} bits)")
        return public
    if key_type == KeyType.ML_DSA:
        raise ValueError(mldsa_key_problem(module_offers_mldsa(session)))
    if key_type not in (KeyType.EC, KeyType.EC_EDWARDS):
        raise ValueError(f"unsupported key type {key_type!r} (RSA, ECDSA or Ed25519)")
    params = _attribute(private, Attribute.EC_PARAMS)
    companion = _companion(session, key_id, ObjectClass.PUBLIC_KEY)
    point = _attribute(companion, Attribute.EC_POINT) if companion is not None else None
    if point is None:
        certificate = _companion(session, key_id, ObjectClass.CERTIFICATE)
        if certificate is None:
            raise ValueError("no public-key or certificate object with the same CKA_ID holds its public key")
        cert_public = x509.load_der_x509_certificate(certificate[Attribute.VALUE]).public_key()
        if not isinstance(cert_public, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            raise ValueError("the certificate with the same CKA_ID is not for this key type")
        return cert_public
    # The DER-wrapped reading first; a bare point can look like DER by chance, so then the bytes as they are.
    candidates = (_octet_string_content(bytes(point)), bytes(point))
    if params in _ED25519_PARAMS:
        return _first_valid(candidates, ed25519.Ed25519PublicKey.from_public_bytes)
    curve = _CURVES.get(bytes(params or b""))
    if curve is None:
        raise ValueError("unsupported curve (P-256, P-384, P-521 or Ed25519)")
    return _first_valid(candidates, lambda data: ec.EllipticCurvePublicKey.from_encoded_point(curve, data))


def module_offers_mldsa(session: Any) -> bool:
    """Whether the token's module lists the ML-DSA signing mechanism (CKM_ML_DSA, PKCS#11 3.2)."""
    try:
        return Mechanism.ML_DSA in session.token.slot.get_mechanisms()
    except PKCS11Error:  # a module that cannot even list its mechanisms has no usable ML-DSA either
        return False


def mldsa_key_problem(offers_mldsa: bool) -> str:
    """Why an ML-DSA key object on a token is skipped: the key server never loads it half-way."""
    if not offers_mldsa:
        return ("an ML-DSA key, but this PKCS#11 module offers no ML-DSA mechanism (CKM_ML_DSA), so it cannot "
                "sign with it (fix: keep ML-DSA keys in private_key_dirs as PKCS#8 files)")
    return ("an ML-DSA key: keyless signs ML-DSA by external μ, which it does not ask of PKCS#11 modules yet "
            "(fix: keep ML-DSA keys in private_key_dirs as PKCS#8 files)")


def _first_valid(candidates: tuple[bytes, bytes], build: Callable[[bytes], PublicKey]) -> PublicKey:
    for data in candidates:
        try:
            return build(data)
        except ValueError:
            continue
    raise ValueError("CKA_EC_POINT does not hold a valid public key")


def _kind_and_description(public: PublicKey) -> tuple[KeyKind, str]:
    if isinstance(public, rsa.RSAPublicKey):
        return KeyKind.RSA, f"RSA-{public.key_size}"
    if isinstance(public, ec.EllipticCurvePublicKey):
        names = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return KeyKind.ECDSA, f"ECDSA-{names.get(public.curve.name, public.curve.name)}"
    return KeyKind.ED25519, "Ed25519"


def _legacy_digest(public: PublicKey) -> bytes | None:
    if not isinstance(public, rsa.RSAPublicKey):
        return None
    return legacy_rsa_digest(public)


class Pkcs11KeyHandle(OpcodeKey):
    """A private key on a token: the ``KeyHandle`` the server uses, with every operation on the token.

    Being an ``OpcodeKey`` it is also an ``AsyncPrivateKey``: a TLS server can sign with a token's key
    directly (on a thread pool, ``offload``), through the same opcode checks as the key server."""

    __slots__ = ("_always_authenticate", "_k", "_locate", "_modulus", "_token", "description", "kind", "legacy_digest",
                 "offload", "public_key", "ski", "source")

    def __init__(self, token: Pkcs11Token, public: PublicKey, locate: dict[Attribute, Any], source: str,
                 always_authenticate: bool = False) -> None:
        self._token = token
        self._always_authenticate = always_authenticate
        self._locate = locate  # the search template that finds this private key in any session
        self.public_key = public
        self.ski = ski_of(public)
        self.kind, self.description = _kind_and_description(public)
        self.offload = True  # every call blocks on the token
        self.source = source
        self.legacy_digest = _legacy_digest(public)
        self._modulus = public.public_numbers().n if isinstance(public, rsa.RSAPublicKey) else 0
        self._k = (public.key_size + 7) // 8 if isinstance(public, rsa.RSAPublicKey) else 0

    def __repr__(self) -> str:
        return f"<Pkcs11KeyHandle {self.description} ski={self.ski.hex()} from {self.source}>"

    def _key_in(self, pooled: PooledSession) -> Any:
        """This key's object in ``pooled`` (found once per session; only one thread holds a session)."""
        key = pooled.keys.get(self.ski)
        if key is None:
            session = pooled.session
            for candidate in _find(session, self._locate):
                if _matches(session, candidate, self.ski):
                    key = pooled.keys[self.ski] = candidate
                    break
            if key is None:
                raise OperationError("the key is no longer on the token", ErrorCode.INTERNAL)
        return key

    def execute(self, opcode: int, payload: bytes) -> bytes:
        op = operation_for(opcode, self.kind, payload)
        if op.action is Action.RSA_DECRYPT and (len(payload) != self._k or _integer(payload) >= self._modulus):
            raise OperationError(f"{op.opcode.name} failed: the input is not a {self._k}-byte block below the modulus")
        perform = _PERFORM[op.action]
        for attempt in (1, 2):
            try:
                with self._token.session() as session:
                    return perform(self, self._key_in(session), payload)
            except _INPUT_ERRORS as exc:
                raise OperationError(f"{op.opcode.name} failed: the token refused the input "
                                     f"({type(exc).__name__})") from None
            except Pkcs11LoadError:
                raise OperationError(f"{op.opcode.name} failed: the HSM token is not present",
                                     ErrorCode.INTERNAL) from None
            except PKCS11Error as exc:
                log.warning("HSM error on %s for key %s (attempt %d): %s", self._token.uri.display,
                            self.ski.hex(), attempt, type(exc).__name__)
        raise OperationError(f"{op.opcode.name} failed: the HSM is not answering", ErrorCode.INTERNAL)

    def _pin(self) -> str | None:
        return self._token.context_pin if self._always_authenticate else None

    def _sign_ecdsa(self, key: Any, digest: bytes) -> bytes:
        raw = key.sign(digest, mechanism=Mechanism.ECDSA, pin=self._pin())
        half = len(raw) // 2
        return encode_dss_signature(_integer(raw[:half]), _integer(raw[half:]))

    def _sign_pkcs1(self, key: Any, digest: bytes) -> bytes:
        return bytes(key.sign(_DIGEST_INFO[len(digest)] + digest, mechanism=Mechanism.RSA_PKCS, pin=self._pin()))

    def _sign_pss(self, key: Any, digest: bytes) -> bytes:
        return bytes(key.sign(digest, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=_PSS_PARAMS[len(digest)],
                              pin=self._pin()))

    def _decrypt_raw(self, key: Any, block: bytes) -> bytes:
        return bytes(key.decrypt(block, mechanism=Mechanism.RSA_X_509, pin=self._pin())).rjust(self._k, b"\x00")

    def _sign_ed25519(self, key: Any, message: bytes) -> bytes:
        return bytes(key.sign(message, mechanism=Mechanism.EDDSA, pin=self._pin()))


_PERFORM: dict[Action, Callable[[Pkcs11KeyHandle, Any, bytes], bytes]] = {
    Action.ECDSA: Pkcs11KeyHandle._sign_ecdsa,
    Action.RSA_PKCS1: Pkcs11KeyHandle._sign_pkcs1,
    Action.RSA_PSS: Pkcs11KeyHandle._sign_pss,
    Action.RSA_DECRYPT: Pkcs11KeyHandle._decrypt_raw,
    Action.ED25519: Pkcs11KeyHandle._sign_ed25519,
}


def _matches(session: Any, private: Any, ski: bytes) -> bool:
    try:
        return ski_of(_public_key_of(session, private)) == ski
    except ValueError:
        return False


def _search_template(uri: Pkcs11Uri) -> dict[Attribute, Any]:
    template: dict[Attribute, Any] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
    if uri.object_label is not None:
        template[Attribute.LABEL] = uri.object_label
    if uri.object_id is not None:
        template[Attribute.ID] = uri.object_id
    return template


def _name_of(private: Any) -> str:
    label = _attribute(private, Attribute.LABEL)
    key_id = _attribute(private, Attribute.ID)
    parts = [f"object={label}"] if label else []
    if key_id:
        parts.append("id=" + "".join(f"%{b:02x}" for b in key_id))
    return ";".join(parts)


def load_pkcs11_keys(uri: Pkcs11Uri) -> tuple[list[Pkcs11KeyHandle], list[str]]:
    """The keys ``uri`` selects, and a reason for each private-key object that was skipped.

    Raises ``Pkcs11LoadError`` when the token cannot be reached or nothing usable matched.
    """
    try:
        pin = uri.pin()
    except Pkcs11UriError as exc:
        raise Pkcs11LoadError(str(exc)) from None
    try:
        token = token_for(uri, pin)
    except PKCS11Error as exc:
        raise Pkcs11LoadError(f"{uri.display}: cannot load the module ({type(exc).__name__})") from None
    template = _search_template(uri)
    handles: list[Pkcs11KeyHandle] = []
    problems: list[str] = []
    try:
        with token.session() as pooled:
            session = pooled.session
            for private in _find(session, template):
                name = _name_of(private)
                try:
                    public = _public_key_of(session, private)
                except ValueError as exc:
                    problems.append(f"{uri.naming(name)}: {exc}")
                    continue
                except _INPUT_ERRORS + _ATTRIBUTE_ERRORS as exc:
                    problems.append(f"{uri.naming(name)}: cannot read its public key ({type(exc).__name__})")
                    continue
                locate = dict(template)
                key_id = _attribute(private, Attribute.ID)
                if key_id:
                    locate[Attribute.ID] = bytes(key_id)
                always_authenticate = _attribute(private, Attribute.ALWAYS_AUTHENTICATE) is True
                handles.append(Pkcs11KeyHandle(token, public, locate, uri.naming(name), always_authenticate))
    except OSError as exc:  # the module file cannot be loaded
        raise Pkcs11LoadError(f"{uri.display}: cannot load the PKCS#11 module: {exc.strerror or exc}") from None
    except pkcs11.exceptions.PinIncorrect:
        raise Pkcs11LoadError(f"{uri.display}: the token refused the PIN") from None
    except PKCS11Error as exc:
        raise Pkcs11LoadError(f"{uri.display}: the token refused: {type(exc).__name__}") from None
    except OperationError as exc:
        raise Pkcs11LoadError(f"{uri.display}: {exc.reason}") from None
    if not handles and not problems:
        hint = "" if pin is not None else f" (no PIN given: set pin-source or {PIN_HINT})"
        raise Pkcs11LoadError(f"{uri.display}: no private key object matches{hint}")
    return handles, problems


PIN_HINT = "the KEYLESS_PKCS11_PIN environment variable"


if TYPE_CHECKING:  # mypy --strict proves a token's key fits both seams: the key server's and a handshake's

    def _fits_the_seams(handle: Pkcs11KeyHandle) -> tuple[KeyHandle, AsyncPrivateKey, BlockingPrivateKey]:
        return handle, handle, handle
