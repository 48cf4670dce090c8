"""Scenario files load, bad ones fail naming the field, and a run is deterministic for its seed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pdm_common.catalog import FAULTS_BY_KIND
from simulators.fleet import ScenarioError, generate, load_scenario
from simulators.fleet.plan import make_plan
from simulators.fleet.scenario import parse_scenario
from tests.simulators.test_fleet_support import SCENARIOS, SEED, TINY

BASE = {"name": "t", "days": 2.0, "sites": [{"name": "s1"}], "heat_pumps": 2, "pumps": 1}


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_loads_and_plans(path: Path) -> None:
    scenario = load_scenario(path)
    plan = make_plan(scenario, SEED)
    assert len(plan.assets) == scenario.heat_pumps + scenario.pumps
    for asset in plan.assets:
        if asset.fault is not None:
            assert asset.fault.code in FAULTS_BY_KIND[asset.ref.kind]
            assert 0 <= asset.fault.onset_s < asset.fault.failure_s <= scenario.days * 86400


def test_demo_is_small_and_shows_lead_time() -> None:
    scenario = load_scenario(SCENARIOS / "demo.toml")
    assert scenario.heat_pumps + scenario.pumps <= 10
    assert len(scenario.sites) == 2
    assert all(4.0 <= f.failure_day - f.onset_day <= 8.0 for f in scenario.faults)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"faults": [{"asset": "hp-0001", "code": "bearing_wear", "onset_day": 0, "failure_day": 1}]}, "faults.0.code"),
        ({"faults": [{"asset": "hp-0009", "code": "low_flow", "onset_day": 0, "failure_day": 1}]}, "faults.0.asset"),
        ({"faults": [{"asset": "hp-0001", "code": "low_flow", "onset_day": 1, "failure_day": 0.5}]}, "faults.0"),
        ({"faults": [{"asset": "hp-0001", "code": "low_flow", "onset_day": 0, "failure_day": 5}]}, "failure_day"),
        (
            {"faults": [{"asset": "hp-0001", "code": "no_such_fault", "onset_day": 0, "failure_day": 1}]},
            "faults.0.code",
        ),
        (
            {
                "sensor_faults": [
                    {"asset": "pump-0001", "metric": "flow_lpm", "mode": "stuck", "start_day": 0, "end_day": 1}
                ]
            },
            "sensor_faults.0.metric",
        ),
        ({"sample_period_s": 1}, "sample_period_s"),
        ({"sites": [{"name": "bad name"}]}, "sites.0.name"),
        ({"sites": [{"name": "s1", "climate": "tropical"}]}, "sites.0.climate"),
        ({"operating_events": [{"type": "cold_spell", "asset": "hp-0001", "start_day": 0}]}, "operating_events.0"),
    ],
)
def test_bad_scenario_names_the_field(patch: dict[str, object], field: str) -> None:
    with pytest.raises(ScenarioError, match=field.replace(".", r"\.")):
        parse_scenario({**BASE, **patch}, source="case.toml")


def test_unreadable_and_non_toml_files_are_scenario_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(bad)


def _digest(seed: int) -> str:
    run = generate(load_scenario(TINY), seed)
    h = hashlib.sha256(run.truth.model_dump_json().encode())
    for series in run.series:
        h.update(series.ref.name.encode() + series.ts_ms.tobytes() + series.present.tobytes())
        for name, values in (*series.values.items(), *series.flags.items()):
            h.update(name.encode() + values.tobytes())
    return h.hexdigest()


def test_records_follow_the_series() -> None:
    run = generate(load_scenario(TINY).model_copy(update={"days": 0.1}), SEED)
    record = next(r for r in run.iter_records() if r["asset"] == "hp-0003")
    series = run.asset("hp-0003")
    assert record["ts"] == int(series.ts_ms[0])
    assert record["metrics"]["flow_temp_c"] == float(series.values["flow_temp_c"][0])
    assert json.loads(json.dumps(record)) == record


def test_same_seed_same_run_other_seed_other_run() -> None:
    assert _digest(SEED) == _digest(SEED)
    assert _digest(SEED) != _digest(SEED + 1)


def test_random_faults_are_drawn_from_the_seed() -> None:
    scenario = load_scenario(SCENARIOS / "mixed-faults.toml")
    first = make_plan(scenario, 1).truth()
    again = make_plan(scenario, 1).truth()
    other = make_plan(scenario, 2).truth()
    assert first == again
    faulty = [a.asset for a in first.assets if a.machine_faults]
    assert len(faulty) == 3 + scenario.random_faults.heat_pump + scenario.random_faults.pump
    assert faulty != [a.asset for a in other.assets if a.machine_faults]
