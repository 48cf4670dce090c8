"""Wiring of the edge agent: MQTT adapter → ingest core → detector → outbox → MQTT.

Threads: paho's network thread (owned by :class:`~pdm_common.mqtt.MqttClient`) only enqueues
inbound messages into a bounded queue; the agent's main loop (the caller of :meth:`EdgeAgent.run`)
does all the work, so a slow detector never blocks keep-alives, and a full queue is counted and logged.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from pdm_common import __version__
from pdm_common.contracts import GatewayStatus
from pdm_common.logs import get_logger
from pdm_common.mqtt import InboundMessage, MqttClient, MqttNotConnected, WillMessage
from pdm_common.settings import config_hash
from pdm_common.topics import AssetChannel, Topics

from edge_agent.config import AgentSettings
from edge_agent.ingest import Accepted, CommandReceived, IngestCounters, IngestResult, Rejected, ingest

__all__ = ["EdgeAgent"]

_log = get_logger(__name__)
_POLL_S = 0.2
"""Longest the main loop blocks on an empty queue: bounds shutdown latency and timer jitter."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class EdgeAgent:
    """One gateway's agent. Call :meth:`start`, then :meth:`run` until :meth:`request_stop`."""

    def __init__(self, settings: AgentSettings, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.settings = settings
        self.topics = Topics(settings.mqtt.topic_prefix)
        self.counters = IngestCounters()
        self.queue_dropped = 0
        self._clock = clock
        self._stop = threading.Event()
        self._inbound: queue.Queue[InboundMessage] = queue.Queue(maxsize=settings.inbound_queue_max)
        self._status_topic = self.topics.gateway_status(settings.site, settings.gateway)
        self._config_hash = config_hash(settings)
        self.mqtt = MqttClient(
            settings.mqtt,
            client_id=settings.mqtt.client_id or f"pdm-edge-agent-{settings.gateway}",
            subscriptions=[
                (self.topics.all_assets(AssetChannel.TELEMETRY), settings.telemetry_qos),
                (self.topics.all_assets(AssetChannel.CMD), 1),
            ],
            on_message=self._enqueue,
            will=WillMessage(self._status_topic, self._status_payload("offline")),
            birth=WillMessage(self._status_topic, self._status_payload("online")),
        )

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the broker in the background."""
        _log.info("agent.starting", gateway=self.settings.gateway, site=self.settings.site, version=__version__,
                  config_hash=self._config_hash)
        self.mqtt.start()

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from signal handlers and other threads)."""
        self._stop.set()

    def run(self) -> None:
        """Process inbound messages until :meth:`request_stop`, then shut down cleanly."""
        try:
            while not self._stop.is_set():
                self.step(_POLL_S)
        finally:
            self.shutdown()

    def step(self, timeout_s: float) -> int:
        """Handle every queued message (waiting up to ``timeout_s`` for the first); return how many."""
        handled = 0
        try:
            msg = self._inbound.get(timeout=timeout_s)
        except queue.Empty:
            return 0
        while True:
            self._handle(ingest(self.topics, msg.topic, msg.payload, msg.received_at))
            handled += 1
            try:
                msg = self._inbound.get_nowait()
            except queue.Empty:
                return handled

    def shutdown(self) -> None:
        """Publish nothing more and disconnect cleanly; the retained status says ``offline``."""
        if self.mqtt.is_connected:
            try:
                self.mqtt.publish(self._status_topic, self._status_payload("offline"), qos=1, retain=True)
            except MqttNotConnected:
                _log.warning("agent.status_not_published", status="offline")
        self.mqtt.stop()
        _log.info("agent.stopped", received=self.counters.received, valid=self.counters.valid,
                  dead_lettered=self.counters.dead_lettered, queue_dropped=self.queue_dropped)

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

    def _handle(self, result: IngestResult) -> None:
        self.counters.count(result)
        if isinstance(result, Rejected):
            self._dead_letter(result)
        elif isinstance(result, Accepted):
            _log.debug("telemetry.accepted", site=result.telemetry.site, asset=result.telemetry.asset,
                       seq=result.telemetry.seq)
        elif isinstance(result, CommandReceived):
            _log.info("command.received", site=result.site, asset=result.asset, command=result.command.command.value)

    def _dead_letter(self, rejected: Rejected) -> None:
        _log.info("telemetry.dead_lettered", reason=rejected.letter.reason, topic=rejected.letter.topic[:200],
                  detail=rejected.letter.detail[:200])
        try:
            # QoS 0 by contract (DESIGN.md §2): dead letters are diagnostics, not alerts.
            self.mqtt.publish(rejected.topic, rejected.letter.to_json(), qos=0)
        except MqttNotConnected:
            _log.warning("deadletter.not_published", reason=rejected.letter.reason,
                         action="broker unreachable; the refusal is counted in metrics")

    def _status_payload(self, status: str) -> bytes:
        return GatewayStatus(
            status="online" if status == "online" else "offline",
            gateway=self.settings.gateway,
            version=__version__,
            config_hash=self._config_hash,
            ts=self._clock(),
        ).to_json()
