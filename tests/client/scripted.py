"""A scripted key server for client tests: Python's own TLS server (asyncio + ssl) that decodes each
request with the protocol codec, records it, and answers whatever the test's ``answer`` function says."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from keyless.pki import DemoPKI
from keyless.protocol import NEED_DATA, Message, MessageDecoder, encode_message

Answerer = Callable[[Message], bytes | None]  # bytes to send back, None for no answer, b"" to drop the connection


@dataclass
class ScriptedServer:
    server: asyncio.Server
    received: list[Message] = field(default_factory=list)

    @property
    def port(self) -> int:
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def server_context(pki: DemoPKI) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.keyserver_cert, pki.keyserver_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def start_scripted(pki: DemoPKI, answer: Answerer) -> ScriptedServer:
    holder: list[ScriptedServer] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = MessageDecoder()
        try:
            while data := await reader.read(65536):
                decoder.receive_data(data)
                while (message := decoder.next_message()) is not NEED_DATA:
                    assert isinstance(message, Message)
                    holder[0].received.append(message)
                    reply = answer(message)
                    if reply == b"":  # the script says: drop the connection now
                        writer.transport.abort()
                        return
                    if reply is not None:
                        writer.write(reply)
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass  # the client went away, or the test closed the server
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context(pki))
    holder.append(ScriptedServer(server))
    return holder[0]


def error_answer(code: int) -> Answerer:
    return lambda m: encode_message(Message.error(m.id, code))
