"""Key schedule anchors (RFC 8446 §7.1) with published values, plus the transcript rules."""

from __future__ import annotations

import hashlib

from keyless.tls import key_schedule as ks
from keyless.tls.suites import TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384


def test_early_secret_and_derived_salt_without_psk() -> None:
    # HKDF-Extract(0, 0) and Derive-Secret(., "derived", "") for SHA-256 (RFC 8448 §3, tls13.xargs.org).
    early = ks.EarlySecret.create(TLS_AES_128_GCM_SHA256, None)
    assert early._secret.hex() == "33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a"
    assert early._next_salt().hex() == "6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba"
    assert ks.EarlySecret.without_psk(TLS_AES_128_GCM_SHA256)._secret == early._secret


def test_handshake_secret_from_a_known_shared_secret() -> None:
    shared = bytes.fromhex("df4a291baa1eb7cfa6934b29b474baad2697e29f1f920dcc77c8a0a088447624")
    handshake = ks.EarlySecret.create(TLS_AES_128_GCM_SHA256, None).handshake_secret(shared)
    assert handshake._secret.hex() == "fb9fc80689b3a5d02c33243bf69a1b1b20705588a794304a6e7120155edf149a"


def test_expand_label_multi_block_matches_single_block_prefix() -> None:
    secret = bytes(range(32))
    long = ks.hkdf_expand_label("sha256", secret, b"key", b"", 80)
    short = ks.hkdf_expand_label("sha256", secret, b"key", b"", 32)
    assert len(long) == 80
    # Different lengths are different HKDF labels, so the outputs must differ (the length is in the info).
    assert long[:32] != short


def test_transcript_message_hash_after_retry() -> None:
    transcript = ks.Transcript("sha384")
    hello1 = b"\x01\x00\x00\x02ab"
    transcript.update(hello1)
    transcript.restart_after_hello_retry()
    expected = hashlib.sha384(b"\xfe\x00\x00\x30" + hashlib.sha384(hello1).digest()).digest()
    assert transcript.digest() == expected
    assert transcript.digest_with(b"x") == hashlib.sha384(
        b"\xfe\x00\x00\x30" + hashlib.sha384(hello1).digest() + b"x"
    ).digest()
    assert transcript.digest() == expected  # digest_with leaves it untouched


def test_stages_never_show_secrets() -> None:
    early = ks.EarlySecret.create(TLS_AES_256_GCM_SHA384, b"\x01" * 48)
    assert "TLS_AES_256_GCM_SHA384" in repr(early)
    assert early._secret.hex() not in repr(early)


def test_certificate_verify_input() -> None:
    data = ks.certificate_verify_input(b"\xaa" * 32)
    assert data == b" " * 64 + b"TLS 1.3, server CertificateVerify" + b"\x00" + b"\xaa" * 32
