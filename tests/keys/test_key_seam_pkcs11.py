"""The key seam over a real SoftHSM2 token: a ``Pkcs11KeyHandle`` is an ``AsyncPrivateKey`` that signs every
scheme it lists and refuses every other, and a TLS server completes real TLS 1.3 and 1.2 handshakes with a key
that lives only in the token, through the same seam a local or remote key uses."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from keyless.keys.ski import ski_of
from tests.keys.test_key_seam import check_seam
from tests.keys.test_pkcs11 import MODULE, SoftHSM, backend, softhsm, token_for_demo_pki

__all__ = ["softhsm"]  # the module-scoped token fixture of test_pkcs11, shared (skips there skip here)

pytestmark = pytest.mark.timeout(120)




def test_pkcs11_key_signs_every_scheme_it_lists_and_no_other(softhsm: SoftHSM) -> None:
    store, _ = softhsm.store(softhsm.uri())
    checked = 0
    for name, private in softhsm.keys.items():
        handle = store.find(ski_of(private.public_key()))
        assert isinstance(handle, backend.Pkcs11KeyHandle), name
        assert handle.offload  # every call blocks on the token
        check_seam(handle, private)
        checked += 1
    assert checked == len(softhsm.keys)


@pytest.mark.parametrize(("site", "version"), [("ecdsa-p256", ssl.TLSVersion.TLSv1_3),
                                               ("rsa-2048", ssl.TLSVersion.TLSv1_3),
                                               ("rsa-2048", ssl.TLSVersion.TLSv1_2)])
def test_tls_handshake_signs_with_a_key_that_lives_only_in_the_token(softhsm: SoftHSM, tmp_path: Path, site: str,
                                                                      version: ssl.TLSVersion) -> None:
    from keyless.keys.loader import KeySource, load_keys
    from keyless.keys.pkcs11_uri import parse_pkcs11_uri
    from keyless.tls.asyncio_adapter import TLSStream, start_tls_server
    from keyless.tls.config import CertifiedKey, ServerConfig, static_certificate

    pki, _, uri = token_for_demo_pki(tmp_path, f"seam-{site}-{version.name}")
    assert not pki.site_key(site).exists()  # the key is only in the token
    report = load_keys([KeySource("uri", Path(MODULE), parse_pkcs11_uri(uri))])
    chain = tuple(x509.load_pem_x509_certificates(pki.site_cert(site).read_bytes()))
    handle = report.store.find(ski_of(chain[0].public_key()))
    assert isinstance(handle, backend.Pkcs11KeyHandle)
    config = ServerConfig(certificate_callback=static_certificate(CertifiedKey(chain=chain, key=handle)))

    async def echo(stream: TLSStream) -> None:
        while data := await stream.read():
            await stream.write(data)

    async def main() -> tuple[bytes, str | None]:
        server = await start_tls_server(echo, "127.0.0.1", 0, config)
        port = server.sockets[0].getsockname()[1]
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.minimum_version = context.maximum_version = version
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                          server_hostname=pki.hostname)
            writer.write(b"signed on the token")
            got = await reader.readexactly(len(b"signed on the token"))
            negotiated = writer.get_extra_info("ssl_object").version()
            writer.close()
            await writer.wait_closed()
            return got, negotiated
        finally:
            server.close()
            await server.wait_closed()

    got, negotiated = asyncio.run(main())
    assert got == b"signed on the token"
    assert negotiated == {ssl.TLSVersion.TLSv1_3: "TLSv1.3", ssl.TLSVersion.TLSv1_2: "TLSv1.2"}[version]
