"""Pure core of the bridge: urgency, mapping, messages, circuit, promises, registry, fault table, config."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.assets import parse_registry
from cloud_bridge.circuit import CircuitBreaker, CircuitState
from cloud_bridge.config import BridgeSettings
from cloud_bridge.errors import RegistryError
from cloud_bridge.promises import TicketRow, due_warnings
from cloud_bridge.registry import RegistryFile, load_fault_actions
from cloud_bridge.ticket import Resolution, TicketAction, action_for, map_alert, resolution_of
from cloud_bridge.urgency import Priority, assess
from pdm_common.catalog import SENSOR_FAULT, FaultCode
from pdm_common.errors import ConfigError
from pdm_common.settings import load_settings
from tests.bridge.samples import FIRST_SEEN, REPO, alert, context, record

WEDNESDAY = FIRST_SEEN
FRIDAY = datetime(2026, 1, 16, 15, 0, tzinfo=UTC)


def test_severity_alone_sets_a_low_priority_on_a_plain_weekday() -> None:
    a = alert(severity="warning", time_to_failure_h=None)
    u = assess(a, None, now=datetime(2026, 1, 12, 9, tzinfo=UTC), calendar=context().calendar)  # Monday
    assert u.priority is Priority.P4
    assert u.reasons == ("severity warning",)


def test_cold_weekend_and_vulnerable_occupant_raise_priority_with_reasons() -> None:
    a = alert(severity="major", operating_context={"outdoor_temp_c": -12.0})
    u = assess(a, record(vulnerable_occupants=["elderly occupant (87)"]), now=FRIDAY, calendar=context().calendar)
    assert u.priority is Priority.P1
    joined = " | ".join(u.reasons)
    for expected in ("outdoor -12 °C", "weekend ahead", "elderly occupant", "may fail within"):
        assert expected in joined


def test_holiday_ahead_counts_like_a_weekend() -> None:
    holiday = date(2026, 1, 15)
    u = assess(alert(time_to_failure_h=None), None, now=WEDNESDAY, calendar=context((holiday,)).calendar)
    assert "public holiday ahead (2026-01-15)" in u.reasons


def test_sensor_fault_is_never_above_p3() -> None:
    a = alert(severity="critical", probable_fault={"code": SENSOR_FAULT, "confidence": 0.9},
              operating_context={"outdoor_temp_c": -20.0})
    u = assess(a, record(vulnerable_occupants=["infant"]), now=FRIDAY, calendar=context().calendar)
    assert u.priority is Priority.P3
    assert any("sensor fault" in r for r in u.reasons)


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({}, TicketAction.OPEN),
        ({"event": "updated", "event_seq": 2}, TicketAction.UPDATE),
        ({"event": "updated", "event_seq": 2, "status": "reopened"}, TicketAction.REOPEN),
        ({"event": "updated", "event_seq": 2, "status": "verifying"}, TicketAction.VERIFY),
        ({"event": "updated", "event_seq": 2, "status": "snoozed"}, TicketAction.ACKNOWLEDGE),
        ({"event": "updated", "event_seq": 2, "status": "recovering"}, TicketAction.UPDATE),
        ({"event": "resolved", "event_seq": 3, "status": "resolved"}, TicketAction.RESOLVE),
    ],
)
def test_event_maps_onto_ticket_action(over: dict[str, Any], expected: TicketAction) -> None:
    seq = int(over.pop("event_seq", 1))
    assert action_for(alert(seq, **over)) is expected


def test_ticket_carries_title_diagnosis_parts_and_customer_message() -> None:
    t = map_alert(alert(), record(), now=WEDNESDAY, ctx=context())
    assert "hp-0042" in t.title and "refrigerant leak" in t.title and t.priority.words in t.title
    assert t.dedup_key == alert().alert_id
    assert any("R32" in p for p in t.parts) and t.checks
    assert t.customer_language == "no"
    assert t.public_message is not None
    assert "kuldemedium" in t.public_message and "kontakter deg innen" in t.public_message
    body = t.brief
    for needle in ("72%", "suction pressure: 2.1 bar (expected 2.9 bar: -0.8 bar, -28%)", "NA8-2021-004211",
                   "under warranty until 14 Sep 2026", "annual service", "expansion valve fault (18%)"):
        assert needle in body, needle
    assert "sigma" not in body and "UTC" not in body  # units, not sigmas; local time, not UTC
    # P2 (8 h) would be 11:10; half the pessimistic 40 h to failure is 20 h: the SLA stays 8 h.
    assert t.sla_deadline == FIRST_SEEN + timedelta(hours=8)


def test_customer_text_never_carries_personal_data_vulnerability_or_checklist() -> None:
    rec = record(vulnerable_occupants=["elderly occupant (87)"], language="en")
    for event in (alert(), alert(4, status="reopened", note="fix not confirmed"),
                  alert(6, event="resolved", status="resolved", note="fix confirmed")):
        t = map_alert(event, rec, now=WEDNESDAY, ctx=context())
        assert t.public_message is not None
        for secret in ("+47 912 34 567", "Storgata", "elderly", "87", "Leak-test", "R32", "Priority", "warranty"):
            assert secret not in t.public_message, (secret, t.public_message)
        if t.action is not TicketAction.RESOLVE:  # the technician's brief goes with open and reopen
            assert "+47 912 34 567" in t.internal_note and "elderly occupant (87)" in t.internal_note


def test_each_ending_has_its_own_message_and_updates_tell_the_customer_nothing() -> None:
    rec = record(language="en")
    texts = {}
    for note, expected in (("fix confirmed", Resolution.FIXED), (None, Resolution.RECOVERED),
                           ("baseline reset by operator", Resolution.RESET)):
        event = alert(6, event="resolved", status="resolved", note=note)
        assert resolution_of(event) is expected
        texts[expected] = map_alert(event, rec, now=WEDNESDAY, ctx=context()).public_message
    reopen = map_alert(alert(4, status="reopened", note="fix not confirmed"), rec, now=WEDNESDAY, ctx=context())
    assert reopen.public_message is not None and "sorry" in reopen.public_message
    assert len({*texts.values(), reopen.public_message}) == 4
    assert "confirmed" in (texts[Resolution.FIXED] or "") and "by themselves" in (texts[Resolution.RECOVERED] or "")
    for status in ("open", "recovering", "snoozed", "verifying"):
        assert map_alert(alert(2, status=status), rec, now=WEDNESDAY, ctx=context()).public_message is None


def test_the_promise_uses_the_pessimistic_estimate_and_contact_hours_in_the_customers_zone() -> None:
    late = alert(emitted_at=datetime(2026, 1, 14, 19, 40, tzinfo=UTC), first_seen=datetime(2026, 1, 14, 19, 40,
                                                                                              tzinfo=UTC),
                 last_seen=datetime(2026, 1, 14, 19, 40, tzinfo=UTC), time_to_failure_h={"p50": 240, "p10": 60})
    t = map_alert(late, record(language="en"), now=late.emitted_at or FIRST_SEEN, ctx=context())
    assert t.public_message is not None
    assert "within 2 days" in t.public_message  # p10 = 60 h, not the median's 10 days
    assert "by Thursday 15 January at 08:00" in t.public_message  # 20:40 + 8 h is 04:40: nobody calls then
    nyc = map_alert(late, record(language="en", timezone="America/New_York"), now=late.emitted_at or FIRST_SEEN,
                    ctx=context())
    assert "by Wednesday 14 January at 20:00" in (nyc.public_message or "")  # 03:40 NY: the evening before


def test_unknown_kind_and_fault_give_an_honest_ticket_without_error() -> None:
    odd = alert(kind="screw_chiller", probable_fault={"code": "bearing_whine_x", "confidence": 0.4},
                contributors=[{"metric": "oil_pressure_bar", "value": 1.1, "expected": 2.0, "deviation": -3.0},
                              {"metric": "vibration_kurtosis", "value": 5.5, "expected": 3.0, "deviation": 4.0}])
    t = map_alert(odd, record(kind="screw_chiller", language="no"), now=WEDNESDAY, ctx=context())
    assert "unclassified" in t.fault_name and "screw chiller" in t.title
    assert "oil pressure: 1.1 bar" in t.brief and "vibration kurtosis: 5.5 (expected 3" in t.brief
    assert t.public_message is not None and "anlegget" in t.public_message


def test_english_message_says_what_next_and_when() -> None:
    t = map_alert(alert(), record(language="en"), now=WEDNESDAY, ctx=context())
    assert t.public_message is not None and t.public_message.startswith("Hello Ingrid Hansen")
    assert "will contact you by Wednesday 14 January at 12:10" in t.public_message
    assert t.public_marker in t.public_message and t.internal_marker in t.internal_note


def test_unknown_asset_still_gets_a_ticket() -> None:
    t = map_alert(alert(), None, now=WEDNESDAY, ctx=context())
    assert "not in the asset registry" in t.brief
    assert t.customer_language == "en" and t.public_message is None


def test_contract_sla_caps_the_deadline_and_reopen_starts_a_new_promise() -> None:
    t = map_alert(alert(), record(sla_hours=2), now=WEDNESDAY, ctx=context())
    assert t.sla_deadline == FIRST_SEEN + timedelta(hours=2)
    reopened = alert(5, status="reopened", emitted_at=FIRST_SEEN + timedelta(days=3))
    r = map_alert(reopened, record(), now=WEDNESDAY, ctx=context())
    assert r.opened_at == FIRST_SEEN + timedelta(days=3)
    assert "fix not confirmed" in r.internal_note


def test_mapping_is_deterministic_for_the_same_event() -> None:
    a = alert()
    assert map_alert(a, record(), now=WEDNESDAY, ctx=context()) == map_alert(a, record(), now=WEDNESDAY, ctx=context())


def test_fault_table_covers_every_fault_code() -> None:
    table = load_fault_actions(REPO / "config" / "fault-actions.toml")
    for code in [*FaultCode, SENSOR_FAULT, "four_way_valve_leak", "eev_stuck_open", "unclassified"]:
        assert code in table, code
        assert table.for_code(code).checks
    assert table.for_code("no_such_fault") == table.for_code("unclassified")  # honest fallback, never no ticket


def test_circuit_opens_after_threshold_and_admits_one_trial() -> None:
    cb = CircuitBreaker(failure_threshold=3, open_s=10.0)
    for t in (0.0, 1.0, 2.0):
        cb.record_failure(t)
    assert cb.state is CircuitState.OPEN and cb.blocks(5.0) and not cb.allow(5.0)
    assert cb.allow(12.5)
    assert cb.state.value == "half_open"
    assert not cb.allow(12.6)  # a single trial
    cb.record_failure(13.0)
    assert cb.state is CircuitState.OPEN and cb.times_opened == 2
    assert cb.allow(23.5)
    cb.record_success(24.0)
    assert cb.state.value == "closed" and cb.failures == 0


def test_sla_warning_only_for_unacknowledged_open_tickets() -> None:
    rows = [
        TicketRow("a", "main", "1", "P1", 0.0, 100.0, acknowledged=False, warned=False, resolved_at=None),
        TicketRow("b", "main", "2", "P1", 0.0, 100.0, acknowledged=True, warned=False, resolved_at=None),
        TicketRow("c", "main", "3", "P1", 0.0, 100.0, acknowledged=False, warned=False, resolved_at=50.0),
    ]
    assert [w.alert_id for w in due_warnings(rows, now=90.0, warn_fraction=0.75)] == ["a"]


def test_registry_rejects_bad_entries_naming_them() -> None:
    with pytest.raises(RegistryError, match=r"#1 \(oslo-north/hp-0042\).*install_date"):
        parse_registry({"asset": [{**record().model_dump(), "install_date": "yesterday"}]})


def test_example_registry_loads_and_reloads_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "assets.toml"
    path.write_text((REPO / "config" / "assets.example.toml").read_text(encoding="utf-8"), encoding="utf-8")
    reg = RegistryFile(path)
    assert reg.current().lookup("oslo-north", "hp-0042") is not None
    assert reg.current().lookup("oslo-north", "hp-0099") is None
    path.write_text(path.read_text(encoding="utf-8").replace("hp-0042", "hp-0099"), encoding="utf-8")
    os.utime(path, ns=(1, 1))  # a different mtime, whatever the file system's resolution
    assert reg.current().lookup("oslo-north", "hp-0099") is not None
    path.write_text("this is [not toml", encoding="utf-8")
    assert reg.current().lookup("oslo-north", "hp-0099") is not None  # last good registry kept
    assert reg.reload_failures == 1


def test_example_config_loads_and_routes_per_site_then_customer() -> None:
    s = load_settings(BridgeSettings, REPO / "config" / "cloud-bridge.example.toml")
    assert s.routing.desk_for("bergen-plant", "c-2002") == "plant"
    assert s.routing.desk_for("elsewhere", "c-2002") == "industry"
    assert s.routing.desk_for("elsewhere", None) == "main"


def test_config_error_names_field_and_hides_secret() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(BridgeSettings, None, desks={"pd": {"kind": "pagerduty", "base_url": "http://x"}},
                      routing={"default": "pd"})
    assert "desks.pd" in str(err.value) and "routing key" in str(err.value)
    s = load_settings(BridgeSettings, None, desks={"pd": {"kind": "pagerduty", "base_url": "http://x",
                                                          "token": "0123456789abcdef0123456789abcdef"}},
                      routing={"default": "pd"})
    assert "0123456789abcdef" not in repr(s)


def test_plot_renders_threshold_stops_and_marks_even_when_the_alert_began_before_the_window() -> None:
    from zoneinfo import ZoneInfo

    from cloud_bridge.plot import PlotMarks, render_plot, stopped_spans

    start = int((FIRST_SEEN + timedelta(days=1)).timestamp() * 1000)  # the data begins a day after the alert
    points: list[list[float]] = [[start + 60_000 * i, 10.0 - 0.05 * i] for i in range(60)]
    points += [[start + 60_000 * (60 + 240 + i), 7.0 - 0.05 * i] for i in range(30)]  # a 4 h stop
    event = alert(probable_fault={"code": "low_flow", "confidence": 0.8},
                  recent=[{"metric": "flow_lpm", "expected": 12.0, "points": points}])
    assert stopped_spans([int(p[0]) for p in points]) == [(points[59][0], points[60][0])]
    png = render_plot(event, PlotMarks(serviced_at=FIRST_SEEN + timedelta(days=1, hours=2),
                                       reopened_at=FIRST_SEEN + timedelta(days=1, hours=6),
                                       zone=ZoneInfo("Europe/Oslo")))
    assert png is not None and png.startswith(b"\x89PNG")
    assert render_plot(alert()) is None  # no series: nothing to attach
