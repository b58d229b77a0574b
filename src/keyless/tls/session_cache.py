"""TLS 1.2 session-ID resumption (RFC 5246 §7.4.1.2): where a server keeps sessions by their ID.

``SessionCache`` is the interface the TLS 1.2 handshake uses; ``MemorySessionCache`` is a bounded LRU with
expiry for one process; ``RedisSessionCache`` shares sessions between processes, storing each one sealed
under the ticket key ring so the master secret never sits in Redis in the clear.

A cache entry is only a hint: the handshake still checks version, cipher suite, extended master secret and
SNI against the new ClientHello, and anything missing or stale is simply a full handshake.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from keyless.tls.tickets import SessionState, TicketKeyRing

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

MAX_SESSION_ID_LENGTH = 32  # RFC 5246 §7.4.1.2: opaque SessionID<0..32>


class SessionCache(Protocol):
    def get(self, session_id: bytes) -> SessionState | None: ...

    def put(self, session_id: bytes, state: SessionState) -> None: ...

    def remove(self, session_id: bytes) -> None: ...


def _usable_id(session_id: bytes) -> bool:
    return 0 < len(session_id) <= MAX_SESSION_ID_LENGTH


class MemorySessionCache:
    """At most ``max_entries`` sessions, least recently used evicted first; an entry expires at
    ``created_at + lifetime`` of its state (and never later than ``max_lifetime`` after insertion)."""

    def __init__(self, max_entries: int = 10000, *, max_lifetime: float = 7200.0,
                 now: Callable[[], float] = time.time) -> None:
        if max_entries < 1 or max_lifetime <= 0:
            raise ValueError("max_entries must be >= 1 and max_lifetime > 0")
        self.max_entries = max_entries
        self.max_lifetime = max_lifetime
        self._now = now
        self._entries: OrderedDict[bytes, tuple[float, SessionState]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:  # sessions (and their secrets) never appear here
        return f"<MemorySessionCache {len(self._entries)}/{self.max_entries}>"

    def get(self, session_id: bytes) -> SessionState | None:
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        expires_at, state = entry
        if self._now() >= expires_at:
            del self._entries[session_id]
            return None
        self._entries.move_to_end(session_id)
        return state

    def put(self, session_id: bytes, state: SessionState) -> None:
        if not _usable_id(session_id):
            return
        now = self._now()
        expires_at = min(state.created_at + state.lifetime, now + self.max_lifetime)
        if expires_at <= now:
            return
        entries = self._entries
        entries[session_id] = (expires_at, state)
        entries.move_to_end(session_id)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def remove(self, session_id: bytes) -> None:
        self._entries.pop(session_id, None)


class RedisSessionCache:
    """Sessions shared through Redis, sealed with ``ring`` (a ``TicketKeyRing`` every process shares).

    Redis errors are logged and treated as a miss: a cache outage costs full handshakes, never failures.
    The client should have short timeouts (the TLS 1.2 handshake waits on ``get``).
    """

    def __init__(self, client: redis.Redis, ring: TicketKeyRing, *, prefix: str = "keyless:session:",
                 max_lifetime: float = 7200.0, now: Callable[[], float] = time.time) -> None:
        self.client = client
        self.ring = ring
        self.prefix = prefix.encode()
        self.max_lifetime = max_lifetime
        self._now = now

    def __repr__(self) -> str:
        return f"<RedisSessionCache prefix={self.prefix!r}>"

    def get(self, session_id: bytes) -> SessionState | None:
        if not _usable_id(session_id):
            return None
        try:
            sealed = self.client.get(self.prefix + session_id)
        except Exception as exc:
            log.warning("session cache lookup failed: %s", type(exc).__name__)
            return None
        if not isinstance(sealed, bytes):
            return None
        return self.ring.open(sealed)

    def put(self, session_id: bytes, state: SessionState) -> None:
        if not _usable_id(session_id):
            return
        ttl = int(min(state.created_at + state.lifetime - self._now(), self.max_lifetime))
        if ttl <= 0:
            return
        try:
            self.client.set(self.prefix + session_id, self.ring.seal(state), ex=ttl)
        except Exception as exc:
            log.warning("session cache store failed: %s", type(exc).__name__)

    def remove(self, session_id: bytes) -> None:
        try:
            self.client.delete(self.prefix + session_id)
        except Exception as exc:
            log.warning("session cache delete failed: %s", type(exc).__name__)
