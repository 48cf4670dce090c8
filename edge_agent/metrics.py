"""Prometheus metrics of the edge agent, on the agent's own registry.

What the app updates, and where::

    m = AgentMetrics()
    m.ingest.received.labels(channel="telemetry").inc()      # every inbound MQTT message
    m.ingest.valid.labels(channel="telemetry").inc()         # parsed into a contract model
    m.ingest.dead_lettered.labels(reason=err.reason).inc()   # ContractError.reason
    with m.detector_latency.time(): detector.score(...)       # per sample
    m.set_open_alerts({Severity.MAJOR: 2})                   # after each lifecycle step
    m.outbox.observe(depth, oldest_age_s)                     # after each outbox write/ack
    m.warmup.labels(asset="hp-0042").set(0.4)                 # samples_seen / warm-up samples
    m.mqtt_connected.set(1)                                   # on connect / disconnect
    server = start_metrics_server(m.registry, host=s.metrics.host, port=s.metrics.port)
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Gauge, Histogram

from pdm_common.contracts import Severity
from pdm_common.metrics import IngestMetrics, OutboxMetrics, build_info

__all__ = ["NAMESPACE", "AgentMetrics"]

NAMESPACE = "pdm_agent"

_DETECTOR_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)
"""HalfSpaceTrees score+learn costs ~36 µs a sample on the measuring machine (reference/river-notes.md);
a Pi 4 is assumed several times slower. Buckets span 50 µs to 1 s so both normal cost and a
regression (or a stalled sample) land in distinct buckets."""


class AgentMetrics:
    """Every metric the agent exports; one instance per agent process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        build_info(self.registry, NAMESPACE)
        self.ingest = IngestMetrics(self.registry, NAMESPACE)
        self.outbox = OutboxMetrics(self.registry, NAMESPACE)
        self.detector_latency = Histogram(
            "detector_latency_seconds", "Time to score and learn one telemetry sample",
            buckets=_DETECTOR_BUCKETS_S, namespace=NAMESPACE, registry=self.registry,
        )
        self.open_alerts = Gauge("open_alerts", "Alerts currently open, by severity", ["severity"],
                                 namespace=NAMESPACE, registry=self.registry)
        self.warmup = Gauge("model_warmup_ratio", "Model warm-up progress per asset, 0..1 (1 = alerting enabled)",
                            ["asset"], namespace=NAMESPACE, registry=self.registry)
        self.mqtt_connected = Gauge("mqtt_connected", "1 while connected to the broker",
                                    namespace=NAMESPACE, registry=self.registry)
        self.set_open_alerts({})

    def set_open_alerts(self, counts: Mapping[Severity, int]) -> None:
        """Set the open-alert gauge for every severity (missing ones become 0, so none goes stale)."""
        for severity in Severity:
            self.open_alerts.labels(severity=severity.value).set(counts.get(severity, 0))

    def forget_asset(self, asset: str) -> None:
        """Drop the per-asset series of an asset removed from the registry (bounds label cardinality)."""
        self.warmup.remove(asset)
