"""Key-server groups for the edge: a ``keyless.client`` pool per list of key servers (filled in below)."""

from __future__ import annotations

from cryptography import x509

from keyless.edge.config import ConfigError, KeyServerTLS


class ClientGroup:
    def __init__(self, servers: tuple[tuple[str, int], ...], tls: KeyServerTLS) -> None:
        raise ConfigError("certificates", "keyless.client is not available in this build", "use key_file for now")

    def remote_key(self, certificate: x509.Certificate) -> object:
        raise NotImplementedError

    async def ping(self) -> bool:
        return False

    async def close(self) -> None:
        return None
