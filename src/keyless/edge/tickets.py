"""The edge's session-ticket keys: one ring shared by every worker (and, through key files, every machine).

Three sources, in order of preference in the configuration:

* ``tickets.key_files`` — files an operator distributes like nginx's ``ssl_session_ticket_key``
  (``openssl rand 80 > ticket.key``); every edge machine with the same files resumes every other's tickets;
* ``tickets.redis`` — keys in Redis, one per rotation slot (``keyless.tls.tickets.RedisTicketKeyStore``);
* otherwise keys derived from a *ticket master secret* the edge's parent process draws at start and hands
  to its workers through a pipe: each rotation slot's key is HKDF(master, slot), so all workers hold the
  same keys and rotate together with no further coordination. A restart draws a new secret (old tickets
  then fall back to full handshakes, as with nginx's default).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyless.edge.config import TicketConfig
from keyless.tls.tickets import TicketKey, TicketKeyRing, TicketKeySource, load_key_file, slot_of, slots_to_keep

MASTER_SECRET_LENGTH = 32


class DerivedKeySource:
    """One key per rotation slot, derived from a shared master secret (see the module docstring)."""

    def __init__(self, master_secret: bytes, rotation_interval: float, ticket_lifetime: float) -> None:
        if len(master_secret) != MASTER_SECRET_LENGTH:
            raise ValueError("the ticket master secret is 32 bytes")
        if rotation_interval <= 0:
            raise ValueError("rotation_interval must be positive")
        self._master = master_secret
        self.rotation_interval = rotation_interval
        self.keep = slots_to_keep(rotation_interval, ticket_lifetime)
        self._cache: dict[int, TicketKey] = {}

    def __repr__(self) -> str:
        return f"<DerivedKeySource every {self.rotation_interval}s, keeps {self.keep} past keys>"

    def _key(self, slot: int) -> TicketKey:
        key = self._cache.get(slot)
        if key is None:
            hkdf = HKDF(algorithm=hashes.SHA256(), length=80, salt=None, info=b"keyless edge ticket slot %d" % slot)
            key = self._cache[slot] = TicketKey.from_material(hkdf.derive(self._master))
        return key

    def load(self, now: float) -> list[TicketKey]:
        current = slot_of(now, self.rotation_interval)
        wanted = [current, current + 1, *range(current - 1, current - self.keep - 1, -1)]
        for slot in [s for s in self._cache if s not in wanted]:
            del self._cache[slot]
        return [self._key(slot) for slot in wanted]

    def next_change(self, now: float) -> float:
        return (slot_of(now, self.rotation_interval) + 1) * self.rotation_interval


def new_master_secret() -> bytes:
    return os.urandom(MASTER_SECRET_LENGTH)


def check_key_files(config: TicketConfig) -> None:
    """Fail at start-up (not at the first handshake) on a ticket key file of the wrong size."""
    for path in config.key_files:
        load_key_file(path)


def build_ticket_ring(
    config: TicketConfig, master_secret: bytes | None, *, now: Callable[[], float] | None = None
) -> TicketKeyRing | None:
    if not config.enabled:
        return None
    kwargs = {"now": now} if now is not None else {}
    source: TicketKeySource
    if config.key_files:
        from keyless.tls.tickets import KeyFileSource

        source = KeyFileSource(config.key_files)
        return TicketKeyRing(source, **kwargs)  # type: ignore[arg-type]
    if config.redis_url:
        from keyless.tls.tickets import RedisTicketKeyStore

        source = RedisTicketKeyStore.from_url(
            config.redis_url, rotation_interval=config.rotation, ticket_lifetime=config.lifetime
        )
        return TicketKeyRing(source, **kwargs)  # type: ignore[arg-type]
    secret = master_secret if master_secret is not None else new_master_secret()
    return TicketKeyRing(DerivedKeySource(secret, config.rotation, config.lifetime), **kwargs)  # type: ignore[arg-type]


__all__ = ["DerivedKeySource", "build_ticket_ring", "check_key_files", "new_master_secret"]
