"""Prometheus metrics of the cloud bridge, on the bridge's own registry.

What feeds each family, and where::

    m = BridgeMetrics()
    adapter = MeteredAdapter(adapter, m, progress)   # every desk attempt: counted and timed here only
    m.watch_intake(consumer.stats)                   # alerts by outcome, read at scrape time
    m.outbox.observe(depth, oldest_age_s)            # refreshed by the service loop
    m.observe_circuits({"zendesk-eu": "open"})       # refreshed by the service loop
    server = start_metrics_server(m.registry, host="127.0.0.1", port=9109)

Intake counters are not counted twice: :class:`~cloud_bridge.consumer.ConsumerStats` already
counts them, so a collector exports those numbers when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from cloud_bridge.circuit import CircuitState
from cloud_bridge.consumer import ConsumerStats
from cloud_bridge.desks.base import Delivery, DeskAdapter
from cloud_bridge.errors import PermanentDeliveryError, RetryableDeliveryError
from pdm_common.metrics import OutboxMetrics, build_info
from pdm_common.systemd import Heartbeat

__all__ = ["INTAKE_OUTCOMES", "NAMESPACE", "BridgeMetrics", "DeliveryOutcome", "MeteredAdapter"]

NAMESPACE = "pdm_bridge"

_DELIVERY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
"""Desk API round trips: tens of ms to the per-request timeout cap (DeskSettings.timeout_s <= 120 s)."""

INTAKE_OUTCOMES = ("received", "accepted", "stale", "invalid", "store_failed")
"""The fields of ConsumerStats exported as ``pdm_bridge_alerts_total{outcome}``."""


class DeliveryOutcome(StrEnum):
    """How one delivery attempt to a desk ended."""

    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


class _IntakeCollector(Collector):
    """Exports the consumer's own counters at scrape time."""

    def __init__(self, stats: ConsumerStats) -> None:
        self._stats = stats

    def describe(self) -> Iterable[CounterMetricFamily]:
        yield self._family()

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = self._family()
        for outcome in INTAKE_OUTCOMES:
            family.add_metric([outcome], getattr(self._stats, outcome))
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(f"{NAMESPACE}_alerts", "Alert messages from MQTT by outcome "
                                   "(received = accepted + stale + invalid + store_failed)", labels=["outcome"])


class BridgeMetrics:
    """Every metric the bridge exports; one instance per bridge process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        build_info(self.registry, NAMESPACE)
        self.outbox = OutboxMetrics(self.registry, NAMESPACE)
        self.delivery_attempts = Counter("delivery_attempts", "Delivery attempts per desk and outcome",
                                         ["desk", "outcome"], namespace=NAMESPACE, registry=self.registry)
        self.delivery_failures = Counter("delivery_failures", "Failed delivery attempts per desk (retryable or "
                                         "permanent)", ["desk"], namespace=NAMESPACE, registry=self.registry)
        self.delivery_latency = Histogram("delivery_latency_seconds", "Desk request round trip", ["desk"],
                                          buckets=_DELIVERY_BUCKETS_S, namespace=NAMESPACE, registry=self.registry)
        self.circuit_open = Gauge("circuit_open", "1 while the desk's circuit breaker is open", ["desk"],
                                  namespace=NAMESPACE, registry=self.registry)

    def record_delivery(self, *, desk: str, outcome: DeliveryOutcome, duration_s: float) -> None:
        """Count one attempt, its failure if it failed, and its round-trip time."""
        self.delivery_attempts.labels(desk=desk, outcome=outcome.value).inc()
        if outcome is not DeliveryOutcome.DELIVERED:
            self.delivery_failures.labels(desk=desk).inc()
        self.delivery_latency.labels(desk=desk).observe(duration_s)

    def watch_intake(self, stats: ConsumerStats) -> None:
        """Export ``stats`` as ``pdm_bridge_alerts_total{outcome}`` (call once per registry)."""
        self.registry.register(_IntakeCollector(stats))

    def observe_circuits(self, states: Mapping[str, str]) -> None:
        """Set ``circuit_open`` per desk from ``{desk: CircuitState value}``; half-open counts as closed."""
        for desk, state in states.items():
            self.circuit_open.labels(desk=desk).set(1 if state == CircuitState.OPEN.value else 0)


class MeteredAdapter(DeskAdapter):
    """Wraps a desk adapter: the one place where delivery attempts are counted and timed.

    Also touches ``progress`` when an attempt starts and when it ends, which is what the service's
    watchdog reads to tell a stuck delivery pool from an idle one. The wrapped adapter keeps its
    own HTTP client; this wrapper shares it (``close`` closes it once).

    Args:
        inner: the adapter that talks to the desk.
        metrics: where attempts, failures and round-trip times go.
        progress: touched at the start and end of every attempt.
    """

    def __init__(self, inner: DeskAdapter, metrics: BridgeMetrics, progress: Heartbeat) -> None:
        # No super().__init__(): that would open a second connection pool to the same desk.
        self.name = inner.name
        self.settings = inner.settings
        self.client = inner.client
        self.accepts_attachments = inner.accepts_attachments
        self._inner = inner
        self._metrics = metrics
        self._progress = progress

    def deliver(self, delivery: Delivery) -> str | None:
        """Deliver through the wrapped adapter, recording the outcome and the round trip."""
        self._progress.touch()
        started = time.monotonic()
        try:
            ref = self._inner.deliver(delivery)
        except RetryableDeliveryError:
            self._record(DeliveryOutcome.RETRYABLE, started)
            raise
        except PermanentDeliveryError:
            self._record(DeliveryOutcome.PERMANENT, started)
            raise
        self._record(DeliveryOutcome.DELIVERED, started)
        return ref

    def _record(self, outcome: DeliveryOutcome, started: float) -> None:
        self._metrics.record_delivery(desk=self.name, outcome=outcome, duration_s=time.monotonic() - started)
        self._progress.touch()
