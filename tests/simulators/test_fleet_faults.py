"""Machine faults move their coupled channels and meet their failure criterion at the failure time.

Each faulty asset is compared with itself in the same run without the fault (same seed): weather,
habits and sensor noise are identical, so every difference is the fault's doing.
"""

from __future__ import annotations

import numpy as np
import pytest

from pdm_common.catalog import FAILURE_CRITERIA, FAULTS_BY_KIND, METRICS, FaultCode
from simulators.fleet import FleetRun, generate, load_scenario
from tests.simulators.test_fleet_support import SEED, TINY, crossed, operating

UP, DOWN = 1, -1
SIGNATURES: dict[FaultCode, dict[str, int]] = {
    # failure-physics.md A2/B3: the channels each fault must move, and which way.
    FaultCode.REFRIGERANT_LEAK: {
        "suction_pressure_bar": DOWN,
        "discharge_temp_c": UP,
        "compressor_hz": UP,
        "compressor_current_a": UP,
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
    FaultCode.EXPANSION_VALVE: {"discharge_temp_c": UP, "suction_pressure_bar": DOWN, "discharge_pressure_bar": UP},
    FaultCode.BEARING_WEAR: {"vibration_mm_s": UP, "bearing_temp_c": UP},
    FaultCode.CAVITATION: {
        "discharge_pressure_bar": DOWN,
        "suction_pressure_bar": DOWN,
        "vibration_mm_s": UP,
        "flow_m3_h": DOWN,
    },
    FaultCode.IMPELLER_WEAR: {"discharge_pressure_bar": DOWN, "flow_m3_h": DOWN},
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
    onset_ms, failure_ms = truth.onset.timestamp() * 1000, truth.failure.timestamp() * 1000
    # The late-degradation window: the last fifth of the span, stopping before the final trip.
    window = (faulty.ts_ms >= failure_ms - 0.2 * (failure_ms - onset_ms)) & (faulty.ts_ms < failure_ms - 2 * HOUR_MS)
    both = window & operating(faulty) & operating(healthy)
    assert both.sum() > 30
    sigma = {m.name: m.noise_sigma for m in METRICS[faulty.ref.kind]}
    for metric, sign in SIGNATURES[code].items():
        shift = float(np.nanmean(faulty.values[metric][both]) - np.nanmean(healthy.values[metric][both]))
        assert sign * shift > max(3 * sigma[metric], 0.2), f"{metric} moved {shift:+.3f}, expected sign {sign:+d}"
    before_onset = faulty.ts_ms < onset_ms
    for metric, values in faulty.values.items():
        np.testing.assert_array_equal(values[before_onset], healthy.values[metric][before_onset])


@pytest.mark.parametrize(("asset", "code"), _cases(), ids=[c.value for _, c in _cases()])
def test_failure_criterion_crossed_at_failure_time(
    runs: tuple[FleetRun, FleetRun], asset: str, code: FaultCode
) -> None:
    series = runs[0].asset(asset)
    truth = runs[0].truth.asset(asset).machine_faults[0]
    criterion = FAILURE_CRITERIA[code]
    onset_ms, failure_ms = truth.onset.timestamp() * 1000, truth.failure.timestamp() * 1000
    hit = crossed(series.values[criterion.metric], criterion) & operating(series)
    first_ms = int(series.ts_ms[np.argmax(hit)]) if hit.any() else None
    assert first_ms is not None, "criterion never crossed"
    # Not long before: within 5 % of the onset→failure span (the final trip).
    assert first_ms >= failure_ms - 0.05 * (failure_ms - onset_ms), (
        f"crossed {(failure_ms - first_ms) / HOUR_MS:.1f} h early"
    )
    # At the failure time: the first operating samples from then on are past the threshold.
    after = operating(series) & (series.ts_ms >= failure_ms)
    assert hit[after][:10].all()


def test_healthy_twin_never_crosses_any_criterion(runs: tuple[FleetRun, FleetRun]) -> None:
    for series in runs[1].series:
        ops = operating(series)
        for code in FAULTS_BY_KIND[series.ref.kind]:
            criterion = FAILURE_CRITERIA[code]
            assert not (crossed(series.values[criterion.metric], criterion) & ops).any(), (series.ref.name, code)
