"""Sensor faults touch one channel only, at field sizes; operating changes and a healthy fleet stay in range."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from pdm_common.catalog import FAILURE_CRITERIA, FAULTS_BY_KIND, METRICS
from simulators.fleet import FleetRun, generate, load_scenario
from simulators.fleet.controller import HEAT
from simulators.fleet.plan import make_plan
from simulators.fleet.scenario import FIELD_SENSOR_FAULT_MODES, OperatingEventType, SensorFaultMode
from simulators.fleet.sensors import QUANTUM
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
    spec = next(m for m in METRICS[faulty.ref.kind] if m.name == metric)
    quantum = QUANTUM[metric]
    if mode is SensorFaultMode.STUCK:
        assert np.unique(got).size == 1
        assert np.unique(ref).size > 1
    elif mode is SensorFaultMode.DRIFT:
        diff = got - ref
        days = (truth.end - truth.start).total_seconds() / 86400
        assert truth.parameter is not None
        assert abs(diff[-1] - truth.parameter * days) < 2 * quantum
        assert np.all(np.diff(diff) * np.sign(truth.parameter) >= -2 * quantum)
    elif mode is SensorFaultMode.BIAS:
        assert truth.parameter is not None
        np.testing.assert_allclose(got - ref, truth.parameter, atol=quantum + 1e-9)
    elif mode is SensorFaultMode.NOISE:
        assert truth.parameter is not None
        ratio = np.std(got - ref) / spec.noise_sigma
        # Extra noise sqrt(k² − 1)·sigma on top of the sensor's own (A3: k = 3-10).
        assert 0.8 * np.sqrt(truth.parameter**2 - 1) < ratio < 1.2 * np.sqrt(truth.parameter**2 - 1)
    elif mode is SensorFaultMode.DROPOUT_NULL:
        assert np.isnan(got).all()
    elif mode is SensorFaultMode.SPIKE:
        jumps = np.abs(got - ref)
        hits = jumps > 2 * quantum
        assert 0 < hits.sum() < 0.2 * got.size
        # A3: 5-20 sigma of the sensor's noise, one sample long.
        assert truth.parameter is not None
        height = truth.parameter * max(spec.noise_sigma, quantum)
        np.testing.assert_allclose(jumps[hits], height, atol=quantum + 1e-9)
    elif mode is SensorFaultMode.WRONG_SCALE:
        np.testing.assert_allclose(got, ref * 10.0, atol=0.011)
    else:
        assert not faulty.present[window].any() and faulty.present[~window].all()
        assert truth.metric == "*"


def test_random_sensor_faults_have_field_sizes() -> None:
    """Drawn from failure-physics.md A3: drift 0.05-0.5 K/day, bias 1-3 K / 0.15-0.3 bar, noise x3-10,
    spikes 5-20 sigma; no decimal slips unless a scenario names one."""
    scenario = load_scenario(SCENARIOS / "sensor-faults.toml")
    named = {(f.asset, f.metric) for f in scenario.sensor_faults}
    drawn = [
        (a.ref.kind, f)
        for seed in range(6)
        for a in make_plan(scenario, seed).assets
        for f in a.sensor_faults
        if (a.ref.name, f.metric) not in named
    ]
    assert {f.mode for _, f in drawn} == set(FIELD_SENSOR_FAULT_MODES)
    for kind, f in drawn:
        spec = next(m for m in METRICS[kind] if m.name == f.metric)
        assert spec.noise_sigma > 0, "only physical sensors break"
        if f.mode is SensorFaultMode.DRIFT and spec.unit == "°C":
            assert 0.05 <= abs(f.rate_per_day) <= 0.5
        if f.mode is SensorFaultMode.BIAS and spec.unit == "°C":
            assert 1.0 <= abs(f.bias) <= 3.0
        if f.mode is SensorFaultMode.BIAS and spec.unit == "bar":
            assert 0.15 <= abs(f.bias) <= 0.3
        if f.mode is SensorFaultMode.NOISE:
            assert 3.0 <= f.noise_factor <= 10.0
        if f.mode is SensorFaultMode.SPIKE:
            assert 5.0 <= f.spike_sigma <= 20.0


@pytest.fixture(scope="module")
def changes() -> FleetRun:
    return generate(load_scenario(SCENARIOS / "operating-changes.toml").model_copy(update={"days": 14.0}), SEED)


def test_operating_changes_cross_no_failure_criterion(changes: FleetRun) -> None:
    for series in changes.series:
        ops = operating(series)
        for code in FAULTS_BY_KIND[series.ref.kind]:
            criterion = FAILURE_CRITERIA[code]
            assert not (crossed(series.values[criterion.metric], criterion) & ops).any(), (series.ref.name, code)


def _outside_cold_spells(run: FleetRun, name: str) -> npt.NDArray[np.bool_]:
    series = run.asset(name)
    keep = np.ones(series.ts_ms.size, dtype=bool)
    for e in run.truth.asset(name).operating_events:
        if e.type is OperatingEventType.COLD_SPELL:
            end = np.inf if e.end is None else e.end.timestamp() * 1000
            keep &= ~((series.ts_ms >= e.start.timestamp() * 1000) & (series.ts_ms < end))
    return keep


def test_healthy_fleet_stays_in_normal_ranges(changes: FleetRun) -> None:
    for kind, specs in METRICS.items():
        fleet = [s for s in changes.series if s.ref.kind is kind]
        for spec in specs:
            values = np.concatenate([s.values[spec.name][operating(s)] for s in fleet])
            usual = np.concatenate(
                [s.values[spec.name][operating(s) & _outside_cold_spells(changes, s.ref.name)] for s in fleet]
            )
            outside = (usual < spec.normal_low) | (usual > spec.normal_high)
            # Start-ups (a cold bearing, a discharge line still warming, a loop cooled down in away mode)
            # may dip out briefly. In an arctic outbreak a small unit flat out runs its discharge line a few
            # kelvin past the normal range (still far from its trip): only the bounds below apply there.
            assert outside.mean() < 0.005, f"{kind.value} {spec.name}: {outside.mean():.2%} outside normal range"
            slack = 0.15 * (spec.normal_high - spec.normal_low)
            assert values.min() >= spec.normal_low - slack and values.max() <= spec.normal_high + slack, spec.name


def test_replaced_sensor_steps_by_its_offset_and_gets_quieter(changes: FleetRun) -> None:
    event = next(e for e in changes.truth.asset("hp-0009").operating_events if e.type.value == "sensor_replaced")
    series = changes.asset("hp-0009")
    at_ms = event.start.timestamp() * 1000
    assert series.mode is not None
    # Modulating steadily: minute-to-minute changes of the flow temperature are the sensor's noise.
    steady = np.zeros_like(series.flags["defrost"])
    steady[1:] = (series.mode[1:] == HEAT) & (series.mode[:-1] == HEAT)
    before = series.values["flow_temp_c"][steady & (series.ts_ms < at_ms) & (series.ts_ms >= at_ms - DAY_MS)]
    after = series.values["flow_temp_c"][steady & (series.ts_ms >= at_ms) & (series.ts_ms < at_ms + DAY_MS)]
    assert before.size > 100 and after.size > 100
    assert np.std(np.diff(after)) < np.std(np.diff(before))
