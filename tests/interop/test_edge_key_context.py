"""The edge tells the key server, with each key operation, the SNI the TLS client sent (tag 0x02) and, when
``key_server_tls.send_client_ip`` is set, the client's IP (tag 0x03).

A scripted key server (Python's own TLS server, decoding each request with the protocol codec) holds the site
key and records what arrives; the edge is a real process; the TLS client is ``openssl s_client``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from keyless.pki import DemoPKI
from keyless.protocol import ErrorCode, Message, Opcode, encode_message
from tests.client.scripted import ScriptedServer, start_scripted
from tests.edge.edgeproc import EdgeProcess
from tests.edge.support import LoopThread, OriginProcess
from tests.interop.test_edge_keyless import HOST, edge_config, s_client, wait_ready

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    from keyless.pki import create_demo_pki

    return create_demo_pki(tmp_path_factory.mktemp("pki"), HOST, site_keys=("ecdsa-p256",))


@pytest.fixture(scope="module")
def scripted(pki: DemoPKI) -> Iterator[ScriptedServer]:
    private = serialization.load_pem_private_key(pki.site_key("ecdsa-p256").read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    prehashed = {
        Opcode.ECDSA_SIGN_SHA256: hashes.SHA256(),
        Opcode.ECDSA_SIGN_SHA384: hashes.SHA384(),
        Opcode.ECDSA_SIGN_SHA512: hashes.SHA512(),
    }

    def answer(message: Message) -> bytes:
        if message.opcode == Opcode.PING:
            return encode_message(Message.pong(message.id, message.payload))
        algorithm = prehashed.get(Opcode(message.opcode))
        if algorithm is None or message.payload is None:
            return encode_message(Message.error(message.id, ErrorCode.BAD_OPCODE))
        signature = private.sign(message.payload, ec.ECDSA(utils.Prehashed(algorithm)))
        return encode_message(Message.response(message.id, signature))

    loop = LoopThread()
    server: ScriptedServer = loop.run(start_scripted(pki, answer))
    try:
        yield server
    finally:
        loop.run(server.close())
        loop.stop()


def signs(server: ScriptedServer) -> list[Message]:
    return [m for m in list(server.received) if m.opcode != Opcode.PING]


@pytest.mark.parametrize("send_client_ip", [True, False])
def test_key_server_sees_the_clients_sni_and_ip(
    pki: DemoPKI, scripted: ScriptedServer, tmp_path: Path, send_client_ip: bool
) -> None:
    with OriginProcess() as origin:
        config = edge_config(pki, origin.port, [f"127.0.0.1:{scripted.port}"])
        config["certificates"] = [
            {"names": [HOST, f"*.{HOST}"], "chain": str(pki.site_cert("ecdsa-p256")),
             "key_servers": [f"127.0.0.1:{scripted.port}"]},
        ]
        config["key_server_tls"]["send_client_ip"] = send_client_ip
        with EdgeProcess(config, tmp_path, name=f"edge-context-{send_client_ip}") as edge:
            wait_ready(edge)
            for version, sni in (("-tls1_3", f"www.{HOST}"), ("-tls1_2", f"shop.{HOST}")):
                before = len(signs(scripted))
                out = s_client(edge.port, pki, version, host=sni)
                assert "Verification: OK" in out or "Verify return code: 0 (ok)" in out, out
                new = signs(scripted)[before:]
                assert len(new) == 1, new  # one key operation per full handshake
                assert new[0].sni == sni.encode()
                expected_ip = ipaddress.ip_address("127.0.0.1").packed if send_client_ip else None
                assert new[0].client_ip == expected_ip
