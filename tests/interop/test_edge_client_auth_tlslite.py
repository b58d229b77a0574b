"""Issue 12 §2: a client CertificateVerify that does not verify (tlslite-ng signs with a key that is not the
certificate's) is refused with decrypt_error, in TLS 1.3 and 1.2, and counted as bad_signature."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.edge.certs import SitePKI, make_pki
from tests.edge.client_pki import ClientPKI, make_client_pki
from tests.edge.edgeproc import EdgeProcess
from tests.edge.test_client_auth_edge import RawOrigin, edge_config

DECRYPT_ERROR = 51


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SitePKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> ClientPKI:
    return make_client_pki(tmp_path_factory.mktemp("clients"))


@pytest.fixture(scope="module")
def edge(pki: SitePKI, clients: ClientPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    origin = RawOrigin()
    try:
        with EdgeProcess(edge_config(pki, clients, origin.port), tmp_path_factory.mktemp("edge")) as process:
            yield process
    finally:
        origin.close()


def tlslite_get(edge: EdgeProcess, clients: ClientPKI, identity: str, version: tuple[int, int]) -> bytes:
    """One GET over tlslite-ng with ``identity``'s chain and key; the response bytes."""
    from tlslite import HandshakeSettings, TLSConnection, X509CertChain, parsePEMKey

    chain = X509CertChain()
    chain.parsePemList(clients.cert(identity).read_text())
    key = parsePEMKey(clients.key(identity).read_text(), private=True)
    settings = HandshakeSettings()
    settings.minVersion = settings.maxVersion = version
    # tlslite-ng 0.8.2 compresses its client Certificate when its own ClientHello offered compress_certificate
    # (RFC 8879 lets a client compress only what the CertificateRequest asks for, and ours does not).
    settings.certificate_compression_send = settings.certificate_compression_receive = []
    tls = TLSConnection(socket.create_connection(("127.0.0.1", edge.port), timeout=30))
    try:
        tls.handshakeClientCert(chain, key, settings=settings, serverName="required.edge.test")
        tls.write(b"GET / HTTP/1.1\r\nHost: required.edge.test\r\nConnection: close\r\n\r\n")
        response = b""
        while True:
            data = tls.read()
            if not data:
                return response
            response += data
    finally:
        tls.close()


@pytest.mark.parametrize("version", [(3, 4), (3, 3)], ids=["1.3", "1.2"])
def test_bad_certificate_verify_signature_is_decrypt_error(
    edge: EdgeProcess, clients: ClientPKI, version: tuple[int, int]
) -> None:
    from tlslite.errors import TLSRemoteAlert

    before = edge.metric("keyless_edge_client_auth_total", result="bad_signature")
    alerts_before = edge.metric("keyless_edge_alerts_sent_total", description="decrypt_error")
    try:
        tlslite_get(edge, clients, "mismatch", version)
    except TLSRemoteAlert as alert:
        assert alert.description == DECRYPT_ERROR
    except OSError:
        # TLS 1.3: tlslite writes its Finished (or the request) after the CertificateVerify the edge already
        # refused; the edge's close can reset the socket before tlslite reads the alert. The edge's own
        # counters below say which alert it sent.
        pass
    else:
        pytest.fail("the edge accepted a CertificateVerify made with the wrong key")
    deadline = time.monotonic() + 10
    while edge.metric("keyless_edge_alerts_sent_total", description="decrypt_error") < alerts_before + 1:
        assert time.monotonic() < deadline, "the edge sent no decrypt_error alert"
        time.sleep(0.05)
    assert edge.metric("keyless_edge_client_auth_total", result="bad_signature") == before + 1


@pytest.mark.parametrize("version", [(3, 4), (3, 3)], ids=["1.3", "1.2"])
def test_the_right_key_is_accepted(edge: EdgeProcess, clients: ClientPKI, version: tuple[int, int]) -> None:
    response = tlslite_get(edge, clients, "bob", version)
    assert response.startswith(b"HTTP/1.1 200") and b"x-client-cert-subject: CN=bob" in response, response
