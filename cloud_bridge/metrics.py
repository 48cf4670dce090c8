"""Prometheus metrics of the cloud bridge, on the bridge's own registry.

What the app updates, and where::

    m = BridgeMetrics()
    m.ingest.received.labels(channel="alert").inc()                   # every inbound alert message
    m.ingest.valid.labels(channel="alert").inc()
    m.ingest.dead_lettered.labels(reason=err.reason).inc()
    m.outbox.observe(depth, oldest_age_s)
    m.record_delivery(desk="zendesk-eu", outcome=DeliveryOutcome.RETRYABLE, duration_s=0.8)
    m.circuit_open.labels(desk="zendesk-eu").set(1)                   # breaker state changes
    server = start_metrics_server(m.registry, host="127.0.0.1", port=9109)
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pdm_common.metrics import IngestMetrics, OutboxMetrics

__all__ = ["NAMESPACE", "BridgeMetrics", "DeliveryOutcome"]

NAMESPACE = "pdm_bridge"

_DELIVERY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
"""Desk API round trips: tens of ms to the per-request timeout cap (DeskSettings.timeout_s <= 120 s)."""


class DeliveryOutcome(StrEnum):
    """How one delivery attempt to a desk ended."""

    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


class BridgeMetrics:
    """Every metric the bridge exports; one instance per bridge process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.ingest = IngestMetrics(self.registry, NAMESPACE)
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
