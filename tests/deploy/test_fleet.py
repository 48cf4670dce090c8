"""The fleet view of the cloud bridge (cloud_bridge/fleet.py): gateway status and link, asset states
and open alerts by severity, exported as the pdm_fleet_* metrics the Grafana dashboard reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cloud_bridge.fleet import MAX_ASSETS, AssetView, FleetCollector, FleetView
from pdm_common.contracts import AssetState, GatewayStatus
from pdm_common.mqtt import InboundMessage
from pdm_common.topics import Topics
from tests.bridge.samples import alert

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _message(topic: str, payload: bytes, *, retain: bool = False, at: datetime = NOW) -> InboundMessage:
    return InboundMessage(topic=topic, payload=payload, qos=1, retain=retain, received_at=at)


def _status(gateway: str, status: str = "online", *, ts: datetime = NOW, health: dict[str, str] | None = None) -> bytes:
    return GatewayStatus(status=status, gateway=gateway, version="0.3.0", ts=ts, health=health or {}).to_json()


def _state(site: str, asset: str, *, health: float = 0.9, warmup: float = 1.0, ts: datetime = NOW,
           open_alerts: tuple[str, ...] = ()) -> bytes:
    return AssetState(site=site, asset=asset, kind="heat_pump", ts=ts, health_score=health,
                      warmup_progress=warmup, samples_seen=100, open_alerts=list(open_alerts)).to_json()


def _scrape(view: FleetView) -> str:
    registry = CollectorRegistry()
    registry.register(FleetCollector(view))
    return generate_latest(registry).decode()


def test_gateway_up_needs_its_status_online_and_its_link_connected() -> None:
    view = FleetView(Topics())
    view.observe(_message("pdm/v1/oslo-north/gateway/gw-17/status", _status("gw-17"), retain=True))
    view.observe(_message("pdm/v1/bergen-1/gateway/gw-18/status", _status("gw-18", "offline")))
    assert view.gateways[("oslo-north", "gw-17")].up and not view.gateways[("bergen-1", "gw-18")].up
    view.observe(_message("pdm/v1/oslo-north/gateway/gw-17/link", b"0", retain=True))
    assert not view.gateways[("oslo-north", "gw-17")].up, "cut off: the retained 'online' is stale"
    view.observe(_message("pdm/v1/oslo-north/gateway/gw-17/link", b"1"))
    text = _scrape(view)
    assert 'pdm_fleet_gateway_up{gateway="gw-17",site="oslo-north"} 1.0' in text
    assert 'pdm_fleet_gateway_up{gateway="gw-18",site="bergen-1"} 0.0' in text
    assert 'pdm_fleet_gateway_info{gateway="gw-17",site="oslo-north",version="0.3.0"} 1.0' in text


def test_clock_skew_from_fresh_status_only_and_failing_checks() -> None:
    view = FleetView(Topics())
    stale = _status("gw-17", ts=NOW - timedelta(hours=3))
    view.observe(_message("pdm/v1/oslo-north/gateway/gw-17/status", stale, retain=True))
    assert view.gateways[("oslo-north", "gw-17")].skew_s is None, "a retained copy is old by nature"
    behind = _status("gw-17", ts=NOW - timedelta(seconds=400), health={"clock": "fail: behind", "disk": "ok"})
    view.observe(_message("pdm/v1/oslo-north/gateway/gw-17/status", behind))
    gw = view.gateways[("oslo-north", "gw-17")]
    assert gw.skew_s == 400.0 and gw.failing_checks == 1


def test_messages_that_speak_for_someone_else_are_refused() -> None:
    view = FleetView(Topics())
    view.observe(_message("pdm/v1/oslo-north/gateway/gw-17/status", _status("gw-99")))
    view.observe(_message("pdm/v1/oslo-north/hp-1/state", _state("bergen-1", "hp-1")))
    view.observe(_message("pdm/v1/oslo-north/hp-1/state", b"{not json"))
    view.observe(_message("pdm/v1/oslo-north/gateway/gw-17/link", b"maybe"))
    assert view.gateways == {} and view.assets == {}
    assert view.counts == {("status", "invalid"): 1, ("state", "invalid"): 2, ("link", "invalid"): 1}
    assert 'pdm_fleet_messages_total{kind="state",outcome="invalid"} 2.0' in _scrape(view)


def test_assets_by_health_last_seen_warmup_and_stale_states() -> None:
    view = FleetView(Topics())
    view.observe(_message("pdm/v1/oslo-north/hp-1/state", _state("oslo-north", "hp-1", health=0.4, warmup=0.5)))
    view.observe(_message("pdm/v1/oslo-north/hp-1/state",
                          _state("oslo-north", "hp-1", health=0.99, ts=NOW - timedelta(minutes=5))))
    text = _scrape(view)
    assert 'pdm_fleet_asset_health_score{asset="hp-1",kind="heat_pump",site="oslo-north"} 0.4' in text
    assert 'pdm_fleet_asset_warmup_ratio{asset="hp-1",site="oslo-north"} 0.5' in text
    assert 'pdm_fleet_asset_last_seen_timestamp_seconds{asset="hp-1",site="oslo-north"} 1.7936208e+09' in text
    assert view.counts[("state", "stale")] == 1


def test_open_alerts_by_severity_from_states_and_the_events_seen() -> None:
    view = FleetView(Topics())
    seen: list[str] = []
    on_message = view.route(lambda m: seen.append(m.topic))
    major = alert(1)
    on_message(_message(f"pdm/v1/oslo-north/{major.asset}/alert", major.to_json()))
    on_message(_message(f"pdm/v1/oslo-north/{major.asset}/state",
                        _state("oslo-north", major.asset, open_alerts=(major.alert_id, "oslo-north:hp-7:x:y"))))
    assert seen == [f"pdm/v1/oslo-north/{major.asset}/alert"], "alerts go on to the consumer, states stay here"
    assert view.open_alerts() == {("oslo-north", "major"): 1, ("oslo-north", "unknown"): 1}
    resolved = alert(2, event="resolved", status="resolved")
    on_message(_message(f"pdm/v1/oslo-north/{major.asset}/alert", resolved.to_json()))
    on_message(_message(f"pdm/v1/oslo-north/{major.asset}/state", _state("oslo-north", major.asset)))
    assert view.open_alerts() == {}


def test_a_refused_alert_is_not_noted() -> None:
    view = FleetView(Topics())

    def refuse(_message: InboundMessage) -> None:
        raise RuntimeError("store failed: not acknowledged")

    on_message = view.route(refuse)
    event = alert(1)
    with pytest.raises(RuntimeError):
        on_message(_message(f"pdm/v1/oslo-north/{event.asset}/alert", event.to_json()))
    assert view.severities == {}


def test_asset_count_is_bounded_by_forgetting_the_longest_silent() -> None:
    view = FleetView(Topics())
    for i in range(MAX_ASSETS):
        view.assets[("s", f"a{i}")] = _fake(i)
    view.observe(_message("pdm/v1/oslo-north/new/state", _state("oslo-north", "new")))
    assert len(view.assets) == MAX_ASSETS and ("oslo-north", "new") in view.assets


def _fake(i: int) -> AssetView:
    return AssetView(site="s", asset=f"a{i}", kind="pump", ts=float(i), health=1.0, warmup=1.0, open_alerts=())
