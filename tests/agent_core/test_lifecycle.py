"""The alert lifecycle state machine, driven directly with a fake clock (DESIGN.md section 5)."""

from __future__ import annotations

from datetime import timedelta

from edge_agent.lifecycle import AlertTrack, Emit, Phase, Summary, TrackPolicy
from pdm_common.contracts import AlertStatus, EventType, Severity
from tests.agent_core.synthetic import T0

POLICY = TrackPolicy(
    debounce_n=3,
    debounce_m=5,
    recovering_after=timedelta(hours=1),
    resolve_after=timedelta(hours=3),
    verification=timedelta(hours=6),
    ttf_change_pct=30.0,
    min_update_interval=timedelta(0),
)
MIN = timedelta(minutes=1)


class Feed:
    """Drives a track one sample a minute with a settable summary."""

    def __init__(self) -> None:
        self.track = AlertTrack("hp-1", POLICY)
        self.now = T0
        self.summary = Summary(Severity.WARNING, "refrigerant_leak", 100.0, frozenset({"discharge_temp_c"}))
        self.events: list[Emit] = []

    def run(self, n: int, *, anomalous: bool, healthy: bool | None = None) -> list[Emit]:
        out: list[Emit] = []
        for _ in range(n):
            self.now += MIN
            out += self.track.step(
                anomalous=anomalous,
                healthy=not anomalous if healthy is None else healthy,
                now=self.now,
                summary=lambda: self.summary,
            )
        self.events += out
        return out

    def open(self) -> None:
        self.run(3, anomalous=True)
        assert self.track.phase is Phase.OPEN


def test_n_of_m_debounce_opens_once_with_a_stable_id() -> None:
    f = Feed()
    assert f.run(1, anomalous=True) == []
    assert f.track.phase is Phase.SUSPECT
    assert f.run(1, anomalous=False) == []
    assert f.run(1, anomalous=True) == []  # two of the last three: not yet
    out = f.run(1, anomalous=True)
    assert out == [Emit(EventType.OPENED, AlertStatus.OPEN, None)]
    assert f.track.event_seq == 1
    assert f.track.alert_id == "hp-1:2026-01-05T00:01:00Z:refrigerant_leak"
    assert f.run(10, anomalous=True) == []  # nothing material changed


def test_suspect_falls_back_to_normal_after_a_calm_window() -> None:
    f = Feed()
    f.run(1, anomalous=True)
    f.run(5, anomalous=False)
    assert f.track.phase.value == "normal"
    assert f.events == []


def test_updates_only_on_material_change() -> None:
    f = Feed()
    f.open()
    f.summary = Summary(Severity.WARNING, "refrigerant_leak", 120.0, frozenset({"discharge_temp_c"}))
    assert f.run(1, anomalous=True) == []  # TTF moved 20 % < 30 %
    f.summary = Summary(Severity.MAJOR, "refrigerant_leak", 120.0, frozenset({"discharge_temp_c"}))
    out = f.run(1, anomalous=True)
    assert [e.event for e in out] == [EventType.UPDATED]
    assert out[0].note is not None and "severity major" in out[0].note
    both = frozenset({"discharge_temp_c", "suction_pressure_bar"})
    f.summary = Summary(Severity.MAJOR, "refrigerant_leak", 50.0, both)
    out = f.run(1, anomalous=True)
    assert out[0].note is not None and "time to failure" in out[0].note and "suction_pressure_bar" in out[0].note
    assert f.track.event_seq == 3


def test_hysteresis_recovering_then_resolved() -> None:
    f = Feed()
    f.open()
    # Below the threshold but above the hysteresis level: neither anomalous nor healthy, nothing moves.
    assert f.run(120, anomalous=False, healthy=False) == []
    assert f.track.phase is Phase.OPEN
    out = f.run(61, anomalous=False)  # healthy from the first of these: one hour later
    assert [(e.event, e.status) for e in out] == [(EventType.UPDATED, AlertStatus.RECOVERING)]
    out = f.run(120, anomalous=False)
    assert [(e.event, e.status) for e in out] == [(EventType.RESOLVED, AlertStatus.RESOLVED)]
    assert f.track.phase.value == "normal"


def test_relapse_while_recovering_reopens_the_same_alert() -> None:
    f = Feed()
    f.open()
    alert_id = f.track.alert_id
    f.run(61, anomalous=False)
    assert f.track.phase is Phase.RECOVERING
    out = f.run(3, anomalous=True)
    assert [(e.event, e.status) for e in out] == [(EventType.UPDATED, AlertStatus.OPEN)]
    assert f.track.alert_id == alert_id


def test_snooze_holds_updates_and_announces_its_end() -> None:
    f = Feed()
    f.open()
    out = f.track.snooze(f.now + timedelta(hours=2), f.now)
    assert [(e.event, e.status) for e in out] == [(EventType.UPDATED, AlertStatus.SNOOZED)]
    f.summary = Summary(Severity.CRITICAL, "refrigerant_leak", 10.0, frozenset({"discharge_temp_c"}))
    assert f.run(60, anomalous=True) == []
    out = f.track.tick(f.now + timedelta(hours=1, minutes=1), lambda: f.summary)
    assert [(e.event, e.status, e.note) for e in out] == [(EventType.UPDATED, AlertStatus.OPEN, "snooze ended")]


def test_snooze_without_an_alert_is_not_armed() -> None:
    # Issue #16: a snooze armed in advance silenced a fault that developed later.
    f = Feed()
    assert f.track.snooze(f.now + timedelta(minutes=30), f.now) == []
    assert f.track.snoozed_until is None
    out = f.run(20, anomalous=True)
    assert [e.event for e in out] == [EventType.OPENED]


def test_serviced_and_healthy_resolves_after_verification() -> None:
    f = Feed()
    f.open()
    out = f.track.serviced(f.now)
    assert [(e.event, e.status) for e in out] == [(EventType.UPDATED, AlertStatus.VERIFYING)]
    f.run(5 * 60, anomalous=False)
    assert f.track.phase is Phase.VERIFYING
    out = f.track.tick(f.now + timedelta(hours=1, minutes=1), lambda: f.summary)
    assert [(e.event, e.note) for e in out] == [(EventType.RESOLVED, "fix confirmed")]


def test_serviced_but_still_faulty_reopens_with_fix_not_confirmed() -> None:
    f = Feed()
    f.open()
    alert_id = f.track.alert_id
    f.track.serviced(f.now)
    f.run(30, anomalous=False)
    out = f.run(3, anomalous=True)
    expected = [(EventType.UPDATED, AlertStatus.REOPENED, "fix not confirmed")]
    assert [(e.event, e.status, e.note) for e in out] == expected
    assert f.track.alert_id == alert_id
    assert f.track.event_seq == 3
    assert f.track.phase is Phase.OPEN


def test_reset_baseline_resolves_an_open_alert() -> None:
    f = Feed()
    f.open()
    out = f.track.reset(f.now)
    assert [(e.event, e.note) for e in out] == [(EventType.RESOLVED, "baseline reset by operator")]
    assert f.track.phase.value == "normal"
    assert f.track.reset(f.now) == []


def test_commands_on_a_quiet_track_emit_nothing() -> None:
    f = Feed()
    assert f.track.serviced(f.now) == []
    assert f.track.tick(f.now, lambda: f.summary) == []


def test_an_alert_resolved_by_a_deadline_keeps_its_first_seen_when_the_same_sample_is_anomalous() -> None:
    # The resolve decided at a sample's time comes out of the same step() that may start a new
    # suspicion; the resolved event is built afterwards from the track, so the new suspicion must
    # not overwrite its first_seen (it did: "last_seen is before first_seen", the event refused).
    f = Feed()
    f.open()
    first_seen, alert_id = f.track.first_seen, f.track.alert_id
    f.run(61, anomalous=False)
    assert f.track.phase is Phase.RECOVERING
    f.now += timedelta(hours=4)  # the asset sent nothing meanwhile, and nobody ticked
    out = f.run(1, anomalous=True)
    assert [e.event for e in out] == [EventType.RESOLVED]
    assert (f.track.alert_id, f.track.first_seen) == (alert_id, first_seen)
    assert f.track.last_seen is not None and first_seen is not None and f.track.last_seen >= first_seen
    f.track.finish()
    assert f.track.alert_id is None and f.track.phase.value == "suspect"
    f.run(2, anomalous=True)
    assert f.track.alert_id is not None and f.track.alert_id != alert_id
    assert f.track.first_seen == f.now - 2 * MIN  # the new alert starts at its own suspicion
