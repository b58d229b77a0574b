"""The edge's Prometheus metrics.

One ``EdgeMetrics`` per process. With ``--workers N`` every worker writes its values into the
prometheus-client multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor before a
worker imports prometheus-client) and the supervisor serves their merge (``keyless.runtime.metrics``),
so one scrape sees the whole edge. Key-server health and certificate expiry are the serving process's
own view (``KeyServerGauges``, ``CertificateExpiry``): they are not per worker.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from keyless.edge.config import EdgeConfig
from keyless.tls.alerts import AlertDescription

log = logging.getLogger("keyless.edge")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_TLS_VERSIONS = {0x0304: "TLSv1.3", 0x0303: "TLSv1.2"}


def version_name(version: int) -> str:
    return _TLS_VERSIONS.get(version, f"0x{version:04x}")


def alert_name(description: int) -> str:
    try:
        return AlertDescription(description).name.lower()
    except ValueError:
        return str(description)


class ProxyObserver:
    """What the proxies report; ``EdgeMetrics`` implements it, and this no-op base serves tests."""

    def origin_error(self, kind: str) -> None:
        pass

    def response_sent(self, status: int) -> None:
        pass

    def transferred(self, received: int, sent: int) -> None:
        pass


class EdgeMetrics(ProxyObserver):
    """Every metric the edge exports. Label values come from small fixed sets (no client input)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.handshakes = Counter(
            "keyless_edge_handshakes",
            "Completed TLS handshakes by protocol version, cipher suite, resumption and key-exchange group",
            ["version", "cipher", "resumed", "group"],
            registry=r,
        )
        self.handshake_failures = Counter(
            "keyless_edge_handshake_failures", "Handshakes that did not complete, by reason", ["reason"], registry=r
        )
        self.handshake_seconds = Histogram(
            "keyless_edge_handshake_duration_seconds",
            "Time from the first client byte to handshake completion",
            ["resumed"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.key_operations = Counter(
            "keyless_edge_key_operations",
            "Private-key operations the edge asked for (sign or decrypt), by result",
            ["kind", "result"],
            registry=r,
        )
        self.key_operation_seconds = Histogram(
            "keyless_edge_key_operation_duration_seconds",
            "Latency of private-key operations as the edge sees it",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.alerts_sent = Counter(
            "keyless_edge_alerts_sent", "TLS alerts sent, by description", ["description"], registry=r
        )
        self.alerts_received = Counter(
            "keyless_edge_alerts_received", "TLS alerts received, by description", ["description"], registry=r
        )
        self.active_connections = Gauge(
            "keyless_edge_active_connections", "Open client connections", registry=r, multiprocess_mode="livesum"
        )
        self.bytes_received = Counter(
            "keyless_edge_bytes_received", "Application bytes received from clients", registry=r
        )
        self.bytes_sent = Counter("keyless_edge_bytes_sent", "Application bytes sent to clients", registry=r)
        self.origin_errors = Counter(
            "keyless_edge_origin_errors", "Failures talking to the origin, by kind", ["kind"], registry=r
        )
        self.http_responses = Counter(
            "keyless_edge_http_responses", "HTTP responses sent to clients, by status class", ["code"], registry=r
        )
        self.worker_connections = Gauge(
            "keyless_edge_worker_connections",
            "Connections accepted by this process (one sample per worker pid with --workers)",
            registry=r,
            multiprocess_mode="all",
        )
        self.client_auth = Counter(
            "keyless_edge_client_auth",
            "Client certificates: verified, resumed (identity from the session), or why refused",
            ["result"],
            registry=r,
        )
        self.connections_refused = Counter(
            "keyless_edge_connections_refused",
            "Connections closed at once because max_connections was reached",
            registry=r,
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: label lookup costs more than the increment on a hot path."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def client_auth_result(self, result: str) -> None:
        self.child(self.client_auth, result).inc()

    # The proxies call these (they also run without metrics in unit tests: see NullObserver).
    def origin_error(self, kind: str) -> None:
        self.child(self.origin_errors, kind).inc()

    def response_sent(self, status: int) -> None:
        self.child(self.http_responses, f"{status // 100}xx").inc()

    def transferred(self, received: int, sent: int) -> None:
        if received:
            self.bytes_received.inc(received)
        if sent:
            self.bytes_sent.inc(sent)


class KeyServerGauges(Collector):
    """``keyless_edge_keyserver_up{keyserver}`` and ``keyless_edge_keyserver_ping_seconds{keyserver}``
    from the last readiness round (every key server of every site pinged)."""

    def __init__(self, servers: Callable[[], dict[str, float | None]]) -> None:
        self.servers = servers

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("keyless_edge_keyserver_up", "1 while the key server answers pings, 0 otherwise",
                               labels=["keyserver"])
        rtt = GaugeMetricFamily("keyless_edge_keyserver_ping_seconds",
                                "Round trip of the last ping the key server answered", labels=["keyserver"])
        for label, seconds in sorted(self.servers().items()):
            up.add_metric([label], 0.0 if seconds is None else 1.0)
            if seconds is not None:
                rtt.add_metric([label], seconds)
        yield up
        yield rtt


class KeyServerResilience(Collector):
    """Per key server, from the clients' own counters: ``keyless_edge_keyserver_hedged_total`` (its
    operations also sent elsewhere because it was slow), ``..._hedge_won_total`` (hedges it answered
    first), ``..._ejected_total`` and ``keyless_edge_keyserver_ejected`` (1 while out of rotation)."""

    def __init__(self, stats: Callable[[], Iterable[Any]]) -> None:
        self.stats = stats  # EndpointStats of every key-server client

    def collect(self) -> Iterable[Metric]:
        labels = ["keyserver"]
        hedged = CounterMetricFamily("keyless_edge_keyserver_hedged", "Operations hedged to another key server "
                                     "because this one had not answered within its hedge delay", labels=labels)
        won = CounterMetricFamily("keyless_edge_keyserver_hedge_won", "Hedges this key server answered first",
                                  labels=labels)
        ejected = CounterMetricFamily("keyless_edge_keyserver_ejected", "Times this key server was ejected",
                                      labels=labels)
        out = GaugeMetricFamily("keyless_edge_keyserver_out_of_rotation",
                                "1 while the key server is ejected or down", labels=labels)
        for stat in self.stats():
            hedged.add_metric([stat.label], stat.hedged)
            won.add_metric([stat.label], stat.hedge_won)
            ejected.add_metric([stat.label], stat.ejected)
            out.add_metric([stat.label], 0.0 if stat.healthy else 1.0)
        yield from (hedged, won, ejected, out)


SiteCertificates = Callable[[], Iterable[tuple[str, x509.Certificate]]]


class CertificateExpiry(Collector):
    """``keyless_edge_certificate_expiry_seconds{site, serial}``: seconds until each site's leaf expires
    (negative once it has), computed at scrape time."""

    def __init__(self, certificates: SiteCertificates) -> None:
        self.certificates = certificates

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("keyless_edge_certificate_expiry_seconds",
                                   "Seconds until the site certificate's notAfter (negative: expired)",
                                   labels=["site", "serial"])
        now = datetime.datetime.now(datetime.UTC)
        for site, leaf in self.certificates():
            family.add_metric([site, f"{leaf.serial_number:x}"], (leaf.not_valid_after_utc - now).total_seconds())
        yield family


def config_certificates(config: EdgeConfig) -> list[tuple[str, x509.Certificate]]:
    """The leaf of every configured site, read from its chain file (unreadable ones are left out: start-up
    has already refused them, and a reload keeps the running set)."""
    leaves = []
    for site in config.sites:
        try:
            chain = x509.load_pem_x509_certificates(site.chain.read_bytes())
        except (OSError, ValueError):
            continue
        if chain:
            leaves.append((site.label, chain[0]))
    return leaves


def warn_about_validity(certificates: Iterable[tuple[str, x509.Certificate]]) -> None:
    """A site certificate that expires within 14 days. An expired or not-yet-valid one is served (clients
    decide) but never silently: ``edge.config.check_material`` names it, with the file and the key, once."""
    now = datetime.datetime.now(datetime.UTC)
    for site, leaf in certificates:
        if leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc < now + datetime.timedelta(days=14):
            log.warning("certificate of site %s expires on %s", site, leaf.not_valid_after_utc.isoformat())


def in_multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


__all__ = [
    "CertificateExpiry",
    "EdgeMetrics",
    "KeyServerGauges",
    "KeyServerResilience",
    "ProxyObserver",
    "alert_name",
    "config_certificates",
    "in_multiprocess_mode",
    "version_name",
    "warn_about_validity",
]
