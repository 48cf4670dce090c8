"""Prometheus metrics of the cloud bridge, on the bridge's own registry (documented in docs/operations.md).

What feeds each family, and where::

    m = BridgeMetrics()
    adapter = MeteredAdapter(adapter, m, progress)   # every desk attempt: counted and timed here only
    m.watch_intake(consumer.stats)                   # received, outcomes, refusals by reason: read at scrape
    m.observe_outbox(stats)                          # depth/age overall and per desk, dead letters, refused
    m.observe_circuits({"zendesk-eu": "open"})       # refreshed by the service loop
    m.observe_salvage(report)                        # once, when a corrupt outbox file was salvaged
    server = start_metrics_server(m.registry, host="127.0.0.1", port=9109)

Intake counters are not counted twice: :class:`~cloud_bridge.consumer.ConsumerStats` already counts
them, so a collector exports those numbers when Prometheus scrapes. The outcomes sum to received:
``pdm_bridge_alerts_received_total == sum(pdm_bridge_alert_outcomes_total)``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from cloud_bridge.circuit import CircuitState
from cloud_bridge.consumer import ConsumerStats
from cloud_bridge.desks.base import Delivery, DeskAdapter, PollResult
from cloud_bridge.errors import DeliveryError, DeskConfigError, RetryableDeliveryError
from cloud_bridge.outbox import OutboxStats
from cloud_bridge.outbox_salvage import SalvageReport
from pdm_common.metrics import OutboxMetrics, build_info
from pdm_common.systemd import Heartbeat

__all__ = ["INTAKE_OUTCOMES", "NAMESPACE", "BridgeMetrics", "DeliveryOutcome", "MeteredAdapter"]

NAMESPACE = "pdm_bridge"

_DELIVERY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
"""Desk API round trips: tens of ms to the per-request timeout cap (DeskSettings.timeout_s <= 120 s)."""

INTAKE_OUTCOMES = ("accepted", "stale", "refused", "store_failed")
"""The outcomes of ConsumerStats exported as ``pdm_bridge_alert_outcomes_total{outcome}``."""


class DeliveryOutcome:
    """How one delivery attempt to a desk ended (label values of ``delivery_attempts_total``)."""

    DELIVERED = "delivered"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    CONFIG_ERROR = "config_error"


class _IntakeCollector(Collector):
    """Exports the consumer's own counters at scrape time."""

    def __init__(self, stats: ConsumerStats) -> None:
        self._stats = stats

    def describe(self) -> Iterable[CounterMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterable[CounterMetricFamily]:
        received, outcomes, refused = self._families()
        received.add_metric([], self._stats.received)
        for outcome in INTAKE_OUTCOMES:
            outcomes.add_metric([outcome], getattr(self._stats, outcome))
        for reason, n in sorted(self._stats.refused_by_reason.items()):
            refused.add_metric([reason], n)
        yield from (received, outcomes, refused)

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily, CounterMetricFamily]:
        return (
            CounterMetricFamily(f"{NAMESPACE}_alerts_received", "Alert messages received from MQTT (each broker "
                                "delivery once; a redelivered message counts again)"),
            CounterMetricFamily(f"{NAMESPACE}_alert_outcomes", "How each received alert message ended; the "
                                "outcomes sum to alerts_received", labels=["outcome"]),
            CounterMetricFamily(f"{NAMESPACE}_alerts_refused", "Alert messages refused and kept in the outbox's "
                                "refused list, by reason", labels=["reason"]),
        )


class BridgeMetrics:
    """Every metric the bridge exports; one instance per bridge process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, ns = self.registry, NAMESPACE
        build_info(r, ns)
        self.outbox = OutboxMetrics(r, ns)
        self.desk_depth = Gauge("outbox_desk_depth", "Events waiting in the outbox, per desk", ["desk"],
                                namespace=ns, registry=r)
        self.desk_oldest_age = Gauge("outbox_desk_oldest_age_seconds", "Age of the oldest waiting event, per desk "
                                     "(0 when none)", ["desk"], namespace=ns, registry=r)
        self.dead_letters = Gauge("outbox_dead_letters", "Events in the dead-letter table", namespace=ns, registry=r)
        self._dropped_seen = 0
        self.gaps_skipped = Counter("outbox_gaps_skipped", "Events delivered without lower event_seqs of their alert "
                                    "that did not arrive within outbox.gap_wait_s", namespace=ns, registry=r)
        self._gaps_seen = 0
        self.refused_kept = Gauge("outbox_refused", "Refused messages kept in the outbox", namespace=ns, registry=r)
        self.salvaged = Counter("outbox_salvaged_rows", "Rows read back from a corrupt outbox file, by table",
                                ["table"], namespace=ns, registry=r)
        self.lost = Counter("outbox_lost_rows", "Rows of a corrupt outbox file that could not be read (upper bound)",
                            namespace=ns, registry=r)
        self.corrupt_files = Counter("outbox_corrupt_files", "Corrupt outbox files moved aside at start-up",
                                     namespace=ns, registry=r)
        self.delivery_attempts = Counter("delivery_attempts", "Delivery attempts per desk and outcome",
                                         ["desk", "outcome"], namespace=ns, registry=r)
        self.delivery_failures = Counter("delivery_failures", "Failed delivery attempts per desk and reason "
                                         "(http_503, timeout, tls_verify_failed, ...)", ["desk", "reason"],
                                         namespace=ns, registry=r)
        self.delivery_latency = Histogram("delivery_latency_seconds", "Desk request round trip", ["desk"],
                                          buckets=_DELIVERY_BUCKETS_S, namespace=ns, registry=r)
        self.circuit_open = Gauge("circuit_open", "1 while the desk's circuit breaker is open", ["desk"],
                                  namespace=ns, registry=r)
        self.commands = Counter("commands_sent", "Signed commands sent to the edge for desk changes, by desk and "
                                "command", ["desk", "command"], namespace=ns, registry=r)
        self.sync_polls = Counter("sync_polls", "Two-way sync polls per desk and outcome (ok, failed)",
                                  ["desk", "outcome"], namespace=ns, registry=r)
        self.sla_notes = Counter("sla_notes", "SLA warnings posted to desks, by outcome (posted, failed)",
                                 ["desk", "outcome"], namespace=ns, registry=r)

    def record_delivery(self, *, desk: str, outcome: str, duration_s: float, reason: str | None = None) -> None:
        """Count one attempt, its failure (by reason) if it failed, and its round-trip time."""
        self.delivery_attempts.labels(desk=desk, outcome=outcome).inc()
        if outcome != DeliveryOutcome.DELIVERED:
            self.delivery_failures.labels(desk=desk, reason=reason or outcome).inc()
        self.delivery_latency.labels(desk=desk).observe(duration_s)

    def watch_intake(self, stats: ConsumerStats) -> None:
        """Export ``stats`` (call once per registry)."""
        self.registry.register(_IntakeCollector(stats))

    def observe_outbox(self, stats: OutboxStats, desks: Iterable[str] = ()) -> None:
        """Set the outbox gauges: overall, per desk (desks with nothing queued read 0), dead letters, refused."""
        self.outbox.observe(stats.depth, stats.oldest_age_s if stats.depth else None)
        for desk in {*desks, *stats.per_desk}:
            depth, age = stats.per_desk.get(desk, (0, 0.0))
            self.desk_depth.labels(desk=desk).set(depth)
            self.desk_oldest_age.labels(desk=desk).set(age)
        self.dead_letters.set(stats.dead_letters)
        self.refused_kept.set(stats.refused)
        # The outbox keeps the running total; the counter follows it (only ``updated`` is ever dropped).
        if stats.dropped > self._dropped_seen:
            self.outbox.dropped.labels(event="updated").inc(stats.dropped - self._dropped_seen)
            self._dropped_seen = stats.dropped
        if stats.gaps_skipped > self._gaps_seen:
            self.gaps_skipped.inc(stats.gaps_skipped - self._gaps_seen)
            self._gaps_seen = stats.gaps_skipped

    def observe_salvage(self, report: SalvageReport) -> None:
        """Count a corrupt outbox file and what was salvaged from it and lost."""
        self.corrupt_files.inc()
        for table, (_columns, rows) in report.rows.items():
            self.salvaged.labels(table=table).inc(len(rows))
        self.lost.inc(report.unreadable)

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
        self.inner = inner
        self._metrics = metrics
        self._progress = progress

    def deliver(self, delivery: Delivery) -> str | None:
        """Deliver through the wrapped adapter, recording the outcome and the round trip."""
        self._progress.touch()
        started = time.monotonic()
        try:
            ref = self.inner.deliver(delivery)
        except DeliveryError as exc:
            outcome = (DeliveryOutcome.CONFIG_ERROR if isinstance(exc, DeskConfigError)
                       else DeliveryOutcome.RETRYABLE if isinstance(exc, RetryableDeliveryError)
                       else DeliveryOutcome.PERMANENT)
            self._record(outcome, started, exc.reason)
            raise
        self._record(DeliveryOutcome.DELIVERED, started, None)
        return ref

    def post_note(self, alert_id: str, ticket_ref: str, text: str, marker: str, *, maybe_landed: bool,
                  now: float) -> None:
        """Post through the wrapped adapter."""
        self.inner.post_note(alert_id, ticket_ref, text, marker, maybe_landed=maybe_landed, now=now)

    def poll_changes(self, cursor: str | None, *, now: float) -> PollResult:
        """Poll through the wrapped adapter."""
        return self.inner.poll_changes(cursor, now=now)

    def probe(self) -> str:
        """Probe through the wrapped adapter."""
        return self.inner.probe()

    def _record(self, outcome: str, started: float, reason: str | None) -> None:
        self._metrics.record_delivery(desk=self.name, outcome=outcome, duration_s=time.monotonic() - started,
                                      reason=reason)
        self._progress.touch()

