"""Wiring of the cloud bridge: MQTT intake → outbox → delivery loop → desks, plus SLA promise checks.

``BridgeApp(settings).start()`` connects everything; ``stop()`` stops intake first, then lets in-flight
deliveries finish (bounded by ``delivery.shutdown_grace_s``). ``drain(timeout_s)`` waits until the
outbox is empty, for demos and tests. Counters for metrics are plain attributes: ``consumer.stats``,
``dispatcher.stats``, ``outbox_stats()``, ``sla_warnings``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from cloud_bridge.config import BridgeSettings, DeskKind, DeskSettings
from cloud_bridge.consumer import AlertConsumer
from cloud_bridge.delivery import Dispatcher
from cloud_bridge.desks.base import DeskAdapter
from cloud_bridge.desks.jsm import JsmAdapter
from cloud_bridge.desks.pagerduty import PagerDutyAdapter
from cloud_bridge.desks.servicenow import ServiceNowAdapter
from cloud_bridge.desks.webhook import WebhookAdapter
from cloud_bridge.desks.zendesk import ZendeskAdapter
from cloud_bridge.errors import OutboxError
from cloud_bridge.fault_actions import load_fault_actions
from cloud_bridge.outbox import Outbox, OutboxStats, open_postgres, open_sqlite
from cloud_bridge.promises import SlaWarning, due_warnings
from cloud_bridge.registry import RegistryFile
from cloud_bridge.ticket import MappingContext, Ticket, map_alert
from cloud_bridge.urgency import CalendarPolicy
from pdm_common.contracts import AlertEvent
from pdm_common.logs import get_logger
from pdm_common.mqtt import MqttClient
from pdm_common.topics import AssetChannel, Topics

__all__ = ["BridgeApp", "make_adapter", "open_outbox"]

_log = get_logger(__name__)

_ADAPTERS: dict[DeskKind, type[DeskAdapter]] = {
    DeskKind.WEBHOOK: WebhookAdapter,
    DeskKind.PAGERDUTY: PagerDutyAdapter,
    DeskKind.SERVICENOW: ServiceNowAdapter,
    DeskKind.JSM: JsmAdapter,
    DeskKind.ZENDESK: ZendeskAdapter,
}


def make_adapter(name: str, settings: DeskSettings) -> DeskAdapter:
    """The adapter for a configured desk."""
    return _ADAPTERS[settings.kind](name, settings)


def open_outbox(settings: BridgeSettings) -> Outbox:
    """Open the configured outbox backend.

    Raises:
        OutboxError: the database cannot be opened.
    """
    o = settings.outbox
    if o.backend == "postgres":
        dsn = o.resolved_dsn()
        if dsn is None:
            raise OutboxError("outbox.backend = postgres needs outbox.dsn or outbox.dsn_file")
        return open_postgres(dsn, max_events=o.max_events)
    return open_sqlite(o.path, max_events=o.max_events, synchronous_full=o.synchronous_full)


class BridgeApp:
    """The running bridge; explicit ``start()`` / ``stop()`` so systemd and metrics hooks can wrap it."""

    def __init__(self, settings: BridgeSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self.registry = RegistryFile(settings.registry_path)
        self._ctx = MappingContext(
            fault_actions=load_fault_actions(settings.fault_actions_path),
            calendar=CalendarPolicy(zone=ZoneInfo(settings.sla.timezone), holidays=frozenset(settings.sla.holidays)),
            sla_hours=dict(settings.sla.hours),
            dashboard_url=settings.dashboard_url,
            default_language=settings.default_language,
        )
        self.outbox = open_outbox(settings)
        self.adapters = {name: make_adapter(name, desk) for name, desk in settings.desks.items()}
        self.dispatcher = Dispatcher(
            outbox=self.outbox, adapters=self.adapters, to_ticket=self.to_ticket, retry=settings.retry,
            owner=settings.replica_id, lease_s=settings.outbox.lease_s, workers=settings.delivery.workers,
            poll_s=settings.delivery.poll_s, clock=clock,
        )
        topics = Topics(settings.mqtt.topic_prefix)
        self.consumer = AlertConsumer(outbox=self.outbox, topics=topics, route=self._route,
                                      on_accepted=self.dispatcher.wake, clock=clock)
        subscription = (topics.shared(settings.share_group, AssetChannel.ALERT) if settings.share_group
                        else topics.all_assets(AssetChannel.ALERT))
        client_id = settings.mqtt.client_id or f"cloud-bridge-{settings.replica_id}"
        self.mqtt = MqttClient(settings.mqtt, client_id=client_id, subscriptions=[(subscription, 1)],
                               on_message=self.consumer.handle)
        self.sla_warnings: list[SlaWarning] = []
        self._stopping = threading.Event()
        self._sla_thread: threading.Thread | None = None
        self._started = False

    def to_ticket(self, alert: AlertEvent) -> Ticket:
        """Map an alert onto a ticket with the current registry.

        ``now`` is the event's own time, so every retry and every replica builds byte-identical
        requests, which is what the desks' idempotency keys compare.
        """
        record = self.registry.current().lookup(alert.site, alert.asset)
        return map_alert(alert, record, now=alert.emitted_at or alert.last_seen, ctx=self._ctx)

    def _route(self, alert: AlertEvent) -> str:
        record = self.registry.current().lookup(alert.site, alert.asset)
        return self.settings.routing.desk_for(alert.site, record.customer_id if record else None)

    def start(self) -> None:
        """Reclaim this replica's leases, start delivering, then start consuming from MQTT."""
        released = self.outbox.release_owner(self.settings.replica_id)
        _log.info("bridge.starting", replica=self.settings.replica_id, outbox=self.outbox.backend,
                  desks=sorted(self.adapters), released_leases=released)
        self.dispatcher.start()
        self._sla_thread = threading.Thread(target=self._sla_loop, name="bridge-sla", daemon=True)
        self._sla_thread.start()
        self.mqtt.start()
        self._started = True

    def stop(self) -> bool:
        """Stop intake, finish in-flight deliveries within the grace period, close everything.

        Returns:
            True when every in-flight delivery finished in time.
        """
        if not self._started:
            self._close()
            return True
        self._started = False
        self._stopping.set()
        self.mqtt.stop()
        finished = self.dispatcher.stop(self.settings.delivery.shutdown_grace_s)
        if self._sla_thread is not None:
            self._sla_thread.join(timeout=5.0)
        self._close()
        _log.info("bridge.stopped", in_flight_finished=finished)
        return finished

    def _close(self) -> None:
        for adapter in self.adapters.values():
            adapter.close()
        self.outbox.close()

    def drain(self, timeout_s: float) -> bool:
        """Wait until the outbox holds no queued event and nothing is in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.outbox_stats().depth == 0 and self.dispatcher.inflight == 0:
                return True
            self._stopping.wait(0.05)
        return False

    def outbox_stats(self) -> OutboxStats:
        """Depth, oldest age and dead letters of the outbox."""
        return self.outbox.stats(self._clock())

    def check_promises(self) -> list[SlaWarning]:
        """Warn about tickets nearing their SLA deadline unacknowledged; returns the new warnings."""
        now = self._clock()
        warnings = due_warnings(self.outbox.open_tickets(), now=now, warn_fraction=self.settings.sla.warn_fraction)
        for w in warnings:
            self.outbox.mark_warned(w.alert_id)
            _log.warning("ticket.sla_at_risk", alert_id=w.alert_id, desk=w.desk, ticket_ref=w.ticket_ref,
                         priority=w.priority, remaining_min=round(w.remaining_s / 60, 1),
                         action="dispatch a technician or acknowledge the ticket")
        self.sla_warnings.extend(warnings)
        del self.sla_warnings[:-1000]  # bounded: metrics read the counters, not the history
        self.outbox.prune_alerts(now=now)
        return warnings

    def _sla_loop(self) -> None:
        while not self._stopping.wait(self.settings.sla.check_interval_s):
            try:
                self.check_promises()
            except OutboxError as exc:
                _log.error("sla.check_failed", error=str(exc))
