"""RSA key exchange: a correct premaster works; every malformed one (bad padding, wrong length, wrong
version, ciphertext ≥ n, key error) fails only at the client's Finished, with the same alert, after exactly
one decrypt operation — no earlier or different answer (RFC 5246 §7.4.7.1, Bleichenbacher/ROBOT)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest

from keyless.keys.base import KeyOperationError
from keyless.tls.alerts import AlertDescription
from keyless.tls.connection import TLSServerConnection
from keyless.tls.events import HandshakeComplete, KeyOperationRequired
from tests.support.control_flow import Step, first_difference, instruction_trace
from tests.tls.tls12_helpers import server_config
from tests.tls.tls12_raw_client import RSA_AES128, RSA_AES256, RawClient12

K = 256  # RSA-2048


def config():  # type: ignore[no-untyped-def]
    return server_config("rsa-2048", enable_rsa_key_exchange=True)


def pkcs1_block(
    premaster: bytes, *, header: bytes = b"\x00\x02", separator: bytes = b"\x00", padding_byte: int = 0x33
) -> bytes:
    ps_length = K - len(header) - len(separator) - len(premaster)
    return header + bytes((padding_byte,)) * ps_length + separator + premaster


def start(suite: int = RSA_AES128, **kwargs: object) -> RawClient12:
    client = RawClient12(TLSServerConnection(config()), suites=(suite,), **kwargs)  # type: ignore[arg-type]
    client.send_handshake(client.client_hello())
    flight = client.pump()
    assert flight.types() == [2, 11, 14]  # ServerHello, Certificate, ServerHelloDone: no ServerKeyExchange
    return client


def run_to_finished(client: RawClient12, *, ciphertext: bytes, client_premaster: bytes) -> tuple[list[object], ...]:
    """Send CKE, CCS, Finished one by one; return what the server sent after each."""
    client.send_handshake(
        bytes((16,)) + (len(ciphertext) + 2).to_bytes(3, "big") + len(ciphertext).to_bytes(2, "big") + ciphertext
    )
    after_cke = client.pump()
    client.derive(client_premaster)
    client.change_cipher_spec()
    after_ccs = client.pump()
    client.finished()
    after_finished = client.pump()
    return (
        [after_cke.handshake, after_cke.alerts, after_cke.ccs],
        [after_ccs.handshake, after_ccs.alerts, after_ccs.ccs],
        [after_finished.alerts, after_finished.ccs, after_finished.types()],
    )


@pytest.mark.parametrize("suite", [RSA_AES128, RSA_AES256])
def test_correct_premaster_completes(suite: int) -> None:
    client = start(suite)
    premaster = b"\x03\x03" + os.urandom(46)
    ciphertext = client.rsa_encrypt_block(pkcs1_block(premaster))
    _, _, (alerts, ccs, types) = run_to_finished(client, ciphertext=ciphertext, client_premaster=premaster)
    assert (alerts, ccs, types) == ([], 1, [20])
    assert any(isinstance(e, HandshakeComplete) for e in client.events)
    assert [op.kind for op in client.key_operations] == ["decrypt"]


GOOD_PREMASTER = b"\x03\x03" + bytes(range(46))


def _bad_cases() -> list[tuple[str, Callable[[RawClient12], bytes], bytes]]:
    """(name, ciphertext maker, the premaster a careless server would have derived)."""
    p = GOOD_PREMASTER
    return [
        ("block-type-1", lambda c: c.rsa_encrypt_block(pkcs1_block(p, header=b"\x00\x01")), p),
        ("first-byte-nonzero", lambda c: c.rsa_encrypt_block(pkcs1_block(p, header=b"\x01\x02")), p),
        ("no-separator", lambda c: c.rsa_encrypt_block(pkcs1_block(p, separator=b"\x07")), p),
        ("zero-in-padding", lambda c: c.rsa_encrypt_block(pkcs1_block(p)[:20] + b"\x00" + pkcs1_block(p)[21:]), p),
        ("premaster-47-bytes", lambda c: c.rsa_encrypt_block(pkcs1_block(p[:47])), p[:47] + b"\x00"),
        ("premaster-49-bytes", lambda c: c.rsa_encrypt_block(pkcs1_block(p + b"\x01")), p),
        ("wrong-version", lambda c: c.rsa_encrypt_block(pkcs1_block(b"\x03\x01" + p[2:])), b"\x03\x01" + p[2:]),
        ("ciphertext-equals-n", lambda c: c.rsa_public().public_numbers().n.to_bytes(K, "big"), p),
        ("ciphertext-all-ff", lambda c: b"\xff" * K, p),
        ("ciphertext-short", lambda c: c.rsa_encrypt_block(pkcs1_block(p))[1:], p),
        ("ciphertext-long", lambda c: b"\x00" + c.rsa_encrypt_block(pkcs1_block(p)), p),
        ("random-ciphertext", lambda c: os.urandom(K - 1) + b"\x01", p),
    ]


@pytest.mark.parametrize(
    ("name", "make_ciphertext", "careless_premaster"), _bad_cases(), ids=[c[0] for c in _bad_cases()]
)
def test_bad_premaster_fails_only_at_finished(
    name: str, make_ciphertext: Callable[[RawClient12], bytes], careless_premaster: bytes
) -> None:
    client = start()
    after_cke, after_ccs, after_finished = run_to_finished(
        client, ciphertext=make_ciphertext(client), client_premaster=careless_premaster
    )
    assert after_cke == [[], [], 0] and after_ccs == [[], [], 0], "the server answered before the Finished"
    assert after_finished == [[(2, AlertDescription.bad_record_mac)], 0, []]
    assert client.closed is not None and client.closed.alert_sent == AlertDescription.bad_record_mac
    assert len(client.key_operations) == 1 and client.key_operations[0].kind == "decrypt"


def test_key_server_error_fails_the_same_way() -> None:
    client = start(decrypt_result=lambda _c: KeyOperationError("key server timeout"))
    ciphertext = client.rsa_encrypt_block(pkcs1_block(GOOD_PREMASTER))
    after_cke, after_ccs, after_finished = run_to_finished(
        client, ciphertext=ciphertext, client_premaster=GOOD_PREMASTER
    )
    assert after_cke == [[], [], 0] and after_ccs == [[], [], 0]
    assert after_finished == [[(2, AlertDescription.bad_record_mac)], 0, []]


def test_key_returning_a_short_block_fails_the_same_way() -> None:
    client = start(decrypt_result=lambda _c: pkcs1_block(GOOD_PREMASTER)[1:])
    ciphertext = client.rsa_encrypt_block(pkcs1_block(GOOD_PREMASTER))
    _, _, after_finished = run_to_finished(client, ciphertext=ciphertext, client_premaster=GOOD_PREMASTER)
    assert after_finished == [[(2, AlertDescription.bad_record_mac)], 0, []]


def test_random_premaster_is_drawn_before_the_key_operation() -> None:
    draws: list[int] = []
    base = config()

    def recording_random(n: int) -> bytes:
        draws.append(n)
        return os.urandom(n)

    from dataclasses import replace

    conn = TLSServerConnection(replace(base, random_bytes=recording_random))
    client = RawClient12(conn, suites=(RSA_AES128,))
    client.send_handshake(client.client_hello())
    client.pump()
    client.decrypt_result = lambda _c: b"\x00" * K
    ciphertext = client.rsa_encrypt_block(pkcs1_block(GOOD_PREMASTER))
    client.send_handshake(bytes((16,)) + (K + 2).to_bytes(3, "big") + K.to_bytes(2, "big") + ciphertext)
    draws.clear()
    event = conn.next_event()
    assert isinstance(event, KeyOperationRequired) and event.kind == "decrypt"
    assert draws == [48], "the substitute premaster must exist before the key is asked"


# ---- one path through the engine's decrypt completion, whatever the block ---------------------------------
# Deterministic: the bytecode executed in our code from the decrypt result to the next event must not depend on
# the block (tests/support/control_flow.py). The time itself is measured by bench/premaster_timing.py.


def _paused_connection() -> tuple[TLSServerConnection, int]:
    client = RawClient12(TLSServerConnection(config()), suites=(RSA_AES128,))
    client.send_handshake(client.client_hello())
    client.pump()
    client.send_handshake(bytes((16,)) + (K + 2).to_bytes(3, "big") + K.to_bytes(2, "big") + bytes(K))
    event = client.conn.next_event()
    assert isinstance(event, KeyOperationRequired)
    return client.conn, event.op_id


def engine_paths_that_differ() -> list[str]:
    """How the completion of each block's decrypt differs from a good block's (empty: one path for all)."""
    rng = random.Random(5)
    good = [pkcs1_block(b"\x03\x03" + rng.randbytes(46), padding_byte=rng.randrange(1, 256)) for _ in range(4)]
    bad = [rng.randbytes(K) for _ in range(4)] + [b"\x00\x02" + rng.randbytes(K - 2) for _ in range(4)]
    bad += [pkcs1_block(b"\x03\x01" + rng.randbytes(46)), pkcs1_block(GOOD_PREMASTER, separator=b"\x01")]

    def completion(block: bytes) -> list[Step]:
        conn, op_id = _paused_connection()
        return instruction_trace(conn.complete_key_operation, op_id, block)

    reference = completion(good[0])
    assert reference, "nothing traced: the engine is not in a traced file"
    return [
        f"block {n}: {first_difference(reference, trace)}"
        for n, trace in enumerate(completion(block) for block in good + bad)
        if trace != reference
    ]


def test_engine_completion_runs_the_same_instructions_for_every_block() -> None:
    assert engine_paths_that_differ() == []


def test_engine_path_check_catches_an_early_exit_unpadding(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyless.tls import tls12_server
    from tests.tls.test_premaster_timing import leaky_unpad

    monkeypatch.setattr(tls12_server, "unpad_premaster", leaky_unpad)
    assert len(engine_paths_that_differ()) >= 10
