"""Key-server groups: one ``keyless.client.KeylessClient`` per distinct list of key servers.

Sites whose keys live on the same key servers share one client (one pool of pipelined connections,
one health checker); each site gets a ``RemoteKey`` from it. The group is ready while at least one of
its key servers answers a ping.
"""

from __future__ import annotations

import logging
import ssl

from cryptography import x509

from keyless.client import EjectionPolicy, EndpointStats, HedgePolicy, KeylessClient, RemoteKey, make_ssl_context
from keyless.edge.config import ConfigError, KeyServerTLS

log = logging.getLogger("keyless.edge.keyservers")


class ClientGroup:
    def __init__(self, servers: tuple[tuple[str, int], ...], tls: KeyServerTLS) -> None:
        try:
            context = make_ssl_context(tls.client_cert, tls.client_key, tls.ca)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                "key_server_tls",
                f"cannot use the client certificate/key or CA ({type(exc).__name__}: {exc})",
                "give PEM files: client_cert with its client_key, and the CA of the key servers",
            ) from exc
        self.servers = servers
        self.timeout = tls.timeout
        self.client = KeylessClient(
            list(servers),
            context,
            server_name=tls.server_name,
            timeout=tls.timeout,
            connect_timeout=min(tls.timeout, 5.0),
            health_interval=2.0,
            health_timeout=min(tls.timeout, 2.0),
            send_client_ip=tls.send_client_ip,
            hedge=HedgePolicy(
                enabled=tls.hedge_budget_percent > 0,
                min_delay=tls.hedge_delay_min,
                max_delay=tls.hedge_delay_max,
                budget_ratio=tls.hedge_budget_percent / 100,
            ),
            ejection=EjectionPolicy(
                consecutive_failures=tls.eject_after,
                base_ejection_time=tls.ejection_time,
                max_ejection_time=max(300.0, tls.ejection_time),
                slow_start=tls.ejection_time,
            ),
        )

    def __repr__(self) -> str:
        return f"<ClientGroup {','.join(f'{h}:{p}' for h, p in self.servers)}>"

    def remote_key(self, certificate: x509.Certificate) -> RemoteKey:
        return self.client.remote_key(certificate, timeout=self.timeout)

    async def ping_each(self) -> dict[str, float | None]:
        results = await self.client.ping()
        return {label: value if isinstance(value, float) else None for label, value in results.items()}

    def stats(self) -> list[EndpointStats]:
        """Per key server: hedged, hedge_won, ejected (keyless_edge_keyserver_*_total)."""
        return self.client.stats()

    async def close(self) -> None:
        await self.client.close()
