"""Scenario files load, bad ones fail naming the field, and a run is deterministic for its seed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pdm_common.catalog import FAULTS_BY_KIND
from simulators.fleet import ScenarioError, generate, load_scenario
from simulators.fleet.controller import CUTOFF
from simulators.fleet.plan import make_plan
from simulators.fleet.scenario import parse_scenario
from simulators.fleet.timescales import TIMESCALES
from tests.simulators.test_fleet_support import SCENARIOS, SEED, TINY, operating

BASE = {"name": "t", "days": 2.0, "sites": [{"name": "s1"}], "heat_pumps": 2, "pumps": 1}


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_scenario_loads_and_plans(path: Path) -> None:
    scenario = load_scenario(path)
    plan = make_plan(scenario, SEED)
    assert len(plan.assets) == scenario.heat_pumps + scenario.pumps
    for asset in plan.assets:
        if asset.fault is not None:
            assert asset.fault.code in FAULTS_BY_KIND[asset.ref.kind]
            assert asset.fault.onset_s < scenario.days * 86400 and asset.fault.span_s > 0


def test_demo_faults_fail_while_their_machines_run() -> None:
    """The demo stages faults inside their reference time scales that trip by their physics in the run,
    late enough to be caught, while running; no heat pump is ever below its operating limit."""
    scenario = load_scenario(SCENARIOS / "demo.toml")
    assert scenario.heat_pumps + scenario.pumps <= 10
    assert len(scenario.sites) == 2
    run = generate(scenario, 7)
    for f in scenario.faults:
        low, high = TIMESCALES[f.code].span_days
        assert f.span_days is not None and low <= f.span_days <= high
        failure = run.truth.asset(f.asset).machine_faults[0].failure
        assert failure is not None, f.asset
        assert 5.0 <= (failure - run.truth.start).total_seconds() / 86400 <= scenario.days - 1.0
        series = run.asset(f.asset)
        assert series.trip_index is not None and operating(series)[series.trip_index]
    for series in run.series:
        assert series.mode is None or not (series.mode == CUTOFF).any(), series.ref.name


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"faults": [{"asset": "hp-0001", "code": "bearing_wear", "onset_day": 0}]}, "faults.0.code"),
        ({"faults": [{"asset": "hp-0009", "code": "low_flow", "onset_day": 0}]}, "faults.0.asset"),
        ({"faults": [{"asset": "hp-0001", "code": "low_flow", "onset_day": 0, "span_days": -1}]}, "faults.0.span_days"),
        ({"faults": [{"asset": "hp-0001", "code": "low_flow", "onset_day": 5}]}, "faults.0.onset_day"),
        ({"faults": [{"asset": "hp-0001", "code": "low_flow", "onset_day": -500}]}, "faults.0.onset_day"),
        ({"faults": [{"asset": "hp-0001", "code": "no_such_fault", "onset_day": 0}]}, "faults.0.code"),
        ({"random_faults": {"heat_pump": 1, "failure_day": [1, 9]}}, "random_faults.failure_day"),
        ({"sensor_faults": [{"asset": "hp-0001", "metric": "flow_temp_c", "mode": "noise", "start_day": 0,
                             "end_day": 1, "noise_factor": 0.5}]}, "sensor_faults.0.noise_factor"),
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
    record = next(r for r in run.iter_records() if r["asset"] == "hp-0009")
    series = run.asset("hp-0009")
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


def test_a_subset_of_assets_is_the_same_as_in_the_full_run() -> None:
    scenario = load_scenario(TINY).model_copy(update={"days": 1.0})
    full, part = generate(scenario, SEED), generate(scenario, SEED, assets={"hp-0003", "pump-0002"})
    assert [a.asset for a in part.truth.assets] == ["hp-0003", "pump-0002"]
    for name in ("hp-0003", "pump-0002"):
        assert part.truth.asset(name) == full.truth.asset(name)
        for metric, values in full.asset(name).values.items():
            np.testing.assert_array_equal(part.asset(name).values[metric], values)
