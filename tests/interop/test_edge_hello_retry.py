"""Issue 12 §1 item 3 through a real edge: after a HelloRetryRequest, a second ClientHello naming another
site is refused (illegal_parameter) before any key operation, and an unchanged one is signed for the name
of the first — what the key server sees is always the certificate's name.

The edge is a real process, the key server a scripted one that records every request, the client the
hand-driven TLS 1.3 client of tests/tls/conformance_client.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyless.pki import DemoPKI
from keyless.tls.extensions import ExtensionType as Ext
from tests.client.scripted import ScriptedServer
from tests.edge.edgeproc import EdgeProcess
from tests.edge.support import OriginProcess
from tests.interop.test_edge_key_context import pki, scripted, signs  # noqa: F401 - fixtures reused
from tests.interop.test_edge_keyless import HOST, edge_config, wait_ready
from tests.tls.conformance_client import (
    X25519,
    KeyShares,
    RawClient,
    ServerAlert,
    Tls13Handshake,
    key_share,
    sni,
    tls13_hello,
)

pytestmark = pytest.mark.timeout(120)
KEYS = KeyShares()


@pytest.fixture(scope="module")
def edge_port(pki: DemoPKI, scripted: ScriptedServer,  # noqa: F811 - the imported fixtures
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with OriginProcess() as origin:
        config = edge_config(pki, origin.port, [f"127.0.0.1:{scripted.port}"])
        config["certificates"] = [
            {"names": [HOST, f"*.{HOST}"], "chain": str(pki.site_cert("ecdsa-p256")),
             "key_servers": [f"127.0.0.1:{scripted.port}"]},
        ]
        with EdgeProcess(config, tmp_path_factory.mktemp("edge"), name="edge-hello-retry") as edge:
            wait_ready(edge)
            yield edge.port


def after_retry(port: int, second_name: bytes) -> str:
    first = tls13_hello(KEYS, name=f"www.{HOST}".encode()).with_extension(Ext.key_share, key_share([]))
    second = first.with_extension(Ext.key_share, key_share([(X25519, KEYS.public(X25519))])).with_extension(
        Ext.server_name, sni(second_name))
    with RawClient(port) as client:
        hs = Tls13Handshake(client, KEYS)
        try:
            hs.send_hello(first)
            assert hs.read_server_hello()[0] is True
            hs.send_hello(second)
            hs.read_server_hello()
            hs.read_server_flight()  # through the server's Finished: CertificateVerify was signed
            return "signed"
        except ServerAlert as alert:
            return alert.name


@pytest.mark.parametrize("second_name", [f"shop.{HOST}", HOST, "other.example"])
def test_an_sni_change_after_hello_retry_is_refused_before_the_key_server(
    edge_port: int, scripted: ScriptedServer, second_name: str  # noqa: F811
) -> None:
    before = len(signs(scripted))
    assert after_retry(edge_port, second_name.encode()) == "illegal_parameter"
    assert signs(scripted)[before:] == []


def test_an_unchanged_second_hello_is_signed_for_the_first_name(
    edge_port: int, scripted: ScriptedServer  # noqa: F811
) -> None:
    before = len(signs(scripted))
    assert after_retry(edge_port, f"www.{HOST}".encode()) == "signed"
    new = signs(scripted)[before:]
    assert len(new) == 1 and new[0].sni == f"www.{HOST}".encode()
