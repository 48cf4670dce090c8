"""The fleet as the cloud sees it: gateways online, assets by health, open alerts, warm-up.

Gateways are not scraped (they sit behind plant firewalls); what they publish is bridged to the
cloud broker (config/mosquitto/bridge-to-cloud.conf) and the bridge reads it here:

* ``{prefix}/{site}/gateway/{gateway}/status`` — the agent's retained birth/will
  (:class:`~pdm_common.contracts.GatewayStatus`, refreshed every ``status_interval_s``);
* ``{prefix}/{site}/gateway/{gateway}/link`` — the Mosquitto bridge's retained notification,
  ``1`` while the gateway's uplink is connected and ``0`` (its Last Will) when it is cut;
* ``{prefix}/{site}/{asset}/state`` — each asset's retained :class:`~pdm_common.contracts.AssetState`;
* the alert events the bridge consumes, for each open alert's severity.

:class:`FleetView` is pure state (time passed in, no I/O) and :class:`FleetCollector` exports it to
Prometheus at scrape time as the ``pdm_fleet_*`` families (docs/operations.md lists them). The
subscriptions are plain, not shared: retained messages are not sent to ``$share`` subscriptions
(MQTT 5.0 §4.8.2), and every replica should see the whole fleet — aggregate with ``max by``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pdm_common.contracts import AlertEvent, AssetState, EventType, GatewayStatus, is_valid_name
from pdm_common.errors import ContractError
from pdm_common.logs import get_logger
from pdm_common.mqtt import InboundMessage
from pdm_common.topics import AssetChannel, Topics

__all__ = ["FLEET_NAMESPACE", "AssetView", "FleetCollector", "FleetView", "GatewayView"]

_log = get_logger(__name__)

FLEET_NAMESPACE = "pdm_fleet"
MAX_STATE_BYTES = 256 * 1024
"""An AssetState with every sensor's health is a few kB; the bound refuses absurd payloads."""
MAX_ASSETS = 100_000
"""Assets remembered; beyond it the one seen longest ago is forgotten (200 gateways x 500 assets)."""
MAX_GATEWAYS = 10_000
MAX_SEVERITIES = 200_000
"""Severities remembered for alert ids; ids no longer open are forgotten first."""
UNKNOWN_SEVERITY = "unknown"
"""An alert open in an asset's state whose events this replica has not seen (another replica got them)."""


@dataclass
class GatewayView:
    """What is known about one gateway."""

    site: str
    gateway: str
    online: bool = False
    link: bool | None = None
    """The Mosquitto bridge's notification; None when the gateway is not bridged (direct connection)."""
    version: str = ""
    status_ts: float | None = None
    skew_s: float | None = None
    failing_checks: int = 0

    @property
    def up(self) -> bool:
        """Online by its own status and, where bridged, with its uplink connected."""
        return self.online and self.link is not False


@dataclass
class AssetView:
    """The last state of one asset."""

    site: str
    asset: str
    kind: str
    ts: float
    health: float
    warmup: float
    open_alerts: tuple[str, ...]


@dataclass
class FleetView:
    """Latest status of every gateway and state of every asset, and the severity of open alerts.

    Args:
        topics: the topic layout (prefix) of the cloud broker.
        clock: wall-clock seconds, for the clock skew of fresh status messages.
    """

    topics: Topics
    clock: Callable[[], float] = time.time
    gateways: dict[tuple[str, str], GatewayView] = field(default_factory=dict)
    assets: dict[tuple[str, str], AssetView] = field(default_factory=dict)
    severities: dict[str, str] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def subscriptions(self) -> list[tuple[str, int]]:
        """Plain (not shared) QoS 1 subscriptions to gateway status and link and to asset states."""
        prefix = self.topics.prefix
        return [(f"{prefix}/+/gateway/+/status", 1), (f"{prefix}/+/gateway/+/link", 1),
                (self.topics.all_assets(AssetChannel.STATE), 1)]

    def route(self, handle: Callable[[InboundMessage], None]) -> Callable[[InboundMessage], None]:
        """An ``on_message`` that keeps fleet topics here and passes every other message to ``handle``.

        Alert events reach ``handle`` first (it may raise to refuse the acknowledgement); once it
        returned, their severity is noted.
        """

        def on_message(message: InboundMessage) -> None:
            if self.observe(message):
                return
            handle(message)
            self.note_alert(message)

        return on_message

    def _count(self, kind: str, outcome: str) -> None:
        self.counts[(kind, outcome)] = self.counts.get((kind, outcome), 0) + 1

    def observe(self, message: InboundMessage) -> bool:
        """Take a status, link or state message; False when ``message`` is none of those."""
        head = self.topics.prefix + "/"
        parts = message.topic[len(head):].split("/") if message.topic.startswith(head) else []
        with self._lock:
            if len(parts) == 4 and parts[1] == "gateway" and parts[3] in ("status", "link"):
                self._gateway_message(parts[0], parts[2], parts[3], message)
                return True
            if len(parts) == 3 and parts[2] == AssetChannel.STATE.value:
                self._state(parts[0], parts[1], message)
                return True
        return False

    def _gateway(self, site: str, gateway: str) -> GatewayView | None:
        key = (site, gateway)
        if key not in self.gateways and len(self.gateways) >= MAX_GATEWAYS:
            return None
        return self.gateways.setdefault(key, GatewayView(site=site, gateway=gateway))

    def _gateway_message(self, site: str, gateway: str, leaf: str, message: InboundMessage) -> None:
        if not (is_valid_name(site) and is_valid_name(gateway)):
            self._count(leaf, "invalid")
            return
        if leaf == "link":
            if message.payload not in (b"0", b"1"):
                self._count(leaf, "invalid")
                return
            view = self._gateway(site, gateway)
            if view is not None:
                view.link = message.payload == b"1"
                self._count(leaf, "accepted")
            return
        try:
            status = GatewayStatus.from_json(message.payload, max_bytes=MAX_STATE_BYTES)
        except ContractError as exc:
            self._count(leaf, "invalid")
            _log.warning("fleet.status_invalid", topic=message.topic[:200], reason=exc.reason,
                         action="check that gateway's agent version")
            return
        if status.gateway != gateway:
            self._count(leaf, "invalid")  # a status for another gateway than its topic names
            return
        view = self._gateway(site, gateway)
        if view is None:
            return
        view.online = status.status == "online"
        view.version = status.version
        view.failing_checks = sum(verdict.startswith("fail") for verdict in status.health.values())
        if status.ts is not None:
            view.status_ts = status.ts.timestamp()
            if not message.retain:  # a retained copy is as old as it is; only a fresh one tells skew
                view.skew_s = message.received_at.timestamp() - view.status_ts
        self._count(leaf, "accepted")

    def _state(self, site: str, asset: str, message: InboundMessage) -> None:
        try:
            state = AssetState.from_json(message.payload, max_bytes=MAX_STATE_BYTES)
        except ContractError:
            self._count("state", "invalid")
            return
        if (state.site, state.asset) != (site, asset):
            self._count("state", "invalid")  # the payload speaks for another asset than its topic
            return
        key = (site, asset)
        ts = state.ts.timestamp()
        known = self.assets.get(key)
        if known is not None and ts < known.ts:
            self._count("state", "stale")
            return
        if known is None and len(self.assets) >= MAX_ASSETS:
            oldest = min(self.assets, key=lambda k: self.assets[k].ts)
            del self.assets[oldest]
        self.assets[key] = AssetView(site=site, asset=asset, kind=state.kind, ts=ts, health=state.health_score,
                                  warmup=state.warmup_progress, open_alerts=tuple(state.open_alerts))
        self._count("state", "accepted")

    def note_alert(self, message: InboundMessage) -> None:
        """Remember the severity of an alert event (the bridge's consumer validated it already)."""
        try:
            event = AlertEvent.from_json(message.payload, max_bytes=MAX_STATE_BYTES * 4)
        except ContractError:
            return  # refused and counted by the consumer
        with self._lock:
            if event.event is EventType.RESOLVED:
                self.severities.pop(event.alert_id, None)
                return
            if event.alert_id not in self.severities and len(self.severities) >= MAX_SEVERITIES:
                self._forget_closed()
            if len(self.severities) < MAX_SEVERITIES:
                self.severities[event.alert_id] = event.severity.value

    def _forget_closed(self) -> None:
        still_open = {a for asset in self.assets.values() for a in asset.open_alerts}
        for alert_id in [a for a in self.severities if a not in still_open]:
            del self.severities[alert_id]

    def open_alerts(self) -> dict[tuple[str, str], int]:
        """Open alerts per (site, severity), from the assets' retained states."""
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            for asset in self.assets.values():
                for alert_id in asset.open_alerts:
                    key = (asset.site, self.severities.get(alert_id, UNKNOWN_SEVERITY))
                    counts[key] = counts.get(key, 0) + 1
        return counts


class FleetCollector(Collector):
    """Exports a :class:`FleetView` as the ``pdm_fleet_*`` families when Prometheus scrapes."""

    def __init__(self, view: FleetView) -> None:
        self._view = view

    def describe(self) -> Iterable[Metric]:
        """No families up front: they are built per scrape (prometheus_client calls collect lazily)."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Gauges of gateways and assets, open alerts by site and severity, messages by outcome."""
        view = self._view

        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{FLEET_NAMESPACE}_{name}", doc, labels=labels)

        up = gauge("gateway_up", "1 while the gateway's status is online and (if bridged) its uplink connected",
                   ["site", "gateway"])
        info = gauge("gateway_info", "The agent version each gateway reported (value 1)",
                     ["site", "gateway", "version"])
        seen = gauge("gateway_status_timestamp_seconds", "Time stamp of the gateway's last status message",
                     ["site", "gateway"])
        skew = gauge("gateway_clock_skew_seconds", "Bridge receipt time minus the gateway's status time stamp "
                     "(includes transit, normally < 1 s)", ["site", "gateway"])
        failing = gauge("gateway_failing_checks", "Health checks the gateway reports as failing", ["site", "gateway"])
        health = gauge("asset_health_score", "The asset's health score 0..1 from its last state",
                       ["site", "asset", "kind"])
        last = gauge("asset_last_seen_timestamp_seconds", "Time stamp of the asset's last state", ["site", "asset"])
        warmup = gauge("asset_warmup_ratio", "The asset model's warm-up progress 0..1 (1 = alerting on)",
                       ["site", "asset"])
        alerts = gauge("open_alerts", "Open alerts per site and severity (from the assets' states)",
                       ["site", "severity"])
        messages = CounterMetricFamily(f"{FLEET_NAMESPACE}_messages", "Fleet messages (status, link, state) by "
                                       "outcome: accepted, invalid, stale", labels=["kind", "outcome"])
        with view._lock:
            for g in view.gateways.values():
                labels = [g.site, g.gateway]
                up.add_metric(labels, 1.0 if g.up else 0.0)
                info.add_metric([*labels, g.version], 1.0)
                failing.add_metric(labels, g.failing_checks)
                if g.status_ts is not None:
                    seen.add_metric(labels, g.status_ts)
                if g.skew_s is not None:
                    skew.add_metric(labels, g.skew_s)
            for a in view.assets.values():
                health.add_metric([a.site, a.asset, a.kind], a.health)
                last.add_metric([a.site, a.asset], a.ts)
                warmup.add_metric([a.site, a.asset], a.warmup)
            for (kind, outcome), count in sorted(view.counts.items()):
                messages.add_metric([kind, outcome], count)
        for (site, severity), count in sorted(view.open_alerts().items()):
            alerts.add_metric([site, severity], count)
        yield from (up, info, seen, skew, failing, health, last, warmup, alerts, messages)
