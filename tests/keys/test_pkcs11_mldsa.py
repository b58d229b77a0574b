"""ML-DSA and PKCS#11: a module without ML-DSA mechanisms (SoftHSM2 2.6 has none) is reported clearly, never
crashed on, and a key server takes its ML-DSA keys from files next to the token's classical keys."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import mldsa

from keyless.keys.mldsa import external_mu
from keyless.keys.ski import ski_of
from keyless.pki import create_demo_pki
from keyless.protocol import Opcode
from tests.keys.test_pkcs11 import MODULE, PIN, TOKEN, SoftHSM, backend, pkcs11, token_for_demo_pki
from tests.keys.test_pkcs11 import softhsm as softhsm  # the fixture (a real SoftHSM2 token)
from tests.support.keyserver import start_keyserver

pytestmark = pytest.mark.timeout(120)


def test_softhsm2_is_seen_to_offer_no_mldsa(softhsm: SoftHSM) -> None:
    with pkcs11.lib(MODULE).get_token(token_label=TOKEN).open(user_pin=PIN) as session:
        assert backend.module_offers_mldsa(session) is False


def test_an_mldsa_key_on_a_token_is_skipped_with_the_reason_and_the_fix() -> None:
    without = backend.mldsa_key_problem(False)
    assert "offers no ML-DSA mechanism (CKM_ML_DSA)" in without and "private_key_dirs" in without
    with_mechanism = backend.mldsa_key_problem(True)
    assert "external μ" in with_mechanism and "private_key_dirs" in with_mechanism


def test_key_server_signs_mldsa_from_files_next_to_a_token_without_mldsa(softhsm: SoftHSM, tmp_path: Path) -> None:
    pki, _, uri = token_for_demo_pki(tmp_path, "keyless-pq")
    pq = create_demo_pki(tmp_path / "pq", site_keys=(), pq=True)
    public = x509.load_pem_x509_certificate(pq.site_cert("mldsa65").read_bytes()).public_key()
    assert isinstance(public, mldsa.MLDSA65PublicKey)
    message = b"\x20" * 64 + b"TLS 1.3, server CertificateVerify\x00" + bytes(48)
    with start_keyserver(pki, tmp_path, private_key_dirs=[str(pq.keys_dir)], private_key_stores=[{"uri": uri}]) as ks:
        assert ks.keys == 3 + 3, ks.log()

        async def sign() -> bytes:
            from keyless.client import KeylessClient, make_ssl_context
            from keyless.client.core import Request

            context = make_ssl_context(pki.edge_cert, pki.edge_key, pki.ca)
            async with KeylessClient([f"127.0.0.1:{ks.port}"], context, server_name="localhost") as client:
                request = Request(Opcode.MLDSA65_SIGN_MU, external_mu(public, message), ski_of(public))
                return await client.call(request, timeout=60)

        public.verify(asyncio.run(sign()), message)
        assert ks.sign_count() == 1
