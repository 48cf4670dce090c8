"""Wiring of the edge agent: MQTT adapter → ingest core → detection engine → outbox → MQTT.

Threads: paho's network thread (owned by :class:`~pdm_common.mqtt.MqttClient`) only enqueues
inbound messages and PUBACK ids into bounded queues; the agent's main loop (the caller of
:meth:`EdgeAgent.run`) does all the work — detection, outbox writes, publishing, checkpoints — so a
slow detector never blocks keep-alives, and one thread owns the engine (no locks in the core).

Durability (DESIGN.md §4): every event the engine emits is committed to the SQLite outbox before it
is published, and deleted only on PUBACK. Right after an alert event is committed the engine is
checkpointed, so a restart neither re-opens an alert under a new id nor reuses an ``event_seq``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from edge_agent import checkpoint, keyfiles
from edge_agent.commands import sign_alert
from edge_agent.config import AgentSettings
from edge_agent.doctor import health
from edge_agent.engine import DetectionEngine
from edge_agent.errors import CheckpointError, OutboxError
from edge_agent.ingest import CommandReceived, IngestCounters, IngestResult, Rejected, ingest
from edge_agent.metrics import AgentMetrics
from edge_agent.outbox import Outbox, OutboxEntry
from pdm_common import __version__
from pdm_common.contracts import AlertEvent, AssetState, DeadLetter, GatewayStatus, Severity
from pdm_common.errors import ConfigError
from pdm_common.logs import configure_logging, get_logger
from pdm_common.metrics import MetricsServer, start_metrics_server
from pdm_common.mqtt import InboundMessage, MqttClient, MqttNotConnected, WillMessage
from pdm_common.reload import ReloadPlan, reload_plan
from pdm_common.settings import config_hash
from pdm_common.systemd import Liveness, Notifier, Watchdog
from pdm_common.topics import AssetChannel, Topics

__all__ = ["CHECKPOINT_FILE", "OUTBOX_FILE", "RELOADABLE", "EdgeAgent"]

_log = get_logger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
CHECKPOINT_FILE = "checkpoints/engine.ckpt"

_POLL_S = 0.2
"""Longest the main loop blocks on an empty queue: bounds shutdown latency and timer jitter."""
_BATCH_MAX = 500
"""Messages handled per loop pass before the loop publishes and checks timers again."""
_MQTT_STALL_S = 20.0
"""The network thread stamps its heartbeat every 0.5 s, also while backing off; a blocking TCP or TLS
connect may take paho's 5 s connect timeout. 20 s without a stamp means it is wedged."""
_MAIN_STALL_S = 30.0

RELOADABLE = frozenset({"detection", "kinds", "status_interval_s", "checkpoint_interval_s", "log"})
"""Settings a SIGHUP applies in place; everything else (broker, names, state_dir …) needs a restart."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class EdgeAgent:
    """One gateway's agent. Call :meth:`start`, then :meth:`run` until :meth:`request_stop`.

    Args:
        settings: the validated configuration.
        clock: wall clock (UTC), injectable for tests.
        notifier: systemd notification socket (a no-op outside systemd).
        metrics: Prometheus metrics; the endpoint is served when ``settings.metrics.enabled``.
        reload_source: loads the settings anew on :meth:`request_reload` (the config file on SIGHUP).
    """

    def __init__(
        self,
        settings: AgentSettings,
        *,
        clock: Callable[[], datetime] = _utc_now,
        notifier: Notifier | None = None,
        metrics: AgentMetrics | None = None,
        reload_source: Callable[[], AgentSettings] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.mqtt.topic_prefix)
        self.counters = IngestCounters()
        self.metrics = metrics or AgentMetrics()
        self.queue_dropped = 0
        self._clock = clock
        self._notifier = notifier or Notifier({})
        self._stop = threading.Event()
        self._reload_requested = threading.Event()
        self._reload_source = reload_source
        self._inbound: queue.Queue[InboundMessage] = queue.Queue(maxsize=settings.inbound_queue_max)
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._reconnected = threading.Event()
        self._in_flight: dict[int, int] = {}  # MQTT mid -> outbox row id
        self._publishing: set[int] = set()  # outbox row ids handed to paho
        self._event_time: datetime | None = None
        self._status_topic = self.topics.gateway_status(settings.site, settings.gateway)
        self._config_hash = config_hash(settings)
        self._next_status = 0.0
        self._next_checkpoint = time.monotonic() + settings.checkpoint_interval_s
        self._next_tick = 0.0
        self._main_beat = time.monotonic()
        self._metrics_server: MetricsServer | None = None
        self.metrics_url: str | None = None
        """Where the metrics endpoint is (or was) served; with ``port = 0`` the port is picked at start."""
        self.commands = keyfiles.command_gate(settings)
        self.signer = keyfiles.alert_signer(settings)

        state_dir = settings.state_dir
        (state_dir / CHECKPOINT_FILE).parent.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path: Path = state_dir / CHECKPOINT_FILE
        self.outbox = Outbox(state_dir / OUTBOX_FILE, max_rows=settings.outbox_max_rows)
        restored = checkpoint.load(self.checkpoint_path, agent_version=__version__)
        if restored is not None:
            # Thresholds and declared kinds may change between runs; learned baselines and open alerts are
            # kept, and an asset whose restored state is invalid re-warms alone.
            restored.reconfigure(settings.detection, settings.profiles())
            restored.validate()
        self.engine: DetectionEngine = restored or DetectionEngine(
            settings.detection, gateway=settings.gateway, agent_version=__version__, profiles=settings.profiles()
        )
        self.mqtt = MqttClient(
            settings.mqtt,
            client_id=settings.mqtt.client_id or f"pdm-edge-agent-{settings.gateway}",
            subscriptions=[
                (self.topics.all_assets(AssetChannel.TELEMETRY), settings.telemetry_qos),
                (self.topics.all_assets(AssetChannel.CMD), 1),
            ],
            on_message=self._enqueue,
            on_connect=self._reconnected.set,
            on_publish_ack=self._acks.put,
            will=WillMessage(self._status_topic, self._status_payload("offline")),
            birth=WillMessage(self._status_topic, self._status_payload("online")),
        )
        self._watchdog = Watchdog(
            self._notifier,
            [
                Liveness("mqtt", self.mqtt.heartbeat_age_s, _MQTT_STALL_S),
                Liveness("main", lambda: time.monotonic() - self._main_beat, _MAIN_STALL_S),
            ],
        )

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve metrics and connect to the broker in the background."""
        _log.info("agent.starting", gateway=self.settings.gateway, site=self.settings.site, version=__version__,
                  config_hash=self._config_hash, state_dir=str(self.settings.state_dir),
                  assets_restored=len(self.engine.asset_states()), pending_events=len(self.outbox))
        if self.settings.metrics.enabled:
            self._metrics_server = start_metrics_server(
                self.metrics.registry, host=self.settings.metrics.host, port=self.settings.metrics.port
            )
            self.metrics_url = self._metrics_server.url
        self.mqtt.start()

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from signal handlers and other threads)."""
        self._stop.set()

    def request_reload(self) -> None:
        """Ask the main loop to reload the settings (safe from signal handlers and other threads)."""
        self._reload_requested.set()

    def reload(self, new: AgentSettings) -> ReloadPlan:
        """Apply the :data:`RELOADABLE` part of ``new`` now; log what needs a restart.

        Call from the main loop's thread (it swaps the engine's thresholds). Learned baselines,
        open alerts and their ``event_seq`` are kept.
        """
        plan = reload_plan(self.settings, new, RELOADABLE)
        top = {path.split(".")[0] for path in plan.apply}
        self.settings = self.settings.model_copy(update={name: getattr(new, name) for name in top})
        if "detection" in top or "kinds" in top:
            self.engine.reconfigure(self.settings.detection, self.settings.profiles())
        if "log" in top:
            configure_logging(level=self.settings.log.level, fmt=self.settings.log.format)
        if plan.restart_needed:
            _log.warning("config.reload", applied=sorted(plan.apply), restart_needed=sorted(plan.restart_needed),
                         action="systemctl restart pdm-edge-agent to apply restart_needed")
        else:
            _log.info("config.reload", applied=sorted(plan.apply), restart_needed=[])
        return plan

    def run(self) -> None:
        """Work until :meth:`request_stop`, then shut down cleanly."""
        # Ready once state is loaded, not once the broker answers: the agent keeps learning and
        # buffering through a broker outage, and a restart loop would not bring the broker back.
        self._notifier.ready("running")
        try:
            while not self._stop.is_set():
                self.step(_POLL_S)
                self._watchdog.beat(healthy=True)
        finally:
            self._notifier.stopping()
            self.shutdown()

    def step(self, timeout_s: float) -> int:
        """One pass of the main loop; returns how many inbound messages it handled."""
        self._main_beat = time.monotonic()
        if self._reload_requested.is_set():
            self._reload_requested.clear()
            self._reload_now()
        handled = self._drain_inbound(timeout_s)
        self._timers()
        self._apply_acks()
        self._publish_pending()
        self.metrics.mqtt_connected.set(1 if self.mqtt.is_connected else 0)
        return handled

    def idle(self) -> bool:
        """True when nothing is queued inbound or waiting in the outbox (used by the demo and tests)."""
        return self._inbound.empty() and len(self.outbox) == 0

    def shutdown(self) -> None:
        """Checkpoint, say ``offline`` on the retained status, disconnect and close the outbox.

        Every step runs even when an earlier one failed (each failure is one log line), and the
        metrics endpoint closes in parallel: its serving thread polls for shutdown twice a second.
        """
        server, self._metrics_server = self._metrics_server, None
        closing = threading.Thread(target=server.close, name="metrics-close") if server is not None else None
        if closing is not None:
            closing.start()
        self._shutdown_step("checkpoint", self._save_checkpoint)
        self._shutdown_step("status", self._say_offline)
        self._shutdown_step("mqtt", self.mqtt.stop)
        self._shutdown_step("outbox", self.outbox.close)
        if closing is not None:
            closing.join()
        _log.info("agent.stopped", received=self.counters.received, valid=self.counters.valid,
                  dead_lettered=self.counters.dead_lettered, queue_dropped=self.queue_dropped)

    @staticmethod
    def _shutdown_step(name: str, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # a failed step must not skip the others or turn SIGTERM into exit 1
            _log.error("agent.shutdown_step_failed", step=name, error=f"{type(exc).__name__}: {exc}",
                       action="report this with the log; state on disk is kept")

    def _say_offline(self) -> None:
        if not self.mqtt.is_connected:
            return
        try:
            self.mqtt.publish(self._status_topic, self._status_payload("offline"), qos=1, retain=True)
        except MqttNotConnected:
            _log.warning("agent.status_not_published", status="offline")

    def now(self) -> datetime:
        """The agent's notion of now: wall clock, or the newest telemetry time with ``clock = "telemetry"``."""
        if self.settings.clock == "telemetry":
            return self._event_time or self._clock()
        return self._clock()

    def _reload_now(self) -> None:
        if self._reload_source is None:
            _log.warning("config.reload_unsupported", action="no config source to reload from; restart instead")
            return
        self._notifier.reloading()
        try:
            self.reload(self._reload_source())
        except ConfigError as exc:
            _log.error("config.reload_failed", error=str(exc), action="fix the file and send SIGHUP again; "
                       "the running settings stay in force")
        finally:
            self._notifier.ready("running")

    # --- network thread -------------------------------------------------------------------------

    def _enqueue(self, msg: InboundMessage) -> None:
        try:
            self._inbound.put_nowait(msg)
        except queue.Full:
            self.queue_dropped += 1
            if self.queue_dropped == 1 or self.queue_dropped % 1000 == 0:
                _log.warning("ingest.queue_full", dropped=self.queue_dropped, capacity=self._inbound.maxsize,
                             action="the detector cannot keep up: lower the sample rate or raise inbound_queue_max")

    # --- main loop ------------------------------------------------------------------------------

    def _drain_inbound(self, timeout_s: float) -> int:
        try:
            msg = self._inbound.get(timeout=timeout_s)
        except queue.Empty:
            return 0
        outputs: list[AlertEvent | AssetState] = []
        handled = 0
        while True:
            outputs += self._handle(ingest(self.topics, msg.topic, msg.payload, msg.received_at))
            handled += 1
            if handled >= _BATCH_MAX:
                break
            try:
                msg = self._inbound.get_nowait()
            except queue.Empty:
                break
        self._store(outputs)
        return handled

    def _handle(self, result: IngestResult) -> list[AlertEvent | AssetState]:
        self.counters.count(result)
        m = self.metrics.ingest
        if isinstance(result, Rejected):
            m.received.labels(channel="unknown").inc()
            m.dead_lettered.labels(reason=result.letter.reason).inc()
            self._dead_letter(result)
            return []
        if isinstance(result, CommandReceived):
            m.received.labels(channel="cmd").inc()
            gated = self.commands.apply(result, self.engine, now=self.now(), wall_s=self._clock().timestamp())
            if gated.rejected is not None:
                m.dead_lettered.labels(reason=gated.rejected.letter.reason).inc()
                self._dead_letter(gated.rejected)
            else:
                m.valid.labels(channel="cmd").inc()
            return gated.events
        tel = result.telemetry
        m.received.labels(channel="telemetry").inc()
        m.valid.labels(channel="telemetry").inc()
        if self._event_time is None or tel.ts > self._event_time:
            self._event_time = tel.ts
        started = time.perf_counter()
        out = self.engine.process(tel, tel.ts)
        self.metrics.detector_latency.observe(time.perf_counter() - started)
        refusal = self.engine.last_refusal
        if refusal is not None:
            # A kind with no profile, or no room for a new asset: dead-lettered with the reason, never scored.
            topic = self.topics.asset(tel.site, tel.asset, AssetChannel.TELEMETRY)
            letter = DeadLetter.build(reason=refusal.reason, detail=refusal.detail, topic=topic,
                                      payload=tel.to_json(), received_at=self._clock())
            m.dead_lettered.labels(reason=refusal.reason).inc()
            self._dead_letter(Rejected(topic=self.topics.deadletter_for(topic), letter=letter))
        return out

    def _store(self, outputs: Iterable[AlertEvent | AssetState]) -> None:
        entries: list[OutboxEntry] = []
        alerts = False
        for ev in outputs:
            if isinstance(ev, AlertEvent):
                alerts = True
                topic = self.topics.asset(ev.site, ev.asset, AssetChannel.ALERT)
                signed = sign_alert(ev, self.signer, int(self._clock().timestamp()))
                entries.append(OutboxEntry(topic, signed.to_json(), 1, False, ev.event.value))
                _log.info("alert.event", alert_id=ev.alert_id, alert_event=ev.event.value, event_seq=ev.event_seq,
                          severity=ev.severity.value, fault=ev.probable_fault.code)
            else:
                self.metrics.warmup.labels(asset=ev.asset).set(ev.warmup_progress)
                topic = self.topics.asset(ev.site, ev.asset, AssetChannel.STATE)
                entries.append(OutboxEntry(topic, ev.to_json(), 1, True, "state"))
        if not entries:
            return
        try:
            self.outbox.put_many(entries)
        except OutboxError as exc:
            _log.error("outbox.write_failed", error=str(exc), events=len(entries),
                       action="check disk space and the state directory; events are kept in the checkpoint state")
            return
        if alerts:
            self._save_checkpoint()
            counts: dict[Severity, int] = {}
            for ev in self.engine.open_alerts():
                counts[ev.severity] = counts.get(ev.severity, 0) + 1
            self.metrics.set_open_alerts(counts)

    def _timers(self) -> None:
        mono = time.monotonic()
        if mono >= self._next_tick:
            self._next_tick = mono + 1.0
            self._store(self.engine.tick(self.now()))
            # Once a second, not every loop pass: two queries the hot path need not pay for.
            self.metrics.outbox.observe(len(self.outbox), self.outbox.oldest_age_s())
        if mono >= self._next_checkpoint:
            self._next_checkpoint = mono + self.settings.checkpoint_interval_s
            self._save_checkpoint()
        if mono >= self._next_status and self.mqtt.is_connected:
            self._next_status = mono + self.settings.status_interval_s
            self._publish_status()

    def _apply_acks(self) -> None:
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            row = self._in_flight.pop(mid, None)
            if row is None:
                continue  # an ack for a status publish or for a copy sent before a reconnect
            self._publishing.discard(row)
            try:
                self.outbox.ack(row)
            except OutboxError as exc:
                _log.error("outbox.ack_failed", row=row, error=str(exc), action="check the state directory")

    def _publish_pending(self) -> None:
        if self._reconnected.is_set():
            # After a reconnect nothing in flight can be trusted to arrive: send everything again.
            # Receivers drop repeats by (alert_id, event_seq); retained state is idempotent.
            self._reconnected.clear()
            self._in_flight.clear()
            self._publishing.clear()
        if not self.mqtt.is_connected:
            return
        window = self.settings.publish_window - len(self._publishing)
        if window <= 0:
            return
        for item in self.outbox.pending(window + len(self._publishing)):
            if item.id in self._publishing:
                continue
            try:
                mid = self.mqtt.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
            except MqttNotConnected:
                return
            self._in_flight[mid] = item.id
            self._publishing.add(item.id)

    def _save_checkpoint(self) -> None:
        try:
            checkpoint.save(self.checkpoint_path, self.engine)
        except CheckpointError as exc:
            _log.error("checkpoint.save_failed", error=str(exc),
                       action="check disk space; after a restart the models would re-warm")

    def _dead_letter(self, rejected: Rejected) -> None:
        _log.info("telemetry.dead_lettered", reason=rejected.letter.reason, topic=rejected.letter.topic[:200],
                  detail=rejected.letter.detail[:200])
        try:
            # QoS 0 by contract (DESIGN.md §2): dead letters are diagnostics, not alerts.
            self.mqtt.publish(rejected.topic, rejected.letter.to_json(), qos=0)
        except MqttNotConnected:
            _log.warning("deadletter.not_published", reason=rejected.letter.reason,
                         action="broker unreachable; the refusal is counted in metrics")

    def _publish_status(self) -> None:
        try:
            self.mqtt.publish(self._status_topic, self._status_payload("online"), qos=1, retain=True)
        except MqttNotConnected:
            return

    def _status_payload(self, status: str) -> bytes:
        return GatewayStatus(
            status="online" if status == "online" else "offline",
            gateway=self.settings.gateway,
            version=__version__,
            config_hash=self._config_hash,
            ts=self._clock(),
            health=health(self.settings, now=self._clock()) if status == "online" else {},
        ).to_json()
