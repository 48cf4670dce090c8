"""The MQTT side: parse each alert message once and persist it in the outbox before it is acknowledged.

``handle`` runs on paho's network thread and the broker gets PUBACK only after it returns, so an
event is durable before the broker forgets it. Stale and repeated events (``event_seq`` at or below
what this alert already had) are recognised by the outbox and counted, not delivered again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from cloud_bridge.errors import OutboxError, OutboxFullError
from cloud_bridge.outbox import EnqueueResult, Outbox
from pdm_common.contracts import MAX_ALERT_BYTES, AlertEvent
from pdm_common.errors import ContractError
from pdm_common.logs import get_logger
from pdm_common.mqtt import InboundMessage
from pdm_common.topics import AssetChannel, Topics

__all__ = ["AlertConsumer", "ConsumerStats"]

_log = get_logger(__name__)

STORE_ATTEMPTS = 5
"""Tries to persist one event when the database hiccups (0.1+0.2+0.4+0.8 s ≈ 1.5 s of waiting): long
enough to ride out a lock or failover blip, short enough not to stall the MQTT keep-alive (30 s)."""


@dataclass(slots=True)
class ConsumerStats:
    """Counters of the MQTT intake."""

    received: int = 0
    accepted: int = 0
    stale: int = 0
    invalid: int = 0
    store_failed: int = 0


class AlertConsumer:
    """Turns inbound alert messages into outbox rows."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        topics: Topics,
        route: Callable[[AlertEvent], str],
        on_accepted: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self._outbox = outbox
        self._topics = topics
        self._route = route
        self._on_accepted = on_accepted
        self._clock = clock
        self._pause = threading.Event()
        self.stats = ConsumerStats()

    def handle(self, message: InboundMessage) -> None:
        """Validate and persist one message (paho network thread)."""
        self.stats.received += 1
        try:
            where = self._topics.parse(message.topic)
            if where.channel is not AssetChannel.ALERT:
                raise ContractError("unknown_topic", f"not an alert topic: {message.topic[:200]}")
            alert = AlertEvent.from_json(message.payload, max_bytes=MAX_ALERT_BYTES)
            if (alert.site, alert.asset) != (where.site, where.asset):
                raise ContractError("invalid_field", "site/asset in the payload differ from the topic")
        except ContractError as exc:
            self.stats.invalid += 1
            _log.warning("alert.invalid", topic=message.topic[:200], reason=exc.reason, detail=exc.detail[:300],
                         action="fix the publishing agent; the message is dropped")
            return
        if self.accept(alert) is None:
            # Raising keeps the message unacknowledged: the MQTT client reconnects and the broker
            # redelivers it from the persistent session, so an outage of the outbox loses nothing.
            raise OutboxError(f"alert {alert.alert_id} seq {alert.event_seq} not stored; left for redelivery")

    def accept(self, alert: AlertEvent) -> EnqueueResult | None:
        """Persist a validated alert event; returns None when it could not be stored."""
        desk = self._route(alert)
        for attempt in range(STORE_ATTEMPTS):
            try:
                result = self._outbox.enqueue(alert, desk=desk, now=self._clock())
            except OutboxFullError as exc:
                self.stats.store_failed += 1
                _log.error("alert.refused_outbox_full", alert_id=alert.alert_id, event_seq=alert.event_seq,
                           error=str(exc),
                           action="desks are not keeping up: check them or raise outbox.max_events; "
                           "the broker redelivers the event")
                return None
            except OutboxError as exc:
                if attempt + 1 == STORE_ATTEMPTS:
                    self.stats.store_failed += 1
                    _log.error("alert.store_failed", alert_id=alert.alert_id, event_seq=alert.event_seq,
                               error=str(exc), action="check the outbox database; the broker will redeliver the event")
                    return None
                self._pause.wait(0.1 * 2**attempt)
                continue
            if result is EnqueueResult.STALE:
                self.stats.stale += 1
                _log.info("alert.stale", alert_id=alert.alert_id, event_seq=alert.event_seq)
            else:
                self.stats.accepted += 1
                self._on_accepted()
            return result
        return None
