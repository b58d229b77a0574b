"""Stateless session tickets: the resumable state, its strict encoding, and the shared ticket key ring.

A ticket is ``key_name(16) || nonce(12) || AES-256-GCM(state, aad=key_name)``. The key name picks the key,
so the ring can hold several: the newest seals, all of them still open (RFC 5077 §4's recommended layout,
with an AEAD in place of CBC+HMAC). Anything that does not open, parse or is past its lifetime comes back
as ``None``: the handshake simply falls back to a full one, with no alert (Go ``decryptTicket``).

Keys come from a ``TicketKeySource``. ``seal`` and ``open`` only read the keys held in memory (the engine does
no I/O); the daemon re-reads the source with ``refresh()`` on a timer task, in a thread, when
``refresh_due`` says so (``keyless.tls.asyncio_adapter.refresh_ticket_keys``):

* ``RotatingKeySource`` — random keys made in this process, a new one every ``rotation_interval``.
* ``KeyFileSource`` — key files an operator distributes to every machine, like nginx's
  ``ssl_session_ticket_key``: each file holds 80 (or 48) random bytes per key, e.g. ``openssl rand 80``;
  the first key of the first file seals, all of them open. Rotate by shipping a new first file.
* ``RedisTicketKeyStore`` — a key per time slot in Redis, shared by every
  process that points at it.

Time-slot sources publish the *next* slot's key one slot early, so every process already holds a key
before anyone seals with it. Keys are kept for the ticket lifetime after their slot ends.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyless.tls.alerts import TLSAlert
from keyless.tls.codec import Reader, Writer, read_certificate_list

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

KEY_NAME_LENGTH = 16
NONCE_LENGTH = 12
TAG_LENGTH = 16
KEY_MATERIAL_LENGTHS = (80, 48)  # nginx's two ssl_session_ticket_key sizes
MAX_TICKET_LIFETIME = 604800  # RFC 8446 §4.6.1: seven days
MAX_TICKET_LENGTH = 65535  # opaque ticket<1..2^16-1> in both NewSessionTicket messages

_STATE_FORMAT_VERSION = 1
_FLAG_EMS = 1
_FLAG_SNI = 2
_FLAG_ALPN = 4
_KNOWN_FLAGS = _FLAG_EMS | _FLAG_SNI | _FLAG_ALPN
_DOUBLE = struct.Struct("!d")
_MAX_CLIENT_CHAIN = 262144  # same bound as a Certificate message


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a ticket (or the TLS 1.2 session cache) remembers about a session.

    ``secret`` is the TLS 1.3 resumption PSK or the TLS 1.2 master secret.
    """

    version: int
    cipher_suite: int
    secret: bytes = field(repr=False)
    created_at: float
    age_add: int = 0
    lifetime: int = 7200
    sni: str | None = None
    alpn: str | None = None
    ems: bool = True  # TLS 1.2: whether the master secret is an extended one (RFC 7627)
    client_certificates: tuple[bytes, ...] = ()  # DER, leaf first, when the client authenticated

    def __post_init__(self) -> None:
        if not 0 <= self.version <= 0xFFFF or not 0 <= self.cipher_suite <= 0xFFFF:
            raise ValueError("version and cipher_suite are 16-bit values")
        if not 0 < len(self.secret) < 256:
            raise ValueError("secret must be 1..255 bytes")
        if not 0 <= self.age_add < 1 << 32 or not 0 <= self.lifetime <= MAX_TICKET_LIFETIME:
            raise ValueError("age_add is 32-bit and lifetime at most 604800 s")
        if not math.isfinite(self.created_at):
            raise ValueError("created_at must be finite")
        if (self.sni is not None and len(self.sni) > 0xFFFF) or (self.alpn is not None and len(self.alpn) > 0xFF):
            raise ValueError("sni or alpn too long")

    def expired(self, now: float) -> bool:
        return now > self.created_at + self.lifetime

    def to_bytes(self) -> bytes:
        w = Writer()
        w.u8(_STATE_FORMAT_VERSION)
        w.u16(self.version)
        w.u16(self.cipher_suite)
        w.opaque8(self.secret)
        w.raw(_DOUBLE.pack(self.created_at))
        w.u32(self.age_add)
        w.u32(self.lifetime)
        flags = (_FLAG_EMS if self.ems else 0) | (_FLAG_SNI if self.sni is not None else 0)
        flags |= _FLAG_ALPN if self.alpn is not None else 0
        w.u8(flags)
        if self.sni is not None:
            w.opaque16(self.sni.encode("ascii"))  # RFC 6066 lets a host_name run to 2^16-1 bytes
        if self.alpn is not None:
            w.opaque8(self.alpn.encode("latin-1"))
        with w.block(3):
            for der in self.client_certificates:
                w.opaque24(der)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionState:
        """Strict inverse of ``to_bytes``; anything else raises ValueError."""
        try:
            r = Reader(data)
            if r.u8() != _STATE_FORMAT_VERSION:
                raise ValueError("unknown session state format")
            version = r.u16()
            suite = r.u16()
            secret = r.opaque8()
            (created_at,) = _DOUBLE.unpack(r.read(8))
            age_add = r.u32()
            lifetime = r.u32()
            flags = r.u8()
            if flags & ~_KNOWN_FLAGS:
                raise ValueError("unknown session state flags")
            sni = r.opaque16().decode("ascii") if flags & _FLAG_SNI else None
            alpn = r.opaque8().decode("latin-1") if flags & _FLAG_ALPN else None
            chain = read_certificate_list(r.vec24(), extensions=False)
            r.expect_end("session state")
        except TLSAlert as exc:  # the codec's truncation errors
            raise ValueError("malformed session state") from exc
        except UnicodeDecodeError as exc:
            raise ValueError("malformed session state") from exc
        return cls(version, suite, secret, created_at, age_add, lifetime, sni, alpn, bool(flags & _FLAG_EMS),
                   chain)


class TicketTooLarge(ValueError):
    """The session (with its client certificate chain) would make a ticket over 65535 bytes."""


@dataclass(frozen=True, slots=True)
class TicketKey:
    """One ticket key: a public 16-byte name (carried in each ticket) and a secret AES-256 key."""

    name: bytes
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.name) != KEY_NAME_LENGTH or len(self.key) != 32:
            raise ValueError("a ticket key has a 16-byte name and a 32-byte key")

    def __repr__(self) -> str:
        return f"TicketKey(name={self.name.hex()})"

    @classmethod
    def from_material(cls, material: bytes) -> TicketKey:
        """From 80 (or nginx's older 48) random bytes: the first 16 are the name, the rest are keyed
        through HKDF-SHA256 into the AES-256 key (so all the operator's entropy is used)."""
        if len(material) not in KEY_MATERIAL_LENGTHS:
            raise ValueError("ticket key material must be 80 or 48 bytes")
        name = material[:KEY_NAME_LENGTH]
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"keyless ticket key v1")
        return cls(name, hkdf.derive(material[KEY_NAME_LENGTH:]))

    @classmethod
    def generate(cls, random_bytes: Callable[[int], bytes] = os.urandom) -> TicketKey:
        return cls.from_material(random_bytes(80))


def load_key_file(path: str | os.PathLike[str]) -> list[TicketKey]:
    """Keys from one file: 48 bytes (one key), or any number of 80-byte keys, newest first.

    The file is raw bytes (``openssl rand 80 > ticket.key``), the same format nginx reads. Errors never
    include the file's content.
    """
    data = Path(path).read_bytes()
    if len(data) == 48:
        return [TicketKey.from_material(data)]
    if not data or len(data) % 80:
        raise ValueError(f"{os.fspath(path)}: a ticket key file holds 48 bytes or a multiple of 80 bytes")
    return [TicketKey.from_material(data[i : i + 80]) for i in range(0, len(data), 80)]


class TicketKeySource(Protocol):
    """Where a ring's keys come from. ``load`` returns the keys, the sealing key first."""

    def load(self, now: float) -> Sequence[TicketKey]: ...

    def next_change(self, now: float) -> float:
        """When the sealing key changes next (the ring refreshes then at the latest)."""
        ...


def slot_of(now: float, rotation_interval: float) -> int:
    return math.floor(now / rotation_interval)


def slots_to_keep(rotation_interval: float, ticket_lifetime: float) -> int:
    """Past slots whose keys must still open: a ticket sealed at the very end of a slot lives
    ``ticket_lifetime`` more."""
    return max(1, math.ceil(ticket_lifetime / rotation_interval))


class RotatingKeySource:
    """Keys made in this process: one per ``rotation_interval`` slot, kept for ``ticket_lifetime`` after."""

    def __init__(self, rotation_interval: float = 3600.0, ticket_lifetime: float = 7200.0,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if rotation_interval <= 0 or not 0 < ticket_lifetime <= MAX_TICKET_LIFETIME:
            raise ValueError("rotation_interval must be > 0 and ticket_lifetime in (0, 604800]")
        self.rotation_interval = rotation_interval
        self.keep = slots_to_keep(rotation_interval, ticket_lifetime)
        self._random_bytes = random_bytes
        self._keys: dict[int, TicketKey] = {}

    def __repr__(self) -> str:
        return f"<RotatingKeySource every {self.rotation_interval}s, {len(self._keys)} keys>"

    def load(self, now: float) -> list[TicketKey]:
        current = slot_of(now, self.rotation_interval)
        wanted = range(current - self.keep, current + 2)
        for slot in [s for s in self._keys if s not in wanted]:
            del self._keys[slot]
        for slot in (current, current + 1):
            if slot not in self._keys:
                self._keys[slot] = TicketKey.generate(self._random_bytes)
        return [self._keys[current]] + [key for slot, key in sorted(self._keys.items()) if slot != current]

    def next_change(self, now: float) -> float:
        return (slot_of(now, self.rotation_interval) + 1) * self.rotation_interval


class KeyFileSource:
    """Keys from files an operator distributes (nginx ``ssl_session_ticket_key`` style), re-read on refresh."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("at least one ticket key file is needed")
        self.load(0.0)  # fail at start-up on a bad file, not at the first handshake

    def __repr__(self) -> str:
        return f"<KeyFileSource {[str(p) for p in self.paths]}>"

    def load(self, now: float) -> list[TicketKey]:
        keys: list[TicketKey] = []
        for path in self.paths:
            keys.extend(load_key_file(path))
        return keys

    def next_change(self, now: float) -> float:
        return math.inf  # the operator decides; the ring still re-reads every refresh_interval


class TicketKeyRing:
    """Seals and opens tickets. Newest key seals; every key still held opens; unknown/bad → None.

    ``now`` says when the source is due to be re-read (every ``refresh_interval`` and at each rotation);
    ``seal``/``open`` never read it: the owner calls ``refresh()`` off the handshake path (the edge runs
    ``keyless.tls.asyncio_adapter.refresh_ticket_keys``, which reads files and Redis in a thread), so no
    handshake ever waits on a disk or a store. A source failure keeps the keys already held; with none at
    all, a process-local key is used so handshakes never fail because of the ring.
    """

    def __init__(self, source: TicketKeySource | Sequence[TicketKey], *, now: Callable[[], float] = time.time,
                 refresh_interval: float = 60.0, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._now = now
        self._random_bytes = random_bytes
        self.refresh_interval = refresh_interval
        self._source: TicketKeySource | None = None
        self._sealing: tuple[TicketKey, AESGCM] | None = None
        self._openers: dict[bytes, AESGCM] = {}
        self._next_refresh = math.inf
        if isinstance(source, Sequence):
            self._install(list(source))
            if self._sealing is None:
                raise ValueError("a ticket key ring needs at least one key")
        else:
            self._source = source
            self.refresh()

    @classmethod
    def rotating(cls, rotation_interval: float = 3600.0, ticket_lifetime: float = 7200.0, *,
                 now: Callable[[], float] = time.time) -> TicketKeyRing:
        return cls(RotatingKeySource(rotation_interval, ticket_lifetime), now=now)

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]], *, now: Callable[[], float] = time.time,
                   refresh_interval: float = 60.0) -> TicketKeyRing:
        return cls(KeyFileSource(paths), now=now, refresh_interval=refresh_interval)

    def __repr__(self) -> str:
        sealing = self._sealing[0].name.hex() if self._sealing else None
        return f"<TicketKeyRing sealing={sealing} keys={len(self._openers)} source={self._source!r}>"

    @property
    def key_names(self) -> list[bytes]:
        """Names of the keys held, the sealing key first (names are public: they travel in tickets)."""
        names = list(self._openers)
        if self._sealing is not None:
            names.remove(self._sealing[0].name)
            names.insert(0, self._sealing[0].name)
        return names

    def refresh(self) -> None:
        """Re-read the source now (an edge may call this from a background thread)."""
        now = self._now()
        source = self._source
        if source is None:
            return
        try:
            keys = list(source.load(now))
            next_change = source.next_change(now)
        except Exception as exc:  # Redis down, file being replaced...: keep what we have, retry soon
            log.warning("ticket keys could not be refreshed (%s); keeping %d keys", type(exc).__name__,
                        len(self._openers))
            self._next_refresh = now + min(self.refresh_interval, 5.0)
            return
        self._install(keys)
        self._next_refresh = min(now + self.refresh_interval, next_change)

    def _install(self, keys: list[TicketKey]) -> None:
        if not keys:
            return
        openers: dict[bytes, AESGCM] = {}
        for key in keys:
            if key.name not in openers:  # on a (pathological) name clash the newer key wins, as it seals
                openers[key.name] = AESGCM(key.key)
        self._openers = openers
        self._sealing = (keys[0], openers[keys[0].name])

    @property
    def has_source(self) -> bool:
        """False for a fixed list of keys: nothing to refresh."""
        return self._source is not None

    @property
    def refresh_due(self) -> bool:
        return self._now() >= self._next_refresh

    def seconds_until_refresh(self) -> float:
        """How long until the source should be re-read (``math.inf`` for a fixed list of keys)."""
        return max(0.0, self._next_refresh - self._now())

    def seal(self, state: SessionState) -> bytes:
        if self._sealing is None:
            log.warning("no shared ticket key available; sealing with a process-local key")
            self._install([TicketKey.generate(self._random_bytes)])
        if self._sealing is None:  # pragma: no cover - _install of one key always sets it
            raise RuntimeError("no ticket key")
        key, aead = self._sealing
        plaintext = state.to_bytes()
        if KEY_NAME_LENGTH + NONCE_LENGTH + len(plaintext) + TAG_LENGTH > MAX_TICKET_LENGTH:
            # Only a huge client certificate chain gets here; the caller should skip the ticket.
            raise TicketTooLarge("session state does not fit in a ticket")
        nonce = self._random_bytes(NONCE_LENGTH)
        return key.name + nonce + aead.encrypt(nonce, plaintext, key.name)

    def open(self, ticket: bytes) -> SessionState | None:
        """The session inside ``ticket``, or None if it is unknown, forged, malformed or expired."""
        if len(ticket) < KEY_NAME_LENGTH + NONCE_LENGTH + TAG_LENGTH:
            return None
        name = bytes(ticket[:KEY_NAME_LENGTH])
        aead = self._find(name)
        if aead is None:
            return None
        nonce = ticket[KEY_NAME_LENGTH : KEY_NAME_LENGTH + NONCE_LENGTH]
        try:
            plaintext = aead.decrypt(nonce, ticket[KEY_NAME_LENGTH + NONCE_LENGTH :], name)
            state = SessionState.from_bytes(plaintext)
        except (InvalidTag, ValueError):
            return None
        if state.expired(self._now()):
            return None
        return state

    def _find(self, name: bytes) -> AESGCM | None:
        # The key name is public (it travels in clear in every ticket): a dict lookup leaks nothing.
        # Authentication is the AEAD tag.
        return self._openers.get(name)


class RedisTicketKeyStore:
    """Ticket keys shared through Redis: one key per ``rotation_interval`` slot under ``{prefix}{slot}``.

    Whoever first finds the current (or next) slot empty creates its key with ``SET NX`` (so concurrent
    processes agree on one), with an expiry covering the slot plus the ticket lifetime; everyone reads the
    same keys with one ``MGET``. ``client`` is a ``redis.Redis`` (sync: the ring refreshes rarely and can be
    refreshed from a thread); give it short socket timeouts.
    """

    def __init__(self, client: redis.Redis, *, prefix: str = "keyless:ticket-key:", rotation_interval: float = 3600.0,
                 ticket_lifetime: float = 7200.0, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if rotation_interval <= 0 or not 0 < ticket_lifetime <= MAX_TICKET_LIFETIME:
            raise ValueError("rotation_interval must be > 0 and ticket_lifetime in (0, 604800]")
        self.client = client
        self.prefix = prefix
        self.rotation_interval = rotation_interval
        self.keep = slots_to_keep(rotation_interval, ticket_lifetime)
        self._random_bytes = random_bytes

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 0.5, prefix: str = "keyless:ticket-key:",
                 rotation_interval: float = 3600.0, ticket_lifetime: float = 7200.0) -> RedisTicketKeyStore:
        """A store on a fresh client with short timeouts and no retries: a refresh that cannot reach
        Redis fails fast and the ring keeps the keys it has."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                      retry=Retry(NoBackoff(), 0))
        return cls(client, prefix=prefix, rotation_interval=rotation_interval, ticket_lifetime=ticket_lifetime)

    def __repr__(self) -> str:
        return f"<RedisTicketKeyStore prefix={self.prefix!r} every {self.rotation_interval}s>"

    def _name(self, slot: int) -> str:
        return f"{self.prefix}{slot}"

    def load(self, now: float) -> list[TicketKey]:
        current = slot_of(now, self.rotation_interval)
        # Expire once the slot is over and its last ticket has outlived its lifetime (+1 slot of margin).
        ttl = math.ceil((self.keep + 3) * self.rotation_interval)
        for slot in (current, current + 1):
            self.client.set(self._name(slot), self._random_bytes(80), nx=True, ex=ttl)
        slots = [current, current + 1, *range(current - 1, current - self.keep - 1, -1)]
        values = self.client.mget([self._name(s) for s in slots])
        keys: list[TicketKey] = []
        for slot, value in zip(slots, values, strict=True):
            if value is None:
                if slot == current:
                    raise RuntimeError("current ticket key vanished from Redis")
                continue
            if not isinstance(value, bytes):
                raise TypeError("the Redis client must not decode responses (ticket keys are binary)")
            try:
                keys.append(TicketKey.from_material(value))
            except ValueError:
                log.warning("ignoring malformed ticket key for slot %d in Redis", slot)
                if slot == current:
                    raise
        return keys

    def next_change(self, now: float) -> float:
        return (slot_of(now, self.rotation_interval) + 1) * self.rotation_interval
