"""Session tickets: SessionState codec, sealing/opening, rotation, key files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyless.tls.tickets import (
    KeyFileSource,
    RotatingKeySource,
    SessionState,
    TicketKey,
    TicketKeyRing,
    TicketTooLarge,
    load_key_file,
)

SECRET = bytes(range(1, 49))


def state(created_at: float = 1000.0, **changes: object) -> SessionState:
    fields: dict[str, object] = dict(
        version=0x0304, cipher_suite=0x1301, secret=SECRET[:32], created_at=created_at, age_add=123456,
        lifetime=7200, sni="example.com", alpn="h2", ems=True,
    )
    fields.update(changes)
    return SessionState(**fields)  # type: ignore[arg-type]


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- SessionState encoding --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        state(),
        state(sni=None, alpn=None),
        state(version=0x0303, cipher_suite=0xC02B, secret=SECRET, ems=False,
              client_certificates=(b"\x30\x01", b"x" * 3000)),
        state(created_at=1234567890.123456, age_add=0xFFFFFFFF, lifetime=604800),
    ],
)
def test_session_state_round_trip(value: SessionState) -> None:
    assert SessionState.from_bytes(value.to_bytes()) == value


def test_session_state_decoding_is_strict() -> None:
    good = state(client_certificates=(b"der",)).to_bytes()
    for cut in range(len(good)):
        with pytest.raises(ValueError):
            SessionState.from_bytes(good[:cut])
    with pytest.raises(ValueError):
        SessionState.from_bytes(good + b"\x00")
    with pytest.raises(ValueError):
        SessionState.from_bytes(b"\x02" + good[1:])  # unknown format version
    flags_at = 1 + 2 + 2 + 1 + 32 + 8 + 4 + 4
    with pytest.raises(ValueError):
        SessionState.from_bytes(good[:flags_at] + bytes((good[flags_at] | 0x80,)) + good[flags_at + 1 :])
    nan = bytearray(good)
    nan[38:46] = b"\x7f\xf8" + bytes(6)
    with pytest.raises(ValueError):
        SessionState.from_bytes(bytes(nan))


def test_session_state_validates_and_hides_secret() -> None:
    assert SECRET[:32].hex() not in repr(state()) and "secret" not in repr(state())
    with pytest.raises(ValueError):
        state(lifetime=604801)
    with pytest.raises(ValueError):
        state(secret=b"")


# ---- sealing and opening ---------------------------------------------------------------------------------


def test_seal_open_round_trip_and_layout() -> None:
    key = TicketKey.generate()
    ring = TicketKeyRing([key], now=Clock())
    ticket = ring.seal(state())
    assert ticket[:16] == key.name
    assert ring.open(ticket) == state()
    assert ring.seal(state()) != ticket  # fresh nonce every time


def test_bad_tickets_open_to_none() -> None:
    ring = TicketKeyRing([TicketKey.generate()], now=Clock())
    ticket = ring.seal(state())
    assert ring.open(b"") is None
    assert ring.open(ticket[:40]) is None
    for position in (0, 17, 30, len(ticket) - 1):  # name, nonce, ciphertext, tag
        tampered = bytearray(ticket)
        tampered[position] ^= 1
        assert ring.open(bytes(tampered)) is None
    other = TicketKeyRing([TicketKey.generate()], now=Clock())
    assert other.open(ticket) is None  # unknown key name
    same_name = TicketKeyRing([TicketKey(ticket[:16], os.urandom(32))], now=Clock())
    assert same_name.open(ticket) is None  # right name, wrong key


def test_expired_ticket_opens_to_none() -> None:
    clock = Clock(1000.0)
    ring = TicketKeyRing([TicketKey.generate()], now=clock)
    ticket = ring.seal(state(created_at=1000.0, lifetime=60))
    clock.now = 1060.0
    assert ring.open(ticket) is not None
    clock.now = 1060.5
    assert ring.open(ticket) is None


def test_rotation_newest_seals_old_keys_open_then_expire() -> None:
    clock = Clock(36000.0)  # start of a slot
    ring = TicketKeyRing.rotating(rotation_interval=3600, ticket_lifetime=7200, now=clock)
    first_name = ring.key_names[0]
    old_ticket = ring.seal(state(created_at=clock.now, lifetime=604800))
    clock.now += 3600  # next slot: a new key seals (once the owner's timer refreshed the ring)
    assert ring.refresh_due
    ring.refresh()
    new_ticket = ring.seal(state(created_at=clock.now, lifetime=604800))
    assert new_ticket[:16] != old_ticket[:16] and ring.key_names[0] != first_name
    assert ring.open(old_ticket) is not None and ring.open(new_ticket) is not None
    clock.now += 7199  # the old key is kept for the ticket lifetime after its slot ended
    assert ring.open(old_ticket) is not None
    clock.now += 1
    ring.refresh()
    assert ring.open(old_ticket) is None  # its key is gone
    assert ring.open(new_ticket) is not None


def test_rotating_source_publishes_next_key_early() -> None:
    source = RotatingKeySource(rotation_interval=100, ticket_lifetime=200)
    now_keys = source.load(1000.0)
    later_keys = source.load(1100.0)
    assert later_keys[0] in now_keys  # the key sealing in the next slot was already known
    assert now_keys[0] in later_keys  # and the previous one still opens
    assert len(source.load(5000.0)) == 2  # long gap: only current + next


def test_key_repr_hides_key() -> None:
    key = TicketKey.generate()
    ring = TicketKeyRing([key])
    assert key.key.hex() not in repr(key) + repr(ring)
    assert key.name.hex() in repr(key)


# ---- key files (nginx ssl_session_ticket_key format) ---------------------------------------------------------


def test_key_files(tmp_path: Path) -> None:
    newest, older = tmp_path / "new.key", tmp_path / "old.key"
    newest.write_bytes(os.urandom(80))
    older.write_bytes(os.urandom(48))
    ring = TicketKeyRing.from_files([newest, older], now=Clock())
    assert ring.key_names == [newest.read_bytes()[:16], older.read_bytes()[:16]]
    old_ring = TicketKeyRing.from_files([older], now=Clock())
    old_ticket = old_ring.seal(state())
    assert ring.open(old_ticket) == state()  # the older file's key still opens
    assert ring.seal(state())[:16] == newest.read_bytes()[:16]
    # The same file gives the same key in another process.
    assert TicketKeyRing.from_files([newest], now=Clock()).open(ring.seal(state())) == state()


def test_key_file_with_several_keys_and_bad_files(tmp_path: Path) -> None:
    multi = tmp_path / "multi.key"
    multi.write_bytes(os.urandom(160))
    assert len(load_key_file(multi)) == 2
    bad = tmp_path / "bad.key"
    bad.write_bytes(os.urandom(81))
    with pytest.raises(ValueError, match="multiple of 80") as info:
        KeyFileSource([bad])
    assert bad.read_bytes().hex() not in str(info.value)


def test_key_files_are_reread(tmp_path: Path) -> None:
    path = tmp_path / "ticket.key"
    path.write_bytes(os.urandom(80))
    clock = Clock()
    ring = TicketKeyRing.from_files([path], now=clock, refresh_interval=60)
    first = ring.key_names
    path.write_bytes(os.urandom(80))
    clock.now += 61
    ring.refresh()
    assert ring.key_names != first
    path.write_bytes(b"garbage")  # a broken deployment keeps the keys we have
    clock.now += 61
    ring.refresh()
    assert ring.open(ring.seal(state())) == state()


def test_oversized_session_is_refused_not_truncated() -> None:
    ring = TicketKeyRing([TicketKey.generate()], now=Clock())
    fits = state(client_certificates=(b"c" * 65000,))
    assert ring.open(ring.seal(fits)) == fits
    with pytest.raises(TicketTooLarge):
        ring.seal(state(client_certificates=(b"c" * 40000, b"d" * 40000)))


def test_key_name_clash_keeps_the_sealing_key() -> None:
    newest = TicketKey.generate()
    clash = TicketKey(newest.name, os.urandom(32))
    ring = TicketKeyRing([newest, clash], now=Clock())
    assert ring.open(ring.seal(state())) == state()


@settings(max_examples=200, deadline=None)
@given(
    version=st.integers(0, 0xFFFF), suite=st.integers(0, 0xFFFF), secret=st.binary(min_size=1, max_size=255),
    created_at=st.floats(allow_nan=False, allow_infinity=False), age_add=st.integers(0, 2**32 - 1),
    lifetime=st.integers(0, 604800), sni=st.none() | st.text("abcdefghijklmnopqrstuvwxyz.-0123456789", max_size=400),
    alpn=st.none() | st.text(max_size=30).filter(lambda t: len(t.encode("latin-1", "ignore")) == len(t)),
    ems=st.booleans(), chain=st.lists(st.binary(min_size=1, max_size=100), max_size=3),
)
def test_session_state_round_trip_property(version: int, suite: int, secret: bytes, created_at: float, age_add: int,
                                           lifetime: int, sni: str | None, alpn: str | None, ems: bool,
                                           chain: list[bytes]) -> None:
    value = SessionState(version, suite, secret, created_at, age_add, lifetime, sni, alpn, ems, tuple(chain))
    encoded = value.to_bytes()
    assert SessionState.from_bytes(encoded) == value
    with pytest.raises(ValueError):
        SessionState.from_bytes(encoded[:-1])


def test_long_host_name_fits() -> None:
    ring = TicketKeyRing([TicketKey.generate()], now=Clock())
    long_sni = ".".join(["a" * 60] * 8)  # 487 bytes: legal in SNI, longer than a DNS name
    assert ring.open(ring.seal(state(sni=long_sni))) == state(sni=long_sni)
