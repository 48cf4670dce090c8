"""Machine faults move their coupled channels, trip at their own criterion crossing, and then stay stopped.

Each faulty asset is compared with itself in the same run without the fault (same seed): weather, habits
and sensor noise are identical, so every difference is the fault's doing.
"""

from __future__ import annotations

import numpy as np
import pytest

from pdm_common.catalog import FAILURE_CRITERIA, FAULTS_BY_KIND, METRICS, FaultCode
from pdm_common.contracts import AssetKind
from simulators.fleet import FleetRun, generate, load_scenario
from simulators.fleet.plan import BEARING_FIRST_PREDICTION, make_plan
from simulators.fleet.timescales import MAGNITUDE_RANGE, TIMESCALES
from tests.simulators.test_fleet_support import SCENARIOS, SEED, TINY, crossed, operating

UP, DOWN = 1, -1
SIGNATURES: dict[FaultCode, dict[str, int]] = {
    # failure-physics.md A2/B3: the channels each fault must move, and which way.
    FaultCode.REFRIGERANT_LEAK: {
        "suction_pressure_bar": DOWN,
        "discharge_temp_c": UP,
        "compressor_hz": UP,
        "compressor_current_a": UP,
        "suction_temp_c": UP,
    },
    FaultCode.COMPRESSOR_WEAR: {
        "compressor_current_a": UP,
        "suction_pressure_bar": UP,
        "discharge_pressure_bar": DOWN,
        "discharge_temp_c": UP,
        "compressor_hz": UP,
    },
    FaultCode.FAN_MOTOR: {"fan_rpm": DOWN, "suction_pressure_bar": DOWN},
    FaultCode.EVAPORATOR_ICING: {"suction_pressure_bar": DOWN, "compressor_hz": UP},
    FaultCode.LOW_FLOW: {"flow_lpm": DOWN, "discharge_pressure_bar": UP, "discharge_temp_c": UP},
    # Restricted valve: head pressure up where a leak's falls (A2: subcooling up, the tell).
    FaultCode.EXPANSION_VALVE: {"discharge_temp_c": UP, "discharge_pressure_bar": UP},
    FaultCode.FOUR_WAY_VALVE_LEAK: {
        "suction_pressure_bar": UP,
        "discharge_pressure_bar": DOWN,
        "suction_temp_c": UP,
        "discharge_temp_c": UP,
    },
    FaultCode.EEV_STUCK_OPEN: {"discharge_temp_c": DOWN, "suction_temp_c": DOWN, "compressor_current_a": UP},
    FaultCode.BEARING_WEAR: {
        "vibration_mm_s": UP,
        "bearing_temp_c": UP,
        "vibration_kurtosis": UP,
        "vibration_envelope_g": UP,
    },
    FaultCode.CAVITATION: {"discharge_pressure_bar": DOWN, "suction_pressure_bar": DOWN, "motor_current_a": DOWN},
    FaultCode.IMPELLER_WEAR: {"discharge_pressure_bar": DOWN},
    FaultCode.SEAL_LEAK: {"seal_temp_c": UP},
    FaultCode.MOTOR_OVERHEATING: {"motor_temp_c": UP, "motor_current_a": UP},
}
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def runs() -> tuple[FleetRun, FleetRun]:
    scenario = load_scenario(TINY)
    healthy = scenario.model_copy(update={"faults": [], "sensor_faults": []})
    return generate(scenario, SEED), generate(healthy, SEED)


def _cases() -> list[tuple[str, FaultCode]]:
    return [(f.asset, f.code) for f in load_scenario(TINY).faults]


def test_tiny_scenario_covers_every_fault_code() -> None:
    assert {code for _, code in _cases()} == set(FaultCode)


@pytest.mark.parametrize(("asset", "code"), _cases(), ids=[c.value for _, c in _cases()])
def test_fault_moves_its_coupled_channels(runs: tuple[FleetRun, FleetRun], asset: str, code: FaultCode) -> None:
    faulty, healthy = runs[0].asset(asset), runs[1].asset(asset)
    truth = runs[0].truth.asset(asset).machine_faults[0]
    assert truth.failure is not None, "the tiny scenario's faults all trip inside the run"
    onset_ms, failure_ms = truth.onset.timestamp() * 1000, truth.failure.timestamp() * 1000
    span_ms = truth.span_days * 86_400_000
    # The late-degradation window: the last fifth of the span, stopping before the final hours.
    window = (faulty.ts_ms >= failure_ms - 0.2 * span_ms) & (faulty.ts_ms < failure_ms - 2 * HOUR_MS)
    both = window & operating(faulty) & operating(healthy)
    assert both.sum() > 30
    specs = {m.name: m for m in METRICS[faulty.ref.kind]}
    for metric, sign in SIGNATURES[code].items():
        spec = specs[metric]
        shift = float(np.nanmean(faulty.values[metric][both]) - np.nanmean(healthy.values[metric][both]))
        least = max(3 * spec.noise_sigma, 0.01 * (spec.normal_high - spec.normal_low))
        assert sign * shift > least, f"{metric} moved {shift:+.3f}, expected sign {sign:+d} beyond {least:.3f}"
    before_onset = faulty.ts_ms < onset_ms
    for metric, values in faulty.values.items():
        np.testing.assert_array_equal(values[before_onset], healthy.values[metric][before_onset])


@pytest.mark.parametrize(("asset", "code"), _cases(), ids=[c.value for _, c in _cases()])
def test_unit_trips_at_its_criterion_crossing_and_stays_stopped(
    runs: tuple[FleetRun, FleetRun], asset: str, code: FaultCode
) -> None:
    series = runs[0].asset(asset)
    truth = runs[0].truth.asset(asset).machine_faults[0]
    criterion = FAILURE_CRITERIA[code]
    assert truth.failure is not None
    failure_ms = truth.failure.timestamp() * 1000
    ops = operating(series)
    hit = crossed(series.values[criterion.metric], criterion) & ops
    # The ground-truth failure is the first operating reading past the criterion: no earlier one exists.
    assert hit.any()
    assert int(series.ts_ms[np.argmax(hit)]) == failure_ms
    trip = int(np.searchsorted(series.ts_ms, failure_ms))
    assert series.trip_index == trip
    # Then the protection has stopped the unit for good: never operating again, and flagged as tripped.
    assert not ops[trip + 1 :].any()
    assert series.flags["tripped"][trip + 1 :].all() and not series.flags["tripped"][: trip + 1].any()
    if series.ref.kind is AssetKind.HEAT_PUMP:
        assert (series.values["compressor_hz"][trip + 1 :] == 0).all()
        assert (series.values["fan_rpm"][trip + 1 :] == 0).all()
    else:
        assert (series.values["speed_rpm"][trip + 1 :] == 0).all()
        assert not series.flags["running"][trip + 1 :].any()


def test_healthy_twin_never_crosses_any_criterion(runs: tuple[FleetRun, FleetRun]) -> None:
    for series in runs[1].series:
        ops = operating(series)
        assert series.trip_index is None and not series.flags["tripped"].any()
        for code in FAULTS_BY_KIND[series.ref.kind]:
            criterion = FAILURE_CRITERIA[code]
            assert not (crossed(series.values[criterion.metric], criterion) & ops).any(), (series.ref.name, code)


def test_when_a_unit_fails_is_up_to_its_weather_not_the_scenario() -> None:
    """Same onset and time scale, another seed (weather, house, build): the trip moves, near the span."""
    scenario = load_scenario(TINY)
    trips = {}
    for seed in (SEED, SEED + 1):
        truth = generate(scenario.model_copy(update={"sensor_faults": []}), seed).truth
        trips[seed] = {a.asset: f.failure for a in truth.assets for f in a.machine_faults}
    moved = [a for a in trips[SEED] if trips[SEED][a] is not None and trips[SEED][a] != trips[SEED + 1][a]]
    assert len(moved) >= len(trips[SEED]) - 1


def test_time_scales_and_magnitudes_are_drawn_from_the_reference_ranges() -> None:
    scenario = load_scenario(SCENARIOS / "mixed-faults.toml")
    seen: set[FaultCode] = set()
    for seed in range(8):
        for asset in make_plan(scenario, seed).assets:
            f = asset.fault
            if f is None or any(s.asset == asset.ref.name for s in scenario.faults):
                continue
            seen.add(f.code)
            low, high = TIMESCALES[f.code].span_days
            assert low * 86400 <= f.span_s <= high * 86400, (f.code, f.span_s / 86400)
            assert MAGNITUDE_RANGE[0] <= f.magnitude <= MAGNITUDE_RANGE[1]
            if f.code is FaultCode.BEARING_WEAR:
                assert BEARING_FIRST_PREDICTION[0] <= f.first_prediction <= BEARING_FIRST_PREDICTION[1]
            low_day, high_day = scenario.random_faults.failure_day
            assert low_day * 86400 <= f.onset_s + f.span_s <= high_day * 86400
    assert seen == set(FaultCode)
