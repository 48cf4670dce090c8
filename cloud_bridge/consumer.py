"""The MQTT side: parse each alert message once, check who may speak for it, persist it before it is acknowledged.

``handle`` runs on paho's network thread and the broker gets PUBACK only after it returns, so an
event is durable before the broker forgets it. Every message ends in exactly one outcome, counted in
:class:`ConsumerStats` (``received`` = ``accepted`` + ``stale`` + ``refused`` + ``store_failed``):

* ``accepted``: stored in the outbox;
* ``stale``: an ``event_seq`` at or below what the alert already had (a repeat), acknowledged;
* ``refused``: can never be stored — broken contract, wrong topic, a site or alert_id the topic does
  not own, a missing or bad gateway signature, a gateway that may not speak for the topic's site, an
  ``event_seq`` jump beyond ``max_seq_step``, or data the database refuses. Kept in the outbox's
  ``refused`` table with the reason, logged, counted by reason, and acknowledged: one bad message
  never blocks the ones behind it;
* ``store_failed``: the outbox is full or down (transient): the message stays unacknowledged and the
  broker redelivers it (counted again in ``received`` then).

Who may speak for what (DESIGN.md §2): the topic's site and asset, the payload's ``site``/``asset``
and the ``alert_id``'s site and asset must agree (the contract checks the last pair), and the alert's
signature (:meth:`AlertEvent.verify_auth`, no freshness window: alerts may wait in an outbox for
days) must be by a gateway key whose ``[gateways.<key_id>] site`` is the topic's site, with
``agent.gateway`` naming that same gateway.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cloud_bridge.config import GatewaySettings
from cloud_bridge.errors import NotStoredError, OutboxDataError, OutboxError, OutboxFullError
from cloud_bridge.outbox import EnqueueResult, Outbox
from pdm_common.contracts import MAX_ALERT_BYTES, AlertEvent
from pdm_common.errors import ContractError
from pdm_common.logs import get_logger
from pdm_common.mqtt import InboundMessage
from pdm_common.signing import SignatureError
from pdm_common.topics import AssetChannel, Topics

__all__ = ["AlertConsumer", "ConsumerStats", "Refusal"]

_log = get_logger(__name__)

STORE_ATTEMPTS = 5
"""Tries to persist one event when the database hiccups (0.1+0.2+0.4+0.8 s ≈ 1.5 s of waiting): long
enough to ride out a lock or failover blip, short enough not to stall the MQTT keep-alive (30 s)."""


@dataclass(slots=True)
class ConsumerStats:
    """Counters of the MQTT intake; the outcomes sum to ``received``."""

    received: int = 0
    accepted: int = 0
    stale: int = 0
    refused: int = 0
    store_failed: int = 0
    refused_by_reason: Counter[str] = field(default_factory=Counter)


class Refusal(Exception):
    """Why a message can never be stored: ``reason`` is a stable code (metrics label, refused table)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class AlertConsumer:
    """Turns inbound alert messages into outbox rows.

    Args:
        outbox: where accepted events and refused messages go.
        topics: the topic layout.
        route: the desk for an alert.
        on_accepted: called after each accepted event (wakes the dispatcher).
        clock: wall-clock seconds.
        gateways: the gateways that may publish alerts, by key_id.
        require_signed: refuse unsigned alerts (a signature that is present is always checked).
        max_seq_step: refuse events jumping further than this above the alert's last seq.
    """

    def __init__(
        self,
        *,
        outbox: Outbox,
        topics: Topics,
        route: Callable[[AlertEvent], str],
        on_accepted: Callable[[], None],
        clock: Callable[[], float],
        gateways: Mapping[str, GatewaySettings] | None = None,
        require_signed: bool = False,
        max_seq_step: int | None = None,
    ) -> None:
        self._outbox = outbox
        self._topics = topics
        self._route = route
        self._on_accepted = on_accepted
        self._clock = clock
        self._sites = {name: g.site for name, g in (gateways or {}).items()}
        self._keys: dict[str, str | list[str]] = {name: g.secrets() for name, g in (gateways or {}).items()}
        self._require_signed = require_signed
        self._max_seq_step = max_seq_step
        self._pause = threading.Event()
        self.stats = ConsumerStats()

    def handle(self, message: InboundMessage) -> None:
        """Validate, authenticate and persist one message (paho network thread).

        Raises:
            NotStoredError: the event could not be stored now; the message stays unacknowledged and
                the broker redelivers it (logged by the MQTT client as one line, no traceback).
            OutboxError: its refusal could not be stored either; likewise redelivered.
        """
        self.stats.received += 1
        try:
            alert = self._admit(message)
        except Refusal as refusal:
            self._refuse(message.topic, message.payload, refusal)
            return
        if self.accept(alert, topic=message.topic, payload=message.payload) is None:
            # Raising keeps the message unacknowledged: the MQTT client reconnects and the broker
            # redelivers it from the persistent session, so an outage of the outbox loses nothing.
            raise NotStoredError(f"alert {alert.alert_id} seq {alert.event_seq} not stored; left for redelivery")

    def _admit(self, message: InboundMessage) -> AlertEvent:
        """The message's alert, if the topic, the payload and the signer agree on who speaks for it.

        Raises:
            Refusal: naming what does not agree.
        """
        try:
            where = self._topics.parse(message.topic)
            if where.channel is not AssetChannel.ALERT:
                raise ContractError("unknown_topic", f"not an alert topic: {message.topic[:200]}")
            alert = AlertEvent.from_json(message.payload, max_bytes=MAX_ALERT_BYTES)
        except ContractError as exc:
            raise Refusal(exc.reason, exc.detail) from None
        if (alert.site, alert.asset) != (where.site, where.asset):
            raise Refusal("site_mismatch", f"payload and alert_id name {alert.site}/{alert.asset}, "
                          f"the topic {where.site}/{where.asset}")
        if alert.auth is None and not self._require_signed:
            return alert
        try:
            key_id = alert.verify_auth(self._keys, now_s=self._clock(), tolerance_s=None)
        except SignatureError as exc:
            raise Refusal(f"signature_{exc.reason}", exc.detail) from None
        if self._sites.get(key_id) != where.site:
            raise Refusal("site_not_owned", f"gateway {key_id!r} speaks for site {self._sites.get(key_id)!r}, "
                          f"not {where.site!r}")
        if alert.agent.gateway != key_id:
            raise Refusal("gateway_mismatch", f"signed by {key_id!r} but agent.gateway is {alert.agent.gateway!r}")
        return alert

    def _refuse(self, topic: str, payload: bytes, refusal: Refusal) -> None:
        """Keep the refused message with its reason; raises OutboxError if even that cannot be stored."""
        self._outbox.refuse(topic=topic, reason=refusal.reason, detail=refusal.detail, payload=payload,
                            now=self._clock())
        self.stats.refused += 1
        self.stats.refused_by_reason[refusal.reason] += 1
        _log.warning("alert.refused", topic=topic[:200], reason=refusal.reason, detail=refusal.detail[:300],
                     action="fix the publishing agent or the [gateways] table; the message is kept in the outbox's "
                     "refused list and acknowledged")

    def accept(self, alert: AlertEvent, *, topic: str = "", payload: bytes = b"") -> EnqueueResult | None:
        """Persist a validated alert event; returns None when it could not be stored now (transient).

        A jump beyond ``max_seq_step`` (:attr:`EnqueueResult.SEQ_JUMP`) and data the database refuses
        (returned as :attr:`EnqueueResult.STALE`) are refused, kept with the reason, and never raise:
        the caller acknowledges them.
        """
        desk = self._route(alert)
        for attempt in range(STORE_ATTEMPTS):
            try:
                result = self._outbox.enqueue(alert, desk=desk, now=self._clock(), max_seq_step=self._max_seq_step)
            except OutboxFullError as exc:
                self.stats.store_failed += 1
                _log.error("alert.refused_outbox_full", alert_id=alert.alert_id, event_seq=alert.event_seq,
                           error=str(exc),
                           action="desks are not keeping up: check them or raise outbox.max_events; "
                           "the broker redelivers the event")
                return None
            except OutboxDataError as exc:
                self._refuse(topic or self._topic_of(alert), payload or alert.to_json(),
                             Refusal("store_refused", str(exc)))
                return EnqueueResult.STALE
            except OutboxError as exc:
                if attempt + 1 == STORE_ATTEMPTS:
                    self.stats.store_failed += 1
                    _log.error("alert.store_failed", alert_id=alert.alert_id, event_seq=alert.event_seq,
                               error=str(exc), action="check the outbox database; the broker will redeliver the event")
                    return None
                self._pause.wait(0.1 * 2**attempt)
                continue
            if result is EnqueueResult.SEQ_JUMP:
                self._refuse(topic or self._topic_of(alert), payload or alert.to_json(),
                             Refusal("seq_jump", f"event_seq {alert.event_seq} is more than {self._max_seq_step} "
                                     f"above the last seen for {alert.alert_id}"))
            elif result is EnqueueResult.STALE:
                self.stats.stale += 1
                _log.info("alert.stale", alert_id=alert.alert_id, event_seq=alert.event_seq)
            else:
                self.stats.accepted += 1
                self._on_accepted()
            return result
        return None

    def _topic_of(self, alert: AlertEvent) -> str:
        return self._topics.asset(alert.site, alert.asset, AssetChannel.ALERT)
