"""Wiring of the cloud bridge: MQTT intake → outbox → delivery loop → desks, plus SLA promise checks.

``BridgeApp(settings).start()`` connects everything; ``stop()`` stops intake first, then lets in-flight
deliveries finish (bounded by ``delivery.shutdown_grace_s``). ``drain(timeout_s)`` waits until the
outbox is empty, for demos and tests. Counters for metrics are plain attributes: ``consumer.stats``,
``dispatcher.stats``, ``outbox_stats()``, ``sla_warnings``.

Ops hooks for ``cloud-bridge run`` (systemd, Prometheus, SIGHUP): ``metrics`` (every desk attempt is
counted by the :class:`~cloud_bridge.metrics.MeteredAdapter` around each adapter), ``refresh_gauges()``,
``liveness()`` (watchdog probes) and ``reload(new_settings)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from cloud_bridge.config import BridgeSettings
from cloud_bridge.consumer import AlertConsumer
from cloud_bridge.delivery import Dispatcher
from cloud_bridge.desks import make_adapter
from cloud_bridge.desks.base import DeskAdapter
from cloud_bridge.errors import DeliveryError, OutboxError, RegistryError
from cloud_bridge.fleet import FleetCollector, FleetView
from cloud_bridge.holidays import ServiceHolidays
from cloud_bridge.metrics import BridgeMetrics, MeteredAdapter
from cloud_bridge.outbox import Outbox, OutboxStats, open_postgres, open_sqlite
from cloud_bridge.plot import render_plot
from cloud_bridge.promises import SlaWarning, due_warnings
from cloud_bridge.registry import RegistryFile, load_fault_actions
from cloud_bridge.sync import DeskSync
from cloud_bridge.ticket import AlertHistory, MappingContext, Ticket, case_reference, map_alert
from cloud_bridge.urgency import CalendarPolicy
from cloud_bridge.vocabulary import Vocabulary
from pdm_common.contracts import AlertEvent
from pdm_common.errors import ConfigError
from pdm_common.logs import get_logger
from pdm_common.mqtt import MqttClient
from pdm_common.reload import ReloadPlan, reload_plan
from pdm_common.systemd import Heartbeat, Liveness
from pdm_common.topics import AssetChannel, Topics

__all__ = ["RELOADABLE", "BridgeApp", "mqtt_client_id", "open_outbox"]

_log = get_logger(__name__)

RELOADABLE = frozenset({"registry_path", "fault_actions_path", "dashboard_url", "default_language", "routing", "sla",
                        "kinds", "kinds_path"})
"""Settings SIGHUP applies in place: each is read per ticket, per route or per SLA check. Everything else
(MQTT, desks, outbox, retry — the dispatcher owns its backoff and breakers —, delivery, logging) needs a restart."""

MQTT_STALL_S = 20.0
"""The network thread stamps its heartbeat every 0.5 s, also while backing off; a blocking TCP/TLS connect
takes up to paho's 5 s and storing one alert up to ~1.5 s of retries (consumer.STORE_ATTEMPTS).
20 s without a stamp means it is wedged (same bound as the edge agent)."""

DELIVERY_STALL_FACTOR = 10
"""A busy delivery pool is wedged when no attempt started or ended for this many desk timeouts: one
attempt is at most three requests (ServiceNow: look up, create, attach), each bounded by ``timeout_s``
per phase, so ten timeouts leave margin without waiting forever on a hung socket."""

DISPATCH_STALL_S = 60.0
"""The lease loop stamps its heartbeat every pass: at most ``delivery.poll_s`` (≤ 30 s) idle, plus one
lease transaction, which can wait out SQLite's 30 s busy timeout or one PostgreSQL reconnect
(``outbox.RECONNECT_TIMEOUT_S``), plus a failure backoff (``delivery.LOOP_BACKOFF``, ≤ 10 s) that is
stamped before it when the loop itself works. A minute without a stamp means the thread died, hangs or
keeps failing."""


def mqtt_client_id(settings: BridgeSettings) -> str:
    """The MQTT client id of this replica (its persistent session is keyed by it)."""
    return settings.mqtt.client_id or f"cloud-bridge-{settings.replica_id}"


def _mapping_context(settings: BridgeSettings) -> MappingContext:
    """Everything ticket mapping reads from the settings; loads the fault-action table.

    Raises:
        RegistryError: the fault-action table is unreadable or invalid.
    """
    start, end = settings.sla.contact_window()
    return MappingContext(
        fault_actions=load_fault_actions(settings.fault_actions_path),
        calendar=CalendarPolicy(zone=ZoneInfo(settings.sla.timezone), holidays=ServiceHolidays(
            settings.sla.country, settings.sla.subdivision, settings.sla.holidays),
                                contact_start=start, contact_end=end, contact_days=settings.sla.contact_weekdays()),
        sla_hours=dict(settings.sla.hours),
        dashboard_url=settings.dashboard_url,
        default_language=settings.default_language,
        vocabulary=Vocabulary(settings.declared_kinds()),
    )


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
        return open_postgres(dsn, max_events=o.max_events, gap_wait_s=o.gap_wait_s)
    return open_sqlite(o.path, max_events=o.max_events, synchronous_full=o.synchronous_full,
                       gap_wait_s=o.gap_wait_s)


class BridgeApp:
    """The running bridge; explicit ``start()`` / ``stop()`` so systemd and metrics hooks can wrap it.

    Args:
        settings: the validated settings.
        clock: wall-clock seconds (outbox times, SLA deadlines).
        monotonic: seconds for the delivery-progress heartbeat the watchdog reads.
    """

    def __init__(self, settings: BridgeSettings, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        problem = settings.signing_problem()
        if problem is not None:
            raise ConfigError(f"configuration cannot run:\n{problem}")
        self.settings = settings
        self._clock = clock
        self.registry = RegistryFile(settings.registry_path)
        self._ctx = _mapping_context(settings)
        self.outbox = open_outbox(settings)
        self.metrics = BridgeMetrics()
        if self.outbox.salvage is not None:
            self._report_salvage()
        self.delivery_progress = Heartbeat(monotonic)
        self.adapters: dict[str, DeskAdapter] = {
            name: MeteredAdapter(make_adapter(name, desk), self.metrics, self.delivery_progress)
            for name, desk in settings.desks.items()
        }
        self.dispatcher = Dispatcher(
            outbox=self.outbox, adapters=self.adapters, to_ticket=self.to_ticket, retry=settings.retry,
            owner=settings.replica_id, lease_s=settings.outbox.lease_s, workers=settings.delivery.workers,
            poll_s=settings.delivery.poll_s, clock=clock, monotonic=monotonic,
            render=lambda alert, marks: render_plot(alert, marks, self._ctx.vocabulary),
        )
        topics = Topics(settings.mqtt.topic_prefix)
        self.consumer = AlertConsumer(outbox=self.outbox, topics=topics, route=self._route,
                                      on_accepted=self.dispatcher.wake, clock=clock, gateways=settings.gateways,
                                      require_signed=settings.require_signed_alerts,
                                      max_seq_step=settings.max_seq_step)
        self.metrics.watch_intake(self.consumer.stats)
        subscription = (topics.shared(settings.share_group, AssetChannel.ALERT) if settings.share_group
                        else topics.all_assets(AssetChannel.ALERT))
        self.fleet = FleetView(topics, clock=clock)  # gateway status, asset states: the fleet dashboard
        self.metrics.registry.register(FleetCollector(self.fleet))
        self.mqtt = MqttClient(settings.mqtt, client_id=mqtt_client_id(settings),
                               subscriptions=[(subscription, 1), *self.fleet.subscriptions()],
                               on_message=self.fleet.route(self.consumer.handle))
        self.sync = DeskSync(settings=settings, outbox=self.outbox, adapters=self.adapters,
                             publish=self._publish, metrics=self.metrics,
                             clock=clock)
        self.sla_warnings: list[SlaWarning] = []
        self._sla_tried: set[str] = set()
        self._sla_lock = threading.Lock()
        self._stopping = threading.Event()
        self._sla_thread: threading.Thread | None = None
        self._started = False

    def _report_salvage(self) -> None:
        report = self.outbox.salvage
        assert report is not None
        self.metrics.observe_salvage(report)
        counts = {table: report.salvaged(table) for table in report.rows}
        _log.error("outbox.corrupt", reason=report.reason, moved_to=str(report.moved_to), salvaged=counts,
                   lost_rows_at_most=report.unreadable, loss_unknown=report.unknown_loss,
                   action="the corrupt file was kept aside; what could be read is in the new outbox. Events not "
                   "salvaged are lost to the bridge: the agents' outboxes and the broker's session hold only what "
                   "was not yet acknowledged, so compare the desks with the alerts of the affected period")

    def _publish(self, topic: str, payload: bytes) -> None:
        """Publish a command with QoS 1 (raises MqttNotConnected while offline: sync retries)."""
        self.mqtt.publish(topic, payload, qos=1)

    def to_ticket(self, alert: AlertEvent, history: AlertHistory | None = None) -> Ticket:
        """Map an alert onto a ticket with the current registry.

        ``now`` is the event's own time, so every retry and every replica builds byte-identical
        requests, which is what the desks' idempotency keys compare.
        """
        record = self.registry.current().lookup(alert.site, alert.asset)
        return map_alert(alert, record, now=alert.emitted_at or alert.last_seen, ctx=self._ctx, history=history)

    def _route(self, alert: AlertEvent) -> str:
        record = self.registry.current().lookup(alert.site, alert.asset)
        return self.settings.routing.desk_for(alert.site, record.customer_id if record else None)

    def start(self) -> None:
        """Reclaim this replica's leases, start delivering, then start consuming from MQTT."""
        released = self.outbox.release_owner(self.settings.replica_id)
        # A restart is how a desk's configuration gets fixed: what waited out a configuration
        # problem (an untrusted certificate) is tried at once, not after config_error_open_s.
        unheld = self.outbox.release_config_holds(self._clock())
        _log.info("bridge.starting", replica=self.settings.replica_id, outbox=self.outbox.backend,
                  desks=sorted(self.adapters), released_leases=released, released_config_holds=unheld)
        self.dispatcher.start()
        self._sla_thread = threading.Thread(target=self._sla_loop, name="bridge-sla", daemon=True)
        self._sla_thread.start()
        self.mqtt.start()
        self.sync.start()
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
        self.sync.stop()
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

    def refresh_gauges(self) -> OutboxStats:
        """Update the outbox and circuit gauges; returns the outbox stats (for the systemd STATUS line).

        Raises:
            OutboxError: the outbox database cannot be queried.
        """
        stats = self.outbox_stats()
        self.metrics.observe_outbox(stats, self.adapters)
        self.metrics.observe_circuits({desk: self.dispatcher.circuit_state(desk) for desk in self.adapters})
        return stats

    def liveness(self) -> list[Liveness]:
        """Watchdog probes: MQTT's network thread, the dispatcher's lease loop, and the pool while it has work.

        The lease loop needs its own probe: with nothing in flight the pool counts as idle, so a dead
        loop would otherwise look healthy while the queue stops draining.
        """
        timeout_s = max(desk.timeout_s for desk in self.settings.desks.values())
        # A poll interval above the bound would make an idle loop look wedged between passes.
        dispatch_s = max(DISPATCH_STALL_S, 2 * self.settings.delivery.poll_s + DISPATCH_STALL_S / 2)
        return [
            Liveness("mqtt", self.mqtt.heartbeat_age_s, MQTT_STALL_S),
            Liveness("dispatch", self.dispatcher.loop_heartbeat.age_s, dispatch_s),
            Liveness("delivery", self._delivery_stall_s, DELIVERY_STALL_FACTOR * timeout_s),
        ]

    def _delivery_stall_s(self) -> float:
        """Seconds the pool has had deliveries in flight without an attempt starting or ending.

        An idle pool is live: seeing it idle re-stamps the heartbeat, so the count starts when work does.
        """
        if self.dispatcher.inflight == 0:
            self.delivery_progress.touch()
        return self.delivery_progress.age_s()

    def reload(self, new: BridgeSettings) -> ReloadPlan:
        """Apply the :data:`RELOADABLE` part of ``new``; the rest waits for a restart.

        The fault-action table is re-read even when its path is unchanged, so an edited table takes
        effect on SIGHUP (the registry file reloads itself whenever it changes). Routing that names
        a desk this process has no adapter for (a desk added in the same edit) waits for the restart
        too. Nothing changes when this raises.

        Returns:
            What was applied and what needs a restart (also logged as ``config.reload``).

        Raises:
            RegistryError: the new registry or fault-action table is unreadable or invalid.
        """
        plan = reload_plan(self.settings, new, RELOADABLE)
        apply, restart = set(plan.apply), set(plan.restart_needed)
        r = new.routing
        if "routing" in apply and not {r.default, *r.sites.values(), *r.customers.values()} <= set(self.adapters):
            apply.discard("routing")
            restart.add("routing")
        effective = self.settings.model_copy(update={path: getattr(new, path) for path in apply})
        registry = self.registry
        if effective.registry_path != self.settings.registry_path:
            registry = RegistryFile(effective.registry_path)
            if registry.reloads == 0:
                raise RegistryError(f"registry {effective.registry_path} did not load; see registry.reload_failed")
        ctx = _mapping_context(effective)
        self.registry, self._ctx, self.settings = registry, ctx, effective
        result = ReloadPlan(apply=frozenset(apply), restart_needed=frozenset(restart))
        if restart:
            _log.warning("config.reload", applied=sorted(apply), restart_needed=sorted(restart),
                         action="systemctl restart pdm-cloud-bridge to apply restart_needed")
        else:
            _log.info("config.reload", applied=sorted(apply), restart_needed=[])
        return result

    def check_promises(self) -> list[SlaWarning]:
        """Warn about tickets nearing their SLA deadline unacknowledged; returns the new warnings.

        Serialised: the SLA thread and a caller never post the same warning twice.
        """
        with self._sla_lock:
            return self._check_promises()

    def _check_promises(self) -> list[SlaWarning]:
        now = self._clock()
        warnings = due_warnings(self.outbox.open_tickets(), now=now, warn_fraction=self.settings.sla.warn_fraction)
        posted: list[SlaWarning] = []
        for w in warnings:
            if not self._post_sla_note(w, now):
                continue  # not marked: the next check posts it (the marker keeps it single)
            self.outbox.mark_warned(w.alert_id)
            posted.append(w)
            _log.warning("ticket.sla_at_risk", alert_id=w.alert_id, desk=w.desk, ticket_ref=w.ticket_ref,
                         priority=w.priority, remaining_min=round(w.remaining_s / 60, 1),
                         action="dispatch a technician or acknowledge the ticket")
        warnings = posted
        self.sla_warnings.extend(warnings)
        del self.sla_warnings[:-1000]  # bounded: metrics read the counters, not the history
        self.outbox.prune_alerts(now=now)
        return warnings

    def _post_sla_note(self, w: SlaWarning, now: float) -> bool:
        """Post the SLA warning as an internal note on the ticket; True when it is there."""
        adapter = self.adapters.get(w.desk)
        if adapter is None or w.ticket_ref is None:
            return True
        marker = f"[pdm-sla {case_reference(w.alert_id)}/{int(w.deadline)}]"
        due = datetime.fromtimestamp(w.deadline, ZoneInfo(self.settings.sla.timezone)).strftime("%a %d %b %Y %H:%M %Z")
        when = (f"in {w.remaining_s / 60:.0f} min" if w.remaining_s >= 0
                else f"overdue by {-w.remaining_s / 3600:.1f} h")
        text = (f"SLA at risk: the promised response ({w.priority}) is due {due}, {when}, and nobody has "
                "acknowledged this ticket. Dispatch a technician or acknowledge it.")
        try:
            adapter.post_note(w.alert_id, w.ticket_ref, text, marker, maybe_landed=w.alert_id in self._sla_tried,
                              now=now)
        except DeliveryError as exc:
            self._sla_tried.add(w.alert_id)
            self.metrics.sla_notes.labels(desk=w.desk, outcome="failed").inc()
            _log.warning("sla.note_failed", alert_id=w.alert_id, desk=w.desk, reason=exc.reason,
                         action="retried at the next SLA check")
            return False
        self._sla_tried.discard(w.alert_id)
        self.metrics.sla_notes.labels(desk=w.desk, outcome="posted").inc()
        return True

    def _sla_loop(self) -> None:
        while not self._stopping.wait(self.settings.sla.check_interval_s):
            try:
                self.check_promises()
            except OutboxError as exc:
                _log.error("sla.check_failed", error=str(exc))
