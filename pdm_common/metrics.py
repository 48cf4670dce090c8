"""Prometheus metrics shared by both services: the HTTP endpoint and the metric families they share.

Each service builds its metrics on its **own** ``CollectorRegistry`` (never prometheus-client's
global one), so two services — or two tests — in one process never collide. The endpoint binds
to 127.0.0.1 by default: on a gateway, metrics are scraped locally (node exporter textfile or a
local agent) or through an SSH/WireGuard tunnel, never exposed on the plant network.
"""

from __future__ import annotations

import platform
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from pdm_common import __version__
from pdm_common.errors import ConfigError
from pdm_common.logs import get_logger

__all__ = [
    "DEFAULT_METRICS_HOST",
    "IngestMetrics",
    "MetricsServer",
    "OutboxMetrics",
    "build_info",
    "start_metrics_server",
]

_log = get_logger(__name__)

DEFAULT_METRICS_HOST = "127.0.0.1"
_STOP_TIMEOUT_S = 5.0
"""Longest wait for the serving thread on shutdown; it finishes the request in flight."""


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """A running metrics endpoint; call :meth:`close` on shutdown."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """The scrape URL."""
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(_STOP_TIMEOUT_S)


def start_metrics_server(registry: CollectorRegistry, *, host: str = DEFAULT_METRICS_HOST,
                         port: int) -> MetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics`` from a daemon thread.

    Raises:
        ConfigError: the address cannot be bound (port in use, address not on this host).
    """
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port}: {exc}. Fix: choose a free [metrics] port or set enabled = false"
        ) from None
    bound = MetricsServer(host=host, port=server.server_port, _server=server, _thread=thread)
    _log.info("metrics.serving", url=bound.url)
    return bound


def build_info(registry: CollectorRegistry, namespace: str) -> Gauge:
    """``{namespace}_build_info{version, python}`` = 1: which release runs (join on it in queries).

    The usual Prometheus idiom for versions (e.g. ``prometheus_build_info``): a constant 1 whose
    labels carry the facts, so ``count by (version) (pdm_agent_build_info)`` shows a rollout.
    """
    gauge = Gauge("build_info", "The running release: version and Python (value 1)", ["version", "python"],
                  namespace=namespace, registry=registry)
    gauge.labels(version=__version__, python=platform.python_version()).set(1)
    return gauge


class IngestMetrics:
    """Messages in: received, valid, dead-lettered by reason (``ContractError.reason``)."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        self.received = Counter("messages_received", "MQTT messages received", ["channel"],
                                namespace=namespace, registry=registry)
        self.valid = Counter("messages_valid", "Messages that passed contract validation", ["channel"],
                             namespace=namespace, registry=registry)
        self.dead_lettered = Counter("messages_dead_lettered", "Messages refused and dead-lettered, by reason",
                                     ["reason"], namespace=namespace, registry=registry)


class OutboxMetrics:
    """Durable outbox: how many events wait and how old the oldest one is."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        self.depth = Gauge("outbox_depth", "Events waiting in the outbox", namespace=namespace, registry=registry)
        self.oldest_age = Gauge("outbox_oldest_age_seconds", "Age of the oldest event in the outbox (0 when empty)",
                                namespace=namespace, registry=registry)
        self.dropped = Counter("outbox_dropped", "Events dropped by the outbox size bound, by event type",
                               ["event"], namespace=namespace, registry=registry)

    def observe(self, depth: int, oldest_age_s: float | None) -> None:
        """Record the outbox state; ``oldest_age_s`` is None when it is empty."""
        self.depth.set(depth)
        self.oldest_age.set(oldest_age_s if oldest_age_s is not None else 0.0)
