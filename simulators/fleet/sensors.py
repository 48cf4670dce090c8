"""The measurement layer: what the asset's sensors report about the true values.

Adds per-channel noise (``METRICS[kind].noise_sigma``) and quantisation, models a sensor replaced by a
better-calibrated one (an offset step and half the noise), and injects sensor faults (failure-physics.md A3):
stuck, drift, dropout (null values, or silence of the whole asset), spikes and a wrong scale. A sensor
fault touches one channel only and leaves every physically coupled channel alone, which is how a
detector can tell it from a machine fault. Null readings are NaN here; the runner writes them as null.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm_common.catalog import METRICS
from pdm_common.contracts import AssetKind
from simulators.fleet.plan import EventPlan, SensorFaultPlan
from simulators.fleet.scenario import OperatingEventType, SensorFaultMode

__all__ = ["QUANTUM", "RELATIVE_NOISE", "Readings", "measure"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

QUANTUM: dict[str, float] = {
    # Heat pump: failure-physics.md A1 quantisation column [E].
    "outdoor_temp_c": 0.1,
    "flow_temp_c": 0.1,
    "return_temp_c": 0.1,
    "discharge_temp_c": 0.1,
    "suction_pressure_bar": 0.01,
    "discharge_pressure_bar": 0.01,
    "compressor_current_a": 0.1,
    "compressor_hz": 1.0,
    "fan_rpm": 1.0,
    "flow_lpm": 0.1,
    # Pump: PLC analogue inputs scaled to these resolutions [E].
    "vibration_mm_s": 0.01,
    "bearing_temp_c": 0.1,
    "motor_temp_c": 0.1,
    "motor_current_a": 0.1,
    "flow_m3_h": 0.1,
    "speed_rpm": 1.0,
    "seal_temp_c": 0.1,
}
"""Reported resolution per channel (names shared by both kinds have the same resolution)."""

NON_NEGATIVE = frozenset(
    {
        "suction_pressure_bar",
        "discharge_pressure_bar",
        "compressor_current_a",
        "compressor_hz",
        "fan_rpm",
        "flow_lpm",
        "vibration_mm_s",
        "motor_current_a",
        "flow_m3_h",
        "speed_rpm",
    }
)
"""Absolute pressures, speeds, flows and currents cannot be negative."""

RELATIVE_NOISE: dict[str, float] = {"vibration_mm_s": 0.05}
"""Velocity RMS over a short window scatters by 5-10 % of its value (failure-physics.md B1) [S~], on top of
the absolute noise floor of ``METRICS``."""

DRIFT_SPAN_PER_DAY = 0.02
"""Default drift: 2 % of the normal span per day, e.g. 0.66 K/day on a flow-temperature sensor (A3: 0.05-0.5
K/day for temperature; faster here so a short scenario shows it) [E]."""
SPIKE_SPAN = (0.15, 0.4)
"""Spike height as a share of the normal span, either sign: far beyond 5-20 sigma of noise (A3) [E]."""


@dataclass(frozen=True, slots=True)
class Readings:
    """What the asset reports: per-channel values (NaN = null) and which samples are sent at all."""

    values: dict[str, FloatArray]
    present: BoolArray


def _quantise(x: FloatArray, quantum: float) -> FloatArray:
    # Round to the quantum, then to 10 decimals so 41.2 prints as 41.2 rather than 41.199999999999996.
    return np.asarray(np.round(np.round(x / quantum) * quantum, 10), dtype=np.float64)


def _apply_fault(
    x: FloatArray, t_rel_s: FloatArray, f: SensorFaultPlan, span: float, rng: np.random.Generator
) -> FloatArray:
    active = (t_rel_s >= f.start_s) & (t_rel_s < f.end_s)
    if not active.any():
        return x
    first = int(np.argmax(active))
    if f.mode is SensorFaultMode.STUCK:
        return np.where(active, x[first], x)
    if f.mode is SensorFaultMode.DRIFT:
        rate = f.rate_per_day if f.rate_per_day is not None else DRIFT_SPAN_PER_DAY * span
        return np.where(active, x + rate * (t_rel_s - f.start_s) / 86400.0, x)
    if f.mode is SensorFaultMode.DROPOUT_NULL:
        return np.where(active, np.nan, x)
    if f.mode is SensorFaultMode.WRONG_SCALE:
        return np.where(active, x * f.scale, x)
    if f.mode is SensorFaultMode.SPIKE:
        dt = float(t_rel_s[1] - t_rel_s[0]) if t_rel_s.size > 1 else 60.0
        hits = active & (rng.random(x.size) < f.spikes_per_h * dt / 3600.0)
        height = rng.uniform(*SPIKE_SPAN, size=x.size) * span * rng.choice([-1.0, 1.0], size=x.size)
        return np.where(hits, x + height, x)
    return x


def measure(
    kind: AssetKind,
    true_values: dict[str, FloatArray],
    t_rel_s: FloatArray,
    *,
    events: tuple[EventPlan, ...],
    faults: tuple[SensorFaultPlan, ...],
    seed: tuple[int, ...],
) -> Readings:
    """Turn true channel values into reported readings.

    Args:
        kind: asset kind (for noise levels and normal spans).
        true_values: the machine model's noise-free channels.
        t_rel_s: sample times relative to the run's start.
        events: the asset's operating events (``sensor_replaced`` is used here).
        faults: the asset's sensor faults.
        seed: the asset's seed; each channel draws its noise and its fault from its own generator, so a
            sensor fault on one channel leaves every other channel bit-for-bit unchanged.
    """
    out: dict[str, FloatArray] = {}
    for index, spec in enumerate(METRICS[kind]):
        noise_rng = np.random.default_rng([*seed, 10, index])
        fault_rng = np.random.default_rng([*seed, 11, index])
        x = true_values[spec.name]
        sigma = np.full(x.size, spec.noise_sigma)
        for e in events:
            if e.type is OperatingEventType.SENSOR_REPLACED and e.metric == spec.name:
                after = t_rel_s >= e.start_s
                x = np.where(after, x + e.offset, x)
                sigma = np.where(after, sigma * 0.5, sigma)
        relative = RELATIVE_NOISE.get(spec.name, 0.0)
        if relative:
            sigma = np.sqrt(sigma**2 + (relative * x) ** 2)
        x = x + sigma * noise_rng.standard_normal(x.size)
        if spec.name in NON_NEGATIVE:
            x = np.maximum(x, 0.0)
        x = _quantise(x, QUANTUM[spec.name])
        span = spec.normal_high - spec.normal_low
        for f in faults:
            if f.metric == spec.name and f.mode is not SensorFaultMode.DROPOUT_SILENCE:
                x = _apply_fault(x, t_rel_s, f, span, fault_rng)
        out[spec.name] = _quantise(x, QUANTUM[spec.name])
    present = np.ones(t_rel_s.size, dtype=bool)
    for f in faults:
        if f.mode is SensorFaultMode.DROPOUT_SILENCE:
            present &= ~((t_rel_s >= f.start_s) & (t_rel_s < f.end_s))
    return Readings(values=out, present=present)
