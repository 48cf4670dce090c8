"""Service commands and time-driven transitions through the engine facade."""

from __future__ import annotations

from datetime import timedelta

import pytest

from edge_agent.engine import DetectionEngine
from edge_agent.errors import CommandRefused
from pdm_common.contracts import AlertEvent, AlertStatus, AssetState, Command, CommandName, EventType, SensorStatus
from tests.agent_core.conftest import alerts, feed, new_engine
from tests.agent_core.synthetic import T0, HeatPumpStream, leak

LEAK = HeatPumpStream(injections=[leak(24 * 2, 3.0)])


@pytest.fixture(scope="module")
def leaking() -> tuple[DetectionEngine, AlertEvent]:
    """An engine with an open leak alert after four days, and that alert's opened event."""
    engine = new_engine(verification_h=6.0)
    opened = alerts(feed(engine, LEAK, 24 * 4))[0]
    assert opened.event is EventType.OPENED
    return engine, opened


def cmd(name: CommandName, **kw: object) -> Command:
    return Command.model_validate({"command": name, "site": "site-a", "asset": "hp-0001", **kw})


def clone(engine: DetectionEngine) -> DetectionEngine:
    import pickle

    copy: DetectionEngine = pickle.loads(pickle.dumps(engine))
    return copy


def test_open_alerts_lists_the_latest_event(leaking: tuple[DetectionEngine, AlertEvent]) -> None:
    engine, opened = leaking
    latest = engine.open_alerts()
    assert [e.alert_id for e in latest] == [opened.alert_id]
    assert engine.asset_states()[0].open_alerts == [opened.alert_id]


def test_snooze_then_expiry(leaking: tuple[DetectionEngine, AlertEvent]) -> None:
    engine, opened = clone(leaking[0]), leaking[1]
    now = T0 + timedelta(hours=24 * 4)
    out = engine.command("site-a", "hp-0001", cmd(CommandName.SNOOZE, until=now + timedelta(hours=3)), now)
    snoozed = alerts(out)
    assert [(e.status, e.alert_id) for e in snoozed] == [(AlertStatus.SNOOZED, opened.alert_id)]
    assert isinstance(out[-1], AssetState)
    during = alerts(feed(engine, LEAK, 2.5, start_h=24 * 4))
    assert during == []
    after = alerts(engine.tick(now + timedelta(hours=3, minutes=1)))
    assert [(e.status, e.note) for e in after] == [(AlertStatus.OPEN, "snooze ended")]
    assert after[0].event_seq == snoozed[0].event_seq + 1


def test_serviced_but_still_leaking_reopens(leaking: tuple[DetectionEngine, AlertEvent]) -> None:
    engine, opened = clone(leaking[0]), leaking[1]
    now = T0 + timedelta(hours=24 * 4)
    out = alerts(engine.command("site-a", "hp-0001", cmd(CommandName.SERVICED, alert_id=opened.alert_id), now))
    assert [e.status for e in out] == [AlertStatus.VERIFYING]
    later = alerts(feed(engine, LEAK, 12, start_h=24 * 4))
    reopened = [e for e in later if e.status is AlertStatus.REOPENED]
    assert reopened and reopened[0].note == "fix not confirmed"
    assert reopened[0].alert_id == opened.alert_id and reopened[0].event is EventType.UPDATED


def test_serviced_and_fixed_resolves_after_verification(leaking: tuple[DetectionEngine, AlertEvent]) -> None:
    engine, opened = clone(leaking[0]), leaking[1]
    now = T0 + timedelta(hours=24 * 4)
    engine.command("site-a", "hp-0001", cmd(CommandName.SERVICED), now)
    events = alerts(feed(engine, HeatPumpStream(), 10, start_h=24 * 4))  # the same unit, repaired
    resolved = [e for e in events if e.event is EventType.RESOLVED]
    assert [(e.alert_id, e.note) for e in resolved] == [(opened.alert_id, "fix confirmed")]
    assert engine.open_alerts() == []


def test_reset_baseline_resolves_and_rewarms(leaking: tuple[DetectionEngine, AlertEvent]) -> None:
    engine = clone(leaking[0])
    now = T0 + timedelta(hours=24 * 4)
    out = engine.command("site-a", "hp-0001", cmd(CommandName.RESET_BASELINE), now)
    assert [(e.event, e.note) for e in alerts(out)] == [(EventType.RESOLVED, "baseline reset by operator")]
    state = out[-1]
    assert isinstance(state, AssetState) and state.warmup_progress == 0.0 and state.open_alerts == []


def test_commands_for_unknown_assets_are_refused(engine: DetectionEngine) -> None:
    with pytest.raises(CommandRefused) as refused:
        engine.command("site-a", "nope", cmd(CommandName.SERVICED), T0)
    assert refused.value.reason == "unknown_asset"


def test_silence_marks_every_sensor_dropped_out() -> None:
    engine = new_engine(silence_s=600.0)
    feed(engine, HeatPumpStream(), 2)
    last = T0 + timedelta(hours=2)
    assert engine.tick(last + timedelta(minutes=5)) == []
    out = engine.tick(last + timedelta(minutes=11))
    assert len(out) == 1 and isinstance(out[0], AssetState)
    assert {h.status for h in out[0].sensor_health} == {SensorStatus.DROPOUT}
    assert engine.tick(last + timedelta(minutes=20)) == []  # reported once
