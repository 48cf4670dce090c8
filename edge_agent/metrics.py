"""Prometheus metrics of the edge agent, on the agent's own registry.

Every name is documented in docs/operations.md (metrics table). The hot path uses children bound
once here (``m.telemetry_received.inc()``), never a per-message ``labels()`` lookup. Per-asset series
are not kept as label children at all: :class:`AssetView` is a snapshot the main loop refreshes once
a second and a custom collector reads at scrape time, so their number is bounded by the assets the
engine holds (its ``max_assets`` cap) and a vanished asset's series vanish with it.

What the app updates, and where::

    m = AgentMetrics()
    m.telemetry_received.inc(); m.telemetry_valid.inc()     # every telemetry message
    m.ingest.dead_lettered.labels(reason=err.reason).inc()   # ContractError.reason (rare: labels() is fine)
    m.dropped.labels(reason="queue_full").inc()              # QoS 0 telemetry beyond the inbound bound
    m.detector_latency.observe(seconds)                      # per sample
    m.set_open_alerts({Severity.MAJOR: 2})                   # after each alert event
    m.outbox.observe(depth, oldest_age_s)                     # once a second
    m.assets.publish({...}, known)                            # once a second, per-asset gauges
    server = start_metrics_server(m.registry, host=s.metrics.host, port=s.metrics.port)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pdm_common.contracts import Severity
from pdm_common.metrics import IngestMetrics, OutboxMetrics, build_info

__all__ = ["CONDITIONS", "DROP_REASONS", "NAMESPACE", "AgentMetrics", "AssetGauges", "AssetView"]

NAMESPACE = "pdm_agent"

_DETECTOR_BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)
"""HalfSpaceTrees score+learn costs ~36 µs a sample on the measuring machine (reference/river-notes.md);
a Pi 4 is assumed several times slower. Buckets span 50 µs to 1 s so both normal cost and a
regression (or a stalled sample) land in distinct buckets."""

_CHECKPOINT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""A checkpoint round serialises ~0.5 ms per changed asset and writes ~70 KiB each: 10 assets take
milliseconds, 1,000 take about a second on the dev machine and several on an SD card."""

DROP_REASONS = ("queue_full", "shutdown")
"""Why inbound telemetry was dropped unprocessed: only QoS 0 (QoS 1 is never acknowledged unprocessed)."""

CONDITIONS = ("backpressure", "outbox_disk", "checkpoint_disk", "journal_disk", "publish_refused")
"""Degraded states the agent reports as ``pdm_agent_degraded{condition}`` and in its gateway status."""


@dataclass(frozen=True, slots=True)
class AssetGauges:
    """One asset's per-asset gauges (a row of :class:`AssetView`)."""

    health_score: float | None
    warmup_ratio: float | None
    last_seen_s: float | None


class AssetView(Collector):
    """Per-asset gauges from a snapshot the main loop swaps in; read by the scrape thread."""

    def __init__(self) -> None:
        self._rows: Mapping[tuple[str, str], AssetGauges] = {}

    def publish(self, rows: Mapping[tuple[str, str], AssetGauges]) -> None:
        """Replace the snapshot (one reference swap: the scrape thread sees the old or the new one)."""
        self._rows = dict(rows)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rows = self._rows
        families = (
            ("asset_health_score", "Asset health 0..1 from its latest state (1 = normal)", "health_score"),
            ("asset_warmup_ratio", "Model warm-up progress per asset, 0..1 (1 = alerting enabled)", "warmup_ratio"),
            ("asset_last_seen_timestamp_seconds", "When the agent last received telemetry of the asset (Unix time)",
             "last_seen_s"),
        )
        for name, doc, attr in families:
            family = GaugeMetricFamily(f"{NAMESPACE}_{name}", doc, labels=["site", "asset"])
            for (site, asset), row in rows.items():
                value = getattr(row, attr)
                if value is not None:
                    family.add_metric([site, asset], float(value))
            yield family


class AgentMetrics:
    """Every metric the agent exports; one instance per agent process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, ns = self.registry, NAMESPACE
        build_info(r, ns)
        self.ingest = IngestMetrics(r, ns)
        self.outbox = OutboxMetrics(r, ns)
        self.telemetry_received = self.ingest.received.labels(channel="telemetry")
        self.telemetry_valid = self.ingest.valid.labels(channel="telemetry")
        self.command_received = self.ingest.received.labels(channel="cmd")
        self.command_valid = self.ingest.valid.labels(channel="cmd")
        self.unknown_received = self.ingest.received.labels(channel="unknown")
        self.detector_latency = Histogram(
            "detector_latency_seconds", "Time to score and learn one telemetry sample",
            buckets=_DETECTOR_BUCKETS_S, namespace=ns, registry=r,
        )
        self.dropped = Counter("messages_dropped", "Inbound messages dropped unprocessed, by reason (QoS 0 only)",
                               ["reason"], namespace=ns, registry=r)
        self.processing_failed = Counter(
            "processing_failures", "Valid messages whose processing raised (dead-lettered as processing_failed)",
            namespace=ns, registry=r)
        self.inbound_depth = Gauge("inbound_queue_depth", "Messages received and waiting for the main loop",
                                   namespace=ns, registry=r)
        self.open_alerts = Gauge("open_alerts", "Alerts currently open, by severity", ["severity"],
                                 namespace=ns, registry=r)
        self.mqtt_connected = Gauge("mqtt_connected", "1 while connected to the broker", namespace=ns, registry=r)
        self.uplink_connected = Gauge(
            "uplink_connected", "1 while the gateway broker's bridge to the cloud is up, 0 while it is down, "
            "as its link notification says (NaN until one arrives: no such bridge)", namespace=ns, registry=r)
        self.uplink_connected.set(float("nan"))  # neither up nor down: an alert on == 0 must not fire
        self.outbox_write_failures = Counter(
            "outbox_write_failures", "Failed attempts to write the outbox (disk full, read-only, I/O error)",
            namespace=ns, registry=r)
        self.outbox_in_memory = Gauge(
            "outbox_pending_in_memory", "Accepted events held in memory because the disk refuses writes",
            namespace=ns, registry=r)
        self.outbox_salvaged = Counter("outbox_salvaged", "Rows copied out of a corrupt outbox file",
                                       namespace=ns, registry=r)
        self.outbox_lost = Counter("outbox_lost", "Rows of a corrupt outbox file that could not be read",
                                   namespace=ns, registry=r)
        self.publish_refused = Counter("publish_refused", "Publishes the broker refused (PUBACK reason >= 0x80)",
                                       ["reason"], namespace=ns, registry=r)
        self.checkpoint_seconds = Histogram(
            "checkpoint_seconds", "Duration of a checkpoint round (serialise and write the changed assets)",
            buckets=_CHECKPOINT_BUCKETS_S, namespace=ns, registry=r,
        )
        self.checkpoint_failures = Counter(
            "checkpoint_failures", "Checkpoint saves that failed and asset restores that were refused",
            ["operation"], namespace=ns, registry=r)
        self.checkpoint_assets = Gauge("checkpoint_assets_pending",
                                       "Changed assets not yet in a written checkpoint", namespace=ns, registry=r)
        self.journal_rows = Gauge(
            "journal_rows", "Acknowledged telemetry samples no checkpoint covers yet (replayed after a crash)",
            namespace=ns, registry=r)
        self.journal_replayed = Counter(
            "journal_replayed", "Journaled samples replayed into the models at start (after a crash)",
            namespace=ns, registry=r)
        self.degraded = Gauge("degraded", "1 while a degraded condition holds (see docs/operations.md)",
                              ["condition"], namespace=ns, registry=r)
        self.assets = AssetView()
        r.register(self.assets)
        for reason in DROP_REASONS:
            self.dropped.labels(reason=reason)
        for operation in ("save", "restore"):
            self.checkpoint_failures.labels(operation=operation)
        self.conditions = {c: self.degraded.labels(condition=c) for c in CONDITIONS}
        for child in self.conditions.values():
            child.set(0)
        self.set_open_alerts({})

    def set_open_alerts(self, counts: Mapping[Severity, int]) -> None:
        """Set the open-alert gauge for every severity (missing ones become 0, so none goes stale)."""
        for severity in Severity:
            self.open_alerts.labels(severity=severity.value).set(counts.get(severity, 0))
