"""Wiring of the edge agent: MQTT adapter → ingest core → detection engine → outbox → MQTT.

Threads: paho's network thread (owned by :class:`~pdm_common.mqtt.MqttClient`) only appends inbound
messages, PUBACKs and refusals to queues; the checkpoint writer thread only writes serialised
states; the agent's main loop (the caller of :meth:`EdgeAgent.run`) does all the work — detection,
outbox writes, publishing, acknowledgements, serialising checkpoints — so a slow detector never
blocks keep-alives, and one thread owns the engine (no locks in the core).

Flow control (DESIGN.md §4, issue 13). A QoS 1 message is acknowledged to the broker only after
the loop pass that handled it has stored what it produced in the outbox, in arrival order. The
client announces ``mqtt.receive_maximum`` (MQTT 5 flow control), so the broker never has more
than that many unacknowledged messages in flight to us: a detector that cannot keep up slows
intake, and the rest waits in the broker's session queue (``max_queued_messages`` in Mosquitto),
never in a buffer that could overflow after PUBACK. QoS 0 telemetry has neither acknowledgement
nor flow control: once ``inbound_queue_max`` messages wait, further ones are dropped and counted
(``pdm_agent_messages_dropped_total{reason="queue_full"}``). Both are the ``backpressure``
condition in metrics and in the gateway status.

Durability. Alert events are committed to the outbox (and its alert ledger) before they are
published and deleted after PUBACK, the deletes batched per loop pass. When the disk refuses
writes they are held in memory, published from there, and written when it recovers. Model state
is checkpointed per asset, changed assets only, every ``checkpoint_interval_s`` (or once
``journal_max_rows`` samples wait) and at shutdown: the loop serialises a few assets per pass
(:data:`_SLICE_S`) and a writer thread writes them. Telemetry a checkpoint does not cover yet is in
the telemetry journal (:mod:`edge_agent.journal`), written in the same pass before its PUBACK. On
start the journal is replayed into the restored models (the events it re-derives that the outbox
ledger already holds are not stored again), then the ledger brings each alert's track up to its
newest event: a ``kill -9`` between two checkpoints neither re-opens an alert under a new id, nor
reuses an ``event_seq``, nor makes a model skip the samples since. Assets the journal does not name
are restored lazily: on their first message, the others a slice per pass in the background.

Echo. An alert's events are published once more, in order, ``alert_echo_s`` after the broker
acknowledged its newest one (and at the earliest ``alert_echo_s`` after a reconnect), and once just
before the next newer event of the same alert. Mosquitto 2.0 (Debian's 2.0.11, reproduced in
tests/chaos/test_broker_faults.py) does not queue messages for a persistent session it restored from
its persistence file until that client reconnects, although it acknowledges the publish: the events
published between a broker restart and the cloud bridge's reconnect were lost. Receivers drop repeats
by ``(alert_id, event_seq)``; the bridge holds a later event a while for lower ones that are missing
(its ``outbox.gap_wait_s``), so the echoed ones still go first. Echoes live in memory (bounded), not in
the outbox.

No single message stops the agent: an exception while processing a valid message is caught,
counted and the message dead-lettered as ``processing_failed``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edge_agent import checkpoint, keyfiles
from edge_agent.checkpoint import AssetKey, CheckpointRefused, CheckpointStore, CheckpointWriter
from edge_agent.commands import sign_alert
from edge_agent.config import AgentSettings
from edge_agent.doctor import CHECKPOINT_DIR, CHECKPOINT_STORE, OUTBOX_FILE
from edge_agent.doctor import health as local_checks
from edge_agent.engine import MODEL_VERSION, DetectionEngine
from edge_agent.errors import CheckpointError
from edge_agent.ingest import Accepted, CommandReceived, IngestCounters, Rejected, ingest
from edge_agent.journal import JOURNAL_FILE, TelemetryJournal
from edge_agent.metrics import AgentMetrics, AssetGauges
from edge_agent.outbox import AlertRef, Outbox, OutboxEntry
from pdm_common import __version__
from pdm_common.contracts import AlertEvent, AssetState, DeadLetter, GatewayStatus, Severity, Telemetry
from pdm_common.errors import ConfigError
from pdm_common.logs import configure_logging, get_logger
from pdm_common.metrics import MetricsServer, start_metrics_server
from pdm_common.mqtt import InboundMessage, MqttClient, MqttNotConnected, WillMessage
from pdm_common.reload import ReloadPlan, reload_plan
from pdm_common.settings import config_hash
from pdm_common.systemd import Liveness, Notifier, Watchdog
from pdm_common.topics import AssetChannel, Topics

__all__ = ["CHECKPOINT_DIR", "CHECKPOINT_FILE", "OUTBOX_FILE", "RELOADABLE", "EdgeAgent"]

_log = get_logger(__name__)

CHECKPOINT_FILE = f"{CHECKPOINT_DIR}/{CHECKPOINT_STORE}"
_LEGACY_CHECKPOINT = f"{CHECKPOINT_DIR}/engine.ckpt"

_POLL_S = 0.2
"""Longest the main loop blocks on an empty queue: bounds shutdown latency and timer jitter."""
_BATCH_MAX = 500
"""Messages handled per loop pass before the loop stores, acknowledges, publishes and checks timers."""
_SLICE_S = 0.005
"""Main-loop time per pass spent serialising checkpoints or restoring assets (about ten assets):
short enough not to show in ingest → alert latency (target p99 < 50 ms)."""
_SHUTDOWN_SAVE_S = 20.0
"""Longest shutdown waits for the last checkpoint write; the unit's TimeoutStopSec covers it."""
_BACKPRESSURE_CLEAR_S = 10.0
"""The backpressure condition clears after this long without a full window or a dropped sample (no flapping)."""
_REFUSED_RETRY_S = 30.0
"""A publish the broker refused (ACL, quota) is retried after this long; the window slot is freed at once."""
_MQTT_STALL_S = 20.0
"""The network thread stamps its heartbeat every 0.5 s, also while backing off; a blocking TCP or TLS
connect may take paho's 5 s connect timeout. 20 s without a stamp means it is wedged."""
_MAIN_STALL_S = 30.0
_ECHO_MAX = 10_000
"""Alert events waiting for their echo; beyond it the alert whose echo is due first is sent at once."""


@dataclass
class _EchoGroup:
    """An alert's recently acknowledged events, to publish once more (see the module docstring)."""

    due: float  # monotonic
    events: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # event_seq -> topic, payload
    resent_through: int = 0
    """Events up to this seq went out again before a newer one already: not again before the next
    (each newer event re-sent the whole group, O(n²) publishes for an alert updating within
    ``alert_echo_s``); the timed echo still sends them all."""

RELOADABLE = frozenset({"detection", "status_interval_s", "checkpoint_interval_s", "log"})
"""Settings a SIGHUP applies in place; everything else (broker, names, state_dir …) needs a restart."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Condition:
    """A degraded state: one log line when it starts (with the fix), one when it clears, and a gauge."""

    def __init__(self, name: str, metrics: AgentMetrics, action: str) -> None:
        self.name = name
        self.detail: str | None = None
        self._gauge = metrics.conditions[name]
        self._action = action

    def set(self, detail: str) -> None:
        if self.detail is None:
            _log.error("agent.degraded", condition=self.name, detail=detail[:300], action=self._action)
            self._gauge.set(1)
        self.detail = detail

    def clear(self) -> None:
        if self.detail is not None:
            _log.info("agent.recovered", condition=self.name, was=self.detail[:300])
            self._gauge.set(0)
        self.detail = None


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
        self.dropped: dict[str, int] = {"queue_full": 0, "shutdown": 0}
        self.processing_failures = 0
        self._clock = clock
        self._notifier = notifier or Notifier({})
        self._stop = threading.Event()
        self._reload_requested = threading.Event()
        self._reload_source = reload_source
        self._inbound: queue.SimpleQueue[InboundMessage] = queue.SimpleQueue()
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._refusals: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
        self._reconnected = threading.Event()
        self._in_flight: dict[int, int] = {}  # MQTT mid -> outbox id
        self._cursor = 0  # outbox ids up to here were handed to the broker on this connection
        self._retry_at: dict[int, float] = {}  # refused outbox id -> monotonic time to try again
        self._echo_of: dict[int, tuple[str, int, str, bytes]] = {}  # outbox id -> alert id, seq, topic, payload
        self._echoes: dict[str, _EchoGroup] = {}  # alert id -> its events to publish once more
        self._event_time: datetime | None = None
        self._status_topic = self.topics.gateway_status(settings.site, settings.gateway)
        self._link_topic = self.topics.gateway_link(settings.site, settings.gateway)
        self._uplink: bool | None = None  # None: no link notification seen (no Mosquitto bridge in between)
        self._config_hash = config_hash(settings)
        self._next_status = 0.0
        self._next_checkpoint = time.monotonic() + settings.checkpoint_interval_s
        self._next_tick = 0.0
        self._main_beat = time.monotonic()
        self._settled = False  # see idle()
        self._metrics_server: MetricsServer | None = None
        self.metrics_url: str | None = None
        """Where the metrics endpoint is (or was) served; with ``port = 0`` the port is picked at start."""
        self.commands = keyfiles.command_gate(settings)
        self.signer = keyfiles.alert_signer(settings)
        m = self.metrics
        self._backpressure = _Condition(
            "backpressure", m, "the detector cannot keep up: intake is slowed (QoS 1) or QoS 0 samples are dropped; "
            "lower the sample rate, split the gateway, or raise inbound_queue_max for QoS 0")
        self._outbox_disk = _Condition(
            "outbox_disk", m, "free disk space or make the state directory writable; alert events are kept in memory "
            "(bounded) and published meanwhile")
        self._checkpoint_disk = _Condition(
            "checkpoint_disk", m, "free disk space, make the state directory writable, or remove whatever is at "
            f"{settings.state_dir / CHECKPOINT_DIR} so it can be a directory; models are kept in memory and "
            "re-warm only if the agent restarts meanwhile")
        self._journal_disk = _Condition(
            "journal_disk", m, "free disk space or make the state directory writable; telemetry is processed and "
            "acknowledged meanwhile, but a crash before the next checkpoint loses those samples to the models")
        self._publish_refused = _Condition(
            "publish_refused", m, "the broker refused publishes: check its ACL lets this gateway write its site's "
            "alert/state topics, and its quotas")

        state_dir = settings.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _log.error("agent.state_dir_unusable", path=str(state_dir), error=str(exc),
                       action="create the state directory writable by the agent (the unit's StateDirectory=)")
        self.outbox = Outbox(state_dir / OUTBOX_FILE, max_rows=settings.outbox_max_rows)
        m.outbox_salvaged.inc(self.outbox.salvaged)
        m.outbox_lost.inc(self.outbox.lost)
        self.engine = DetectionEngine(settings.detection, gateway=settings.gateway, agent_version=__version__,
                                      profiles=settings.profiles())
        self.checkpoint_path: Path = state_dir / CHECKPOINT_FILE
        self._checkpoints: CheckpointStore | None = None
        self._writer: CheckpointWriter | None = None
        self._unrestored: dict[AssetKey, None] = {}  # insertion-ordered set
        self._orphans: dict[AssetKey, list[AlertEvent]] = {}  # ledger events of assets not held yet
        self._round: deque[AssetKey] = deque()
        self._round_started: float | None = None
        self._round_batches = 0
        self._round_mark: int | None = None  # journal rows up to here are covered once the round is written
        self._round_failed = False
        self._open_checkpoints()
        self.journal = TelemetryJournal(state_dir / JOURNAL_FILE) if settings.telemetry_journal else None
        self._asset_seen: dict[AssetKey, datetime] = {}
        self._window_full = False
        self._dropped_seen = 0
        self._pressed_at = 0.0
        self._mirrored: dict[str, int] = {}
        self._asset_gauges: dict[AssetKey, tuple[float, float]] = {}  # health score, warm-up
        self.mqtt = MqttClient(
            settings.mqtt,
            client_id=settings.mqtt.client_id or f"pdm-edge-agent-{settings.gateway}",
            subscriptions=[
                (self.topics.all_assets(AssetChannel.TELEMETRY), settings.telemetry_qos),
                (self.topics.all_assets(AssetChannel.CMD), 1),
                (self._link_topic, 1),
            ],
            on_message=self.receive,
            on_connect=self._reconnected.set,
            on_publish_ack=self._acks.put,
            on_publish_refused=lambda mid, reason: self._refusals.put((mid, reason)),
            defer_ack=True,
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
        self._replay_journal()
        self._reconcile_ledger()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve metrics and connect to the broker in the background."""
        _log.info("agent.starting", gateway=self.settings.gateway, site=self.settings.site, version=__version__,
                  config_hash=self._config_hash, state_dir=str(self.settings.state_dir),
                  assets_restored=len(self._unrestored) + len(self.engine.asset_keys()),
                  pending_events=len(self.outbox))
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
        if "detection" in top:
            self.engine.reconfigure(self.settings.detection)
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
        self.outbox.commit()
        self._checkpoint_slice()
        self._restore_slice()
        self._settled = self._inbound.empty() and len(self.outbox) == 0
        return handled

    def idle(self) -> bool:
        """True when the last loop pass ended with nothing queued inbound or waiting in the outbox.

        Safe from any thread (the demo and tests poll it): the loop sets the flag at the end of each
        pass and clears it as soon as a pass takes a message, before counting it; counting the outbox
        from another thread raced its updates (a negative length).
        """
        return self._settled

    def shutdown(self) -> None:
        """Checkpoint, say ``offline`` on the retained status, disconnect and close the outbox.

        Every step runs even when an earlier one failed (each failure is one log line), and the
        metrics endpoint closes in parallel: its serving thread polls for shutdown twice a second.
        QoS 1 messages still queued are not acknowledged, so the broker delivers them again after
        the restart; QoS 0 ones are counted as dropped.
        """
        server, self._metrics_server = self._metrics_server, None
        closing = threading.Thread(target=server.close, name="metrics-close") if server is not None else None
        if closing is not None:
            closing.start()
        self._shutdown_step("checkpoint", self._save_all)
        # The MQTT thread says offline after the connection's birth, then disconnects (its farewell):
        # published from here, a stop during connect let the birth overtake it and "online" stayed retained.
        self._shutdown_step("mqtt", self._stop_mqtt)
        self._shutdown_step("inbound", self._discard_inbound)  # the network thread has ended: nothing more comes
        self._shutdown_step("outbox", self._close_outbox)
        if self.journal is not None:
            self._shutdown_step("journal", self.journal.close)
        if self._writer is not None:
            self._shutdown_step("checkpoint_writer", self._writer.close)
        if closing is not None:
            closing.join()
        _log.info("agent.stopped", received=self.counters.received, valid=self.counters.valid,
                  dead_lettered=self.counters.dead_lettered, dropped=sum(self.dropped.values()),
                  processing_failures=self.processing_failures)

    def now(self) -> datetime:
        """The agent's notion of now: wall clock, or the newest telemetry time with ``clock = "telemetry"``."""
        if self.settings.clock == "telemetry":
            return self._event_time or self._clock()
        return self._clock()

    def _advance_event_time(self, ts: datetime | None) -> None:
        """Move the telemetry clock (``now()`` with ``clock = "telemetry"``) forward to ``ts``, never back."""
        if ts is not None and (self._event_time is None or ts > self._event_time):
            self._event_time = ts

    def health(self) -> dict[str, str]:
        """The agent's own runtime conditions, ``ok`` or what is degraded (part of the gateway status)."""
        return {
            "intake": self._verdict(self._backpressure),
            "outbox_writes": self._verdict(self._outbox_disk),
            "checkpoint_writes": self._verdict(self._checkpoint_disk),
            "journal_writes": self._verdict(self._journal_disk),
            "publishing": self._verdict(self._publish_refused),
        }

    @staticmethod
    def _verdict(condition: _Condition) -> str:
        return "ok" if condition.detail is None else f"degraded: {condition.detail}"[:200]

    @staticmethod
    def _shutdown_step(name: str, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # a failed step must not skip the others or turn SIGTERM into exit 1
            _log.error("agent.shutdown_step_failed", step=name, error=f"{type(exc).__name__}: {exc}",
                       action="report this with the log; state on disk is kept")

    def _discard_inbound(self) -> None:
        while True:
            try:
                msg = self._inbound.get_nowait()
            except queue.Empty:
                return
            if msg.qos == 0:
                self.dropped["shutdown"] += 1
                self.metrics.dropped.labels(reason="shutdown").inc()

    def _stop_mqtt(self) -> None:
        """Disconnect with a retained ``offline`` as the last word; not connected, the Last Will says it."""
        self.mqtt.stop(farewell=WillMessage(self._status_topic, self._status_payload("offline")))

    def _close_outbox(self) -> None:
        self._apply_acks()
        self.outbox.close()

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

    def receive(self, msg: InboundMessage) -> None:
        """Take one inbound message for the main loop (the MQTT adapter's ``on_message``; safe from any thread)."""
        # QoS 1 is bounded by the broker's in-flight window (receive_maximum): always taken. QoS 0
        # has no flow control: beyond the bound it is dropped here, counted, never silently.
        if msg.qos == 0 and self._inbound.qsize() >= self.settings.inbound_queue_max:
            self.dropped["queue_full"] += 1
            self.metrics.dropped.labels(reason="queue_full").inc()
            return
        self._inbound.put(msg)

    # --- main loop: inbound ---------------------------------------------------------------------

    def _drain_inbound(self, timeout_s: float) -> int:
        try:
            first = self._inbound.get(timeout=timeout_s)
        except queue.Empty:
            return 0
        self._settled = False
        if self.mqtt.unacknowledged >= self.settings.mqtt.receive_maximum:
            self._window_full = True  # the broker has stopped sending: intake waits for us
        batch = [first]
        while len(batch) < _BATCH_MAX:
            try:
                batch.append(self._inbound.get_nowait())
            except queue.Empty:
                break
        outputs: list[AlertEvent | AssetState] = []
        learned: list[tuple[str, bytes, datetime]] = []
        for msg in batch:
            out, took = self._handle(msg)
            outputs += out
            if took:
                learned.append((msg.topic, msg.payload, msg.received_at))
        if self.journal is not None and self._checkpoints is not None:  # nothing to replay onto without them
            if self.journal.append(learned):
                self._journal_disk.clear()
            else:
                self._journal_disk.set(self.journal.failing or "telemetry journal unavailable")
        self._store(outputs)
        # Journaled, and stored (on disk, or held in memory while the disk refuses): now the broker
        # may forget them.
        for msg in batch:
            self.mqtt.ack(msg)
        return len(batch)

    def _handle(self, msg: InboundMessage) -> tuple[list[AlertEvent | AssetState], bool]:
        """Ingest and process one message: what it produced, and whether a model took it (journal it)."""
        if msg.topic == self._link_topic:
            self._link_notified(msg.payload)
            return [], False
        result = ingest(self.topics, msg.topic, msg.payload, msg.received_at)
        self.counters.count(result)
        m = self.metrics
        if isinstance(result, Rejected):
            m.unknown_received.inc()
            m.ingest.dead_lettered.labels(reason=result.letter.reason).inc()
            self._dead_letter(result.topic, result.letter)
            return [], False
        try:
            if isinstance(result, CommandReceived):
                m.command_received.inc()
                self._ensure_restored((result.site, result.asset))
                gated = self.commands.apply(result, self.engine, now=self.now(), wall_s=self._clock().timestamp())
                if gated.rejected is not None:
                    m.ingest.dead_lettered.labels(reason=gated.rejected.letter.reason).inc()
                    self._dead_letter(gated.rejected.topic, gated.rejected.letter)
                else:
                    m.command_valid.inc()
                return gated.events, False
            tel = result.telemetry
            m.telemetry_received.inc()
            m.telemetry_valid.inc()
            return self._process(tel, msg.received_at), True
        except Exception as exc:  # issue 16: no single message may stop the agent
            self._processing_failed(msg, exc)
            return [], False

    def _process(self, tel: Telemetry, received_at: datetime) -> list[AlertEvent | AssetState]:
        key = (tel.site, tel.asset)
        if self._unrestored:
            self._ensure_restored(key)
        self._asset_seen[key] = received_at
        self._advance_event_time(tel.ts)
        started = time.perf_counter()
        out = self.engine.process(tel, tel.ts)
        self.metrics.detector_latency.observe(time.perf_counter() - started)
        if self._orphans and key in self._orphans:
            self._adopt_orphans(key)
        return out

    def _processing_failed(self, msg: InboundMessage, exc: Exception) -> None:
        self.processing_failures += 1
        self.metrics.processing_failed.inc()
        self.metrics.ingest.dead_lettered.labels(reason="processing_failed").inc()
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ is not None else None
        where = f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}" if frame is not None else "?"
        detail = f"{type(exc).__name__}: {exc}"[:400]
        _log.error("telemetry.processing_failed", topic=msg.topic[:200], error=detail, where=where,
                   failures=self.processing_failures,
                   action="the message was dead-lettered and the agent carries on; report it with the dead letter")
        letter = DeadLetter.build(reason="processing_failed", detail=detail, topic=msg.topic, payload=msg.payload,
                                  received_at=msg.received_at)
        self._dead_letter(self.topics.deadletter_for(msg.topic), letter)

    def _store(self, outputs: Iterable[AlertEvent | AssetState]) -> None:
        entries: list[OutboxEntry] = []
        alerts = False
        for ev in outputs:
            if isinstance(ev, AlertEvent):
                alerts = True
                topic = self.topics.asset(ev.site, ev.asset, AssetChannel.ALERT)
                signed = sign_alert(ev, self.signer, int(self._clock().timestamp()))
                entries.append(OutboxEntry(topic, signed.to_json(), 1, False, ev.event.value,
                                           AlertRef(ev.alert_id, ev.site, ev.asset, ev.event_seq)))
                _log.info("alert.event", alert_id=ev.alert_id, alert_event=ev.event.value, event_seq=ev.event_seq,
                          severity=ev.severity.value, fault=ev.probable_fault.code)
            else:
                self._asset_gauges[(ev.site, ev.asset)] = (ev.health_score, ev.warmup_progress)
                topic = self.topics.asset(ev.site, ev.asset, AssetChannel.STATE)
                entries.append(OutboxEntry(topic, ev.to_json(), 1, True, "state"))
        if not entries:
            return
        self.outbox.put_many(entries)
        if alerts:
            counts: dict[Severity, int] = {}
            for alert in self.engine.open_alerts():
                counts[alert.severity] = counts.get(alert.severity, 0) + 1
            self.metrics.set_open_alerts(counts)

    def _dead_letter(self, topic: str, letter: DeadLetter) -> None:
        _log.info("telemetry.dead_lettered", reason=letter.reason, topic=letter.topic[:200], detail=letter.detail[:200])
        try:
            # QoS 0 by contract (DESIGN.md §2): dead letters are diagnostics, not alerts.
            self.mqtt.publish(topic, letter.to_json(), qos=0)
        except MqttNotConnected:
            _log.warning("deadletter.not_published", reason=letter.reason,
                         action="broker unreachable; the refusal is counted in metrics")

    # --- main loop: timers, health --------------------------------------------------------------

    def _timers(self) -> None:
        mono = time.monotonic()
        if mono >= self._next_tick:
            self._next_tick = mono + 1.0
            # With the telemetry clock there is no "now" before the first sample: ticking with the
            # wall clock instead would find every restored asset silent for months after a restart.
            if self.settings.clock == "wall" or self._event_time is not None:
                self._store(self.engine.tick(self.now()))
            self._observe()
        journal_full = self.journal is not None and len(self.journal) >= self.settings.journal_max_rows
        if mono >= self._next_checkpoint or (journal_full and not self._round and self._round_batches == 0):
            self._next_checkpoint = mono + self.settings.checkpoint_interval_s
            self._begin_round()
        if mono >= self._next_status and self.mqtt.is_connected:
            self._next_status = mono + self.settings.status_interval_s
            self._publish_status()

    def _observe(self) -> None:
        """Once a second: gauges and degraded conditions (two SQL queries the hot path need not pay for)."""
        m = self.metrics
        m.mqtt_connected.set(1 if self.mqtt.is_connected else 0)
        m.outbox.observe(len(self.outbox), self.outbox.oldest_age_s())
        # The outbox keeps totals; the counters follow them.
        for kind, n in self.outbox.dropped.items():
            m.outbox.dropped.labels(event=kind).inc(n - self._mirrored.get(kind, 0))
            self._mirrored[kind] = n
        m.outbox_write_failures.inc(self.outbox.write_failures - self._mirrored.get("write_failures", 0))
        self._mirrored["write_failures"] = self.outbox.write_failures
        state = self.outbox.health
        m.outbox_in_memory.set(state.in_memory)
        if state.ok:
            self._outbox_disk.clear()
        else:
            self._outbox_disk.set(f"{state.in_memory} events in memory; {state.write_error or 'retrying'}")
        depth = self._inbound.qsize()
        m.inbound_depth.set(depth)
        dropped = sum(self.dropped.values())
        if self._window_full or dropped > self._dropped_seen:
            self._pressed_at = time.monotonic()
            self._backpressure.set(
                f"flow-control window ({self.settings.mqtt.receive_maximum}) full" if self._window_full
                else f"{dropped - self._dropped_seen} QoS 0 samples dropped in the last second")
        elif time.monotonic() - self._pressed_at >= _BACKPRESSURE_CLEAR_S:
            self._backpressure.clear()
        self._window_full, self._dropped_seen = False, dropped
        m.checkpoint_assets.set(len(self._round))
        if self.journal is not None:
            m.journal_rows.set(len(self.journal))
        known = self.engine.asset_keys()
        seen, gauges = self._asset_seen, self._asset_gauges
        if len(seen) > len(known) or len(gauges) > len(known):  # assets the engine refused or dropped
            held_keys = set(known)
            self._asset_seen = {k: v for k, v in seen.items() if k in held_keys}
            self._asset_gauges = {k: v for k, v in gauges.items() if k in held_keys}
        m.assets.publish({
            key: AssetGauges(g[0] if (g := self._asset_gauges.get(key)) else None, g[1] if g else None,
                             s.timestamp() if (s := self._asset_seen.get(key)) else None)
            for key in known
        })

    def _publish_status(self) -> None:
        try:
            self.mqtt.publish(self._status_topic, self._status_payload("online"), qos=1, retain=True)
        except MqttNotConnected:
            return

    def _status_payload(self, status: str) -> bytes:
        checks = {**local_checks(self.settings, now=self._clock()), **self.health()} if status == "online" else {}
        return GatewayStatus(
            status="online" if status == "online" else "offline",
            gateway=self.settings.gateway,
            version=__version__,
            config_hash=self._config_hash,
            ts=self._clock(),
            health=checks,
        ).to_json()

    # --- main loop: publishing ------------------------------------------------------------------

    def _apply_acks(self) -> None:
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            row = self._in_flight.pop(mid, None)
            if row is not None:  # None: an ack for a status publish, an echo or a copy sent before a reconnect
                self.outbox.ack(row)
                self._retry_at.pop(row, None)
                if (echo := self._echo_of.pop(row, None)) is not None:
                    self._remember_echo(*echo)
        while True:
            try:
                mid, reason = self._refusals.get_nowait()
            except queue.Empty:
                break
            row = self._in_flight.pop(mid, None)
            self.metrics.publish_refused.labels(reason=reason[:64]).inc()
            self._publish_refused.set(f"broker refused publishes: {reason}")
            if row is not None:
                # Free the window slot now; the event stays in the outbox and is tried again later.
                self._retry_at[row] = time.monotonic() + _REFUSED_RETRY_S

    def _publish_pending(self) -> None:
        if self._reconnected.is_set():
            # After a reconnect nothing in flight can be trusted to arrive: send everything again.
            # Receivers drop repeats by (alert_id, event_seq); retained state is idempotent.
            self._reconnected.clear()
            self._in_flight.clear()
            self._echo_of.clear()
            self._cursor = 0
            # An echo that fell due while the broker was away waits as long again from now: sent at
            # once, it would reach the broker before the cloud bridge is back and be lost the same way.
            self._defer_echoes()
        if not self.mqtt.is_connected:
            return
        self._send_echoes()
        room = self.settings.publish_window - len(self._in_flight)
        if room <= 0:
            return
        if self._retry_at:
            room = self._retry_refused(room)
        if room <= 0 or self._cursor >= self.outbox.last_id:
            return
        for item in self.outbox.pending(room, after=self._cursor):
            self._cursor = item.id
            if item.id in self._retry_at:
                continue  # refused recently; _retry_refused sends it when due
            ref = (item.alert_id, item.event_seq) if (
                self.settings.alert_echo_s > 0 and item.alert_id is not None and item.event_seq is not None) else None
            try:
                # The alert's earlier events first: if the broker dropped them, the receiver gets them in order.
                if ref is not None and ref[0] in self._echoes and not self._echo_before_newer(self._echoes[ref[0]]):
                    return
                mid = self.mqtt.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
            except MqttNotConnected:
                return
            self._in_flight[mid] = item.id
            if ref is not None:
                self._echo_of[item.id] = (*ref, item.topic, item.payload)

    def _remember_echo(self, alert_id: str, seq: int, topic: str, payload: bytes) -> None:
        group = self._echoes.setdefault(alert_id, _EchoGroup(0.0))
        group.events[seq] = (topic, payload)
        group.due = time.monotonic() + self.settings.alert_echo_s
        if sum(len(g.events) for g in self._echoes.values()) > _ECHO_MAX:
            first = min(self._echoes, key=lambda a: self._echoes[a].due)
            self._echo(self._echoes.pop(first))  # sent early (or, offline, given up): the bound holds

    def _echo(self, group: _EchoGroup, after: int = 0) -> bool:
        """Publish an alert's remembered events past seq ``after`` in order (QoS 1, untracked); False when offline."""
        try:
            for seq in sorted(group.events):
                if seq > after:
                    self.mqtt.publish(*group.events[seq], qos=1)
        except MqttNotConnected:
            return False
        return True

    def _echo_before_newer(self, group: _EchoGroup) -> bool:
        """Publish the group's events not yet re-sent before a newer one; False when offline.

        Should those copies be lost too, the newer event reaches the bridge with lower seqs
        missing: the bridge holds it (``outbox.gap_wait_s``, 300 s by default, longer than
        ``alert_echo_s``) until the timed echo brings the whole group.
        """
        if not self._echo(group, after=group.resent_through):
            return False
        group.resent_through = max(group.events, default=0)
        return True

    def _link_notified(self, payload: bytes) -> None:
        """The gateway broker's bridge to the cloud connected (``1``) or broke (``0``).

        While it is down echoes are held: sent now they would only join the queue the bridge forwards
        the moment it is back, ahead of a cloud bridge that may still be reconnecting to a restarted
        cloud broker (the loss the echo exists for). Once it is back they are due ``alert_echo_s`` later.
        """
        up = {b"1": True, b"0": False}.get(payload.strip())
        if up is None:
            _log.warning("uplink.unknown_notification", topic=self._link_topic, payload=payload[:40].hex(),
                         action="the Mosquitto bridge's notification_topic should carry 1 or 0; check its config")
            return
        self.metrics.uplink_connected.set(1 if up else 0)
        if up and self._uplink is False:
            self._defer_echoes()
            _log.info("uplink.restored", echoes_due_in_s=self.settings.alert_echo_s, alerts=len(self._echoes))
        elif not up and self._uplink is not False:
            _log.warning("uplink.lost", topic=self._link_topic,
                         action="the gateway broker's bridge to the cloud is down: alert events wait in its "
                         "queue and are echoed once it is back; check the uplink and the cloud broker")
        self._uplink = up

    def _defer_echoes(self) -> None:
        """Make every remembered echo due ``alert_echo_s`` from now at the earliest."""
        later = time.monotonic() + self.settings.alert_echo_s
        for group in self._echoes.values():
            group.due = max(group.due, later)

    def _send_echoes(self) -> None:
        """Publish the alerts whose echo is due, and forget them (held while the uplink is down)."""
        if self._uplink is False:
            return
        now = time.monotonic()
        for alert_id in [a for a, g in self._echoes.items() if g.due <= now]:
            if not self._echo(self._echoes[alert_id]):
                return  # due still: sent after the reconnect
            del self._echoes[alert_id]

    def _retry_refused(self, room: int) -> int:
        now = time.monotonic()
        due = sorted(row for row, at in self._retry_at.items() if at <= now)[:room]
        for row in due:
            del self._retry_at[row]
            items = self.outbox.pending(1, after=row - 1)
            if not items or items[0].id != row:
                continue  # acknowledged meanwhile, or dropped by the bound
            item = items[0]
            try:
                mid = self.mqtt.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
            except MqttNotConnected:
                self._retry_at[row] = now
                return 0
            self._in_flight[mid] = row
            room -= 1
        if not self._retry_at:
            self._publish_refused.clear()
        return room

    # --- checkpoints ----------------------------------------------------------------------------

    def _open_checkpoints(self) -> None:
        """Open the per-asset store (on start, and again at each interval while it is unusable)."""
        directory = self.settings.state_dir / CHECKPOINT_DIR
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if not directory.is_dir():
                raise CheckpointError(f"{directory} exists and is not a directory")
            store = CheckpointStore(self.checkpoint_path, model_version=MODEL_VERSION, agent_version=__version__)
        except (OSError, CheckpointError) as exc:
            self._checkpoint_disk.set(f"checkpoints unavailable: {exc}")
            return
        self._checkpoints = store
        self._writer = CheckpointWriter(store)
        self._checkpoint_disk.clear()
        legacy = self.settings.state_dir / _LEGACY_CHECKPOINT
        if legacy.exists():
            # Format 1 was an unrestricted pickle of the whole engine: loading it could run code.
            with contextlib.suppress(OSError):
                legacy.replace(legacy.with_name(legacy.name + ".format1"))
            _log.warning("checkpoint.legacy_ignored", path=str(legacy),
                         action="assets re-warm once; the old file was renamed *.format1 and can be deleted")
        known = set(self.engine.asset_keys())
        self._unrestored.update(dict.fromkeys(k for k in store.asset_keys() if k not in known))

    def _ensure_restored(self, key: AssetKey) -> None:
        if key in self._unrestored:
            del self._unrestored[key]
            self._restore(key)

    def _restore(self, key: AssetKey) -> None:
        assert self._checkpoints is not None  # keys come from the store
        try:
            stored = self._checkpoints.load(key)
            self.engine.restore(key, checkpoint.decode(stored.state, self.engine.shared_refs()))
            # With clock = "telemetry", now() after a restart is the newest telemetry time the
            # checkpoints know, not the wall clock: otherwise a command (a snooze bounded in
            # telemetry time) is judged months off, and ticks call every restored asset silent.
            self._advance_event_time(self.engine.last_seen(key))
        except (CheckpointRefused, TypeError) as exc:
            self.metrics.checkpoint_failures.labels(operation="restore").inc()
            _log.error("checkpoint.asset_refused", site=key[0], asset=key[1], reason=str(exc)[:300],
                       action="this asset re-warms from scratch; its open alerts are kept (outbox ledger)")
            self._checkpoints.delete([key])
        if key in self._orphans:
            self._adopt_orphans(key)

    def _restore_slice(self) -> None:
        if not self._unrestored:
            return
        deadline = time.perf_counter() + _SLICE_S
        while self._unrestored and time.perf_counter() < deadline:
            key = next(iter(self._unrestored))
            del self._unrestored[key]
            self._restore(key)

    def _replay_journal(self) -> None:
        """Feed the samples no checkpoint covers back into the restored models (after a crash).

        A row an asset's checkpoint already covers (its newest sample is not older) is skipped. The
        alert events a replay re-derives that the outbox ledger holds (same alert, ``event_seq`` not
        newer) were stored before the crash and are not stored again; anything newer is, as live.
        """
        if self.journal is None or len(self.journal) == 0:
            return
        started = time.perf_counter()
        known = {record.alert_id: record.event_seq for record in self.outbox.alerts()}
        replayed = covered = 0
        for row in self.journal.rows():
            result = ingest(self.topics, row.topic, row.payload, row.received_at)
            if not isinstance(result, Accepted):
                continue  # journaled only after it was accepted: a newer contract refuses it now
            tel = result.telemetry
            key = (tel.site, tel.asset)
            self._ensure_restored(key)
            seen = self.engine.last_seen(key)
            if seen is not None and tel.ts <= seen:
                covered += 1
                continue
            try:
                out = self._process(tel, row.received_at)
            except Exception as exc:  # as live: one sample must not stop the start
                _log.error("journal.replay_failed", topic=row.topic[:200], error=f"{type(exc).__name__}: {exc}"[:300],
                           action="the sample is skipped; report it with the log")
                continue
            replayed += 1
            self._store(ev for ev in out
                        if not (isinstance(ev, AlertEvent) and known.get(ev.alert_id, -1) >= ev.event_seq))
        self.outbox.commit()
        self.metrics.journal_replayed.inc(replayed)
        _log.info("journal.replayed", samples=replayed, covered_by_checkpoint=covered,
                  seconds=round(time.perf_counter() - started, 3))

    def _reconcile_ledger(self) -> None:
        """Bring every alert track up to the newest event the outbox ledger holds for it."""
        adopted = 0
        for record in self.outbox.alerts():
            try:
                ev = AlertEvent.from_json(record.payload, max_bytes=1 << 20)
            except Exception as exc:  # a ledger row the contract refuses: skip it, keep the others
                _log.warning("outbox.ledger_row_refused", alert_id=record.alert_id[:200], error=str(exc)[:200])
                continue
            key = (ev.site, ev.asset)
            self._ensure_restored(key)
            if self.engine.adopt(ev):
                adopted += 1
            elif key not in self.engine.asset_keys():
                self._orphans.setdefault(key, []).append(ev)
        if adopted:
            _log.info("checkpoint.alerts_caught_up", alerts=adopted,
                      detail="alert events newer than the checkpoint were taken from the outbox ledger")

    def _adopt_orphans(self, key: AssetKey) -> None:
        if key not in self.engine.asset_keys():
            return
        for ev in self._orphans.pop(key, []):
            self.engine.adopt(ev)

    def _begin_round(self) -> None:
        if self._checkpoints is None:
            self._open_checkpoints()
            if self._checkpoints is None:
                return
        if self._round:
            return  # the previous round is still being serialised: its assets stay queued
        self._mark_round()
        dirty = self.engine.take_dirty()
        if dirty:
            self._round.extend(dirty)
            self._round_started = time.perf_counter()
        self._round_done()

    def _mark_round(self) -> None:
        # Every asset that took a journaled sample up to here is dirty now, so it is in this round
        # (or in one still being written): once all of them are written, those rows are covered.
        if self.journal is not None:
            self._round_mark = self.journal.last_id

    def _round_done(self) -> None:
        """When nothing is left to serialise or write: trim the journal behind the round, time it."""
        if self._round or self._round_batches:
            return
        if self.journal is not None and self._round_mark is not None and not self._round_failed:
            self.journal.forget_upto(self._round_mark)
        self._round_mark, self._round_failed = None, False
        if self._round_started is not None:
            self.metrics.checkpoint_seconds.observe(time.perf_counter() - self._round_started)
            self._round_started = None

    def _checkpoint_slice(self, budget_s: float = _SLICE_S) -> None:
        if self._writer is not None:
            for done in self._writer.results():
                self._saved(done)
        if not self._round or self._writer is None:
            return
        deadline = time.perf_counter() + budget_s
        batch: list[tuple[AssetKey, bytes, int]] = []
        refs = self.engine.shared_refs()
        mark = self.outbox.last_id
        while self._round and time.perf_counter() < deadline:
            key = self._round.popleft()
            state = self.engine.snapshot(key)
            if state is not None:
                batch.append((key, checkpoint.encode(state, refs), mark))
        if batch:
            self._round_batches += 1
            self._writer.submit(batch)

    def _saved(self, done: checkpoint.SavedBatch) -> None:
        self._round_batches -= 1
        keys = [key for key, _mark in done.items]
        if done.error is not None:
            self.metrics.checkpoint_failures.labels(operation="save").inc()
            self.engine.mark_dirty(keys)
            self._checkpoint_disk.set(done.error)
            self._round_failed = True  # its journal rows stay until a later round writes these assets
        else:
            self._checkpoint_disk.clear()
            self.outbox.forget_resolved([(site, asset, mark) for (site, asset), mark in done.items])
        self._round_done()

    def _save_all(self) -> None:
        """At shutdown: serialise every changed asset now and wait for the writer."""
        if self._checkpoints is None or self._writer is None:
            return
        queued = set(self._round)
        self._mark_round()
        self._round.extend(k for k in self.engine.take_dirty() if k not in queued)
        if self._round_started is None:
            self._round_started = time.perf_counter()
        self._checkpoint_slice(budget_s=_SHUTDOWN_SAVE_S)
        if not self._writer.flush(_SHUTDOWN_SAVE_S):
            _log.error("checkpoint.shutdown_timeout", action="the disk is very slow; models resume from the "
                       "previous checkpoint (minutes of learning lost, no re-warm)")
        for done in self._writer.results():
            self._saved(done)
        self._round_done()  # nothing was dirty: the journal is covered as it stands
