"""An overloaded key server sheds: with ``shed_queue_time`` set, a request that would wait longer than
that in its queue is answered 0xC0 (overloaded) at once, without being done; the client sends it to the
other key server and never back to the one that shed it. Real key-server processes, one RSA thread
each, and a burst of pipelined RSA signatures far larger than a short bound lets one server queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyless.client import HedgePolicy, KeylessClient, OverloadedError, make_ssl_context
from keyless.keys.schemes import SignatureScheme
from keyless.pki import DemoPKI
from tests.support.keyserver import start_keyserver

SCHEME = SignatureScheme.RSA_PSS_RSAE_SHA256
BURST = 1500
WARM = 20


def rsa_cert(pki: DemoPKI) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.site_cert("rsa-2048").read_bytes())


def client_for(pki: DemoPKI, ports: list[int]) -> KeylessClient:
    # No hedging: every operation is done by exactly one server, so the servers' counts add up to the
    # operations answered. The timeout only decides failure on a slow machine.
    return KeylessClient([f"127.0.0.1:{p}" for p in ports], make_ssl_context(pki.edge_cert, pki.edge_key, pki.ca),
                         server_name="localhost", health_interval=0, timeout=120,
                         hedge=HedgePolicy(enabled=False))


def verify(cert: x509.Certificate, message: bytes, signature: bytes) -> None:
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, message, padding.PSS(padding.MGF1(hashes.SHA256()), hashes.SHA256().digest_size),
                  hashes.SHA256())


def test_an_overloaded_key_server_answers_overloaded_at_once(fault_pki: DemoPKI, tmp_path: Path) -> None:
    cert = rsa_cert(fault_pki)
    with start_keyserver(fault_pki, tmp_path, rsa_threads=1, shed_queue_time=0.05) as server:
        async def main() -> list[bytes | BaseException]:
            async with client_for(fault_pki, [server.port]) as client:
                key = client.remote_key(cert)
                await key.sign(SCHEME, b"warm-up")  # the server learns its service time
                return await asyncio.gather(*(key.sign(SCHEME, b"m%d" % i) for i in range(BURST)),
                                            return_exceptions=True)

        before = server.sign_count()
        outcomes = asyncio.run(main())
        done = server.sign_count() - before
    shed = [o for o in outcomes if isinstance(o, OverloadedError)]
    signed = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, bytes)]
    assert len(shed) + len(signed) == BURST, [o for o in outcomes if not isinstance(o, bytes | OverloadedError)][:3]
    assert shed, "a burst this deep behind one RSA thread must be shed"
    assert signed, "the work within the bound is done"
    assert done == len(signed) + 1  # the warm-up and the signed ones: a shed request was not done
    for i, signature in signed[:20]:
        verify(cert, b"m%d" % i, signature)


def test_shed_operations_move_to_the_other_key_server_and_never_back(fault_pki: DemoPKI, tmp_path: Path) -> None:
    cert = rsa_cert(fault_pki)
    with (
        start_keyserver(fault_pki, tmp_path, rsa_threads=1, shed_queue_time=0.05) as shedding,
        start_keyserver(fault_pki, tmp_path) as roomy,
    ):
        async def main() -> tuple[list[bytes | BaseException], int]:
            async with client_for(fault_pki, [shedding.port, roomy.port]) as client:
                key = client.remote_key(cert)
                await asyncio.gather(*(key.sign(SCHEME, b"warm %d" % i) for i in range(WARM)))
                outcomes = await asyncio.gather(*(key.sign(SCHEME, b"m%d" % i) for i in range(BURST)),
                                                return_exceptions=True)
                shed_endpoint = next(e for e in client.endpoints if e.port == shedding.port)
                return outcomes, shed_endpoint.shed

        before = shedding.sign_count() + roomy.sign_count()
        outcomes, shed = asyncio.run(main())
        done = shedding.sign_count() + roomy.sign_count() - before
    failures = [o for o in outcomes if not isinstance(o, bytes)]
    assert failures == []  # every shed operation was done by the other server
    assert shed > 0, "the shedding server must have shed part of the burst"
    assert done == WARM + BURST  # each operation done exactly once: never retried onto the server that shed it
