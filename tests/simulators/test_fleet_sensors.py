"""Sensor faults touch one channel only; operating changes and a healthy fleet stay inside normal ranges."""

from __future__ import annotations

import numpy as np
import pytest

from pdm_common.catalog import FAILURE_CRITERIA, FAULTS_BY_KIND, METRICS
from simulators.fleet import FleetRun, generate, load_scenario
from simulators.fleet.scenario import SensorFaultMode
from tests.simulators.test_fleet_support import SCENARIOS, SEED, TINY, crossed, operating

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def runs() -> tuple[FleetRun, FleetRun]:
    scenario = load_scenario(TINY)
    return generate(scenario, SEED), generate(scenario.model_copy(update={"sensor_faults": []}), SEED)


def _sensor_cases() -> list[tuple[str, str, SensorFaultMode]]:
    return [(f.asset, f.metric, f.mode) for f in load_scenario(TINY).sensor_faults]


def test_tiny_scenario_covers_every_sensor_fault_mode() -> None:
    assert {mode for *_, mode in _sensor_cases()} == set(SensorFaultMode)


@pytest.mark.parametrize(
    ("asset", "metric", "mode"), _sensor_cases(), ids=[f"{m.value}-{c}" for _, c, m in _sensor_cases()]
)
def test_sensor_fault_changes_one_channel_inside_its_window(
    runs: tuple[FleetRun, FleetRun], asset: str, metric: str, mode: SensorFaultMode
) -> None:
    faulty, clean = runs[0].asset(asset), runs[1].asset(asset)
    truth = next(f for f in runs[0].truth.asset(asset).sensor_faults if f.mode is mode)
    start_ms, end_ms = truth.start.timestamp() * 1000, truth.end.timestamp() * 1000
    window = (faulty.ts_ms >= start_ms) & (faulty.ts_ms < end_ms)
    others = {f.metric for f in runs[0].truth.asset(asset).sensor_faults} - {metric}
    for name, values in faulty.values.items():
        if name in others:
            continue
        if name == metric and mode is not SensorFaultMode.DROPOUT_SILENCE:
            np.testing.assert_array_equal(values[~window], clean.values[name][~window])
        else:
            np.testing.assert_array_equal(values, clean.values[name], err_msg=f"{name} changed by a {metric} fault")
    for name, flag in faulty.flags.items():
        np.testing.assert_array_equal(flag, clean.flags[name])
    got, ref = faulty.values[metric][window], clean.values[metric][window]
    if mode is SensorFaultMode.STUCK:
        assert np.unique(got).size == 1
        assert np.unique(ref).size > 1
    elif mode is SensorFaultMode.DRIFT:
        diff = got - ref
        assert diff[-1] > diff[0] and np.all(np.diff(diff) >= -1e-6 - 0.02)
    elif mode is SensorFaultMode.DROPOUT_NULL:
        assert np.isnan(got).all()
    elif mode is SensorFaultMode.SPIKE:
        jumps = np.abs(got - ref) > 10 * next(m.noise_sigma for m in METRICS[faulty.ref.kind] if m.name == metric)
        assert 0 < jumps.sum() < 0.2 * got.size
    elif mode is SensorFaultMode.WRONG_SCALE:
        np.testing.assert_allclose(got, ref * 10.0, atol=0.011)
    else:
        assert not faulty.present[window].any() and faulty.present[~window].all()
        assert truth.metric == "*"


@pytest.fixture(scope="module")
def changes() -> FleetRun:
    return generate(load_scenario(SCENARIOS / "operating-changes.toml").model_copy(update={"days": 14.0}), SEED)


def test_operating_changes_cross_no_failure_criterion(changes: FleetRun) -> None:
    for series in changes.series:
        ops = operating(series)
        for code in FAULTS_BY_KIND[series.ref.kind]:
            criterion = FAILURE_CRITERIA[code]
            assert not (crossed(series.values[criterion.metric], criterion) & ops).any(), (series.ref.name, code)


def test_healthy_fleet_stays_in_normal_ranges(changes: FleetRun) -> None:
    for kind, specs in METRICS.items():
        fleet = [s for s in changes.series if s.ref.kind is kind]
        for spec in specs:
            values = np.concatenate([s.values[spec.name][operating(s)] for s in fleet])
            outside = (values < spec.normal_low) | (values > spec.normal_high)
            # Start-ups (a cold bearing, a discharge line still warming, a loop cooled down in away mode)
            # may dip out briefly.
            assert outside.mean() < 0.005, f"{kind.value} {spec.name}: {outside.mean():.2%} outside normal range"
            slack = 0.15 * (spec.normal_high - spec.normal_low)
            assert values.min() >= spec.normal_low - slack and values.max() <= spec.normal_high + slack, spec.name


def test_replaced_sensor_steps_by_its_offset_and_gets_quieter(changes: FleetRun) -> None:
    event = next(e for e in changes.truth.asset("hp-0009").operating_events if e.type.value == "sensor_replaced")
    series = changes.asset("hp-0009")
    at_ms = event.start.timestamp() * 1000
    steady = operating(series) & ~series.flags["defrost"]
    before = series.values["flow_temp_c"][steady & (series.ts_ms < at_ms) & (series.ts_ms >= at_ms - DAY_MS)]
    after = series.values["flow_temp_c"][steady & (series.ts_ms >= at_ms) & (series.ts_ms < at_ms + DAY_MS)]
    assert before.size > 100 and after.size > 100
    assert np.std(np.diff(after)) < np.std(np.diff(before))
