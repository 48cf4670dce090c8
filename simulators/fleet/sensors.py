"""The measurement layer: what the asset's sensors report about the true values.

Two steps. :func:`measure` is a healthy sensor: its calibration offset (each unit's sensors are off by a
little, well inside the replace-if limits of ±1.2 K / ±0.34 bar, failure-physics.md A1 [S]), noise
(``METRICS[kind].noise_sigma``, relative for vibration), quantisation, and a sensor replaced by a
better-calibrated one (a new offset, half the noise). The machine's own protection reads these values.
:func:`inject_faults` then breaks sensors (failure-physics.md A3): stuck, drift, bias step, noise increase,
spikes, dropout (null values, or silence of the whole asset) and a wrong scale. A sensor fault touches one
channel only and leaves every physically coupled channel alone, which is how a detector can tell it from
a machine fault. Null readings are NaN here; the runner writes them as null.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm_common.catalog import METRICS, MetricSpec
from pdm_common.contracts import AssetKind
from simulators.fleet.plan import EventPlan, SensorFaultPlan
from simulators.fleet.scenario import OperatingEventType, SensorFaultMode

__all__ = ["QUANTUM", "RELATIVE_NOISE", "Readings", "inject_faults", "measure", "noise_sigma"]

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
    "suction_temp_c": 0.1,
    # Pump: PLC analogue inputs scaled to these resolutions [E].
    "vibration_mm_s": 0.01,
    "bearing_temp_c": 0.1,
    "motor_temp_c": 0.1,
    "motor_current_a": 0.1,
    "flow_m3_h": 0.1,
    "speed_rpm": 1.0,
    "seal_temp_c": 0.1,
    "vibration_kurtosis": 0.01,
    "vibration_envelope_g": 0.001,
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
        "vibration_kurtosis",
        "vibration_envelope_g",
    }
)
"""Absolute pressures, speeds, flows, currents and vibration statistics cannot be negative."""

ZERO_AT_STANDSTILL = frozenset(
    {"fan_rpm", "speed_rpm", "flow_lpm", "flow_m3_h", "motor_current_a", "compressor_hz"}
)
"""Tachometers, flow meters (low-flow cut-off) and current transformers read exactly 0 at standstill [E]."""

RELATIVE_NOISE: dict[str, float] = {"vibration_mm_s": 0.05, "vibration_envelope_g": 0.10}
"""Vibration statistics over a short window scatter with their value: velocity RMS 5-10 % (B1) [S~],
envelope 10 % (B3 table) [E]; on top of the absolute noise floor of ``METRICS`` (kurtosis: 0.2)."""

CALIBRATION_SIGMA: dict[str, float] = {"°C": 0.2, "bar": 0.03}
"""Calibration offset of a healthy sensor, 1 sigma: NTC thermistors class ±0.5 K, transducers ±0.5 % of a
20-45 bar range [E]; other channels 0.5 % of their normal span; none for set-points and statistics."""


@dataclass(frozen=True, slots=True)
class Readings:
    """What the asset reports: per-channel values (NaN = null) and which samples are sent at all."""

    values: dict[str, FloatArray]
    present: BoolArray


def _quantise(x: FloatArray, quantum: float) -> FloatArray:
    # Round to the quantum, then to 10 decimals so 41.2 prints as 41.2 rather than 41.199999999999996.
    return np.asarray(np.round(np.round(x / quantum) * quantum, 10), dtype=np.float64)


def noise_sigma(spec: MetricSpec, x: FloatArray) -> FloatArray:
    """Per-sample noise sigma of a healthy sensor reading ``x``."""
    relative = RELATIVE_NOISE.get(spec.name, 0.0)
    return np.asarray(np.sqrt(spec.noise_sigma**2 + (relative * x) ** 2), dtype=np.float64)


def _calibration(spec: MetricSpec, rng: np.random.Generator) -> float:
    if spec.noise_sigma == 0.0 or spec.unit == "-":
        return 0.0
    sigma = CALIBRATION_SIGMA.get(spec.unit, 0.005 * (spec.normal_high - spec.normal_low))
    return float(rng.normal(0.0, sigma))


def measure(
    kind: AssetKind,
    true_values: dict[str, FloatArray],
    t_rel_s: FloatArray,
    *,
    events: tuple[EventPlan, ...],
    seed: tuple[int, ...],
) -> dict[str, FloatArray]:
    """What healthy sensors report about ``true_values`` (noise, calibration, quantisation, replacements).

    Each channel draws from its own generator, so a change to one channel leaves the others bit-for-bit
    alike, and the draws do not depend on the values (a twin run with a fault shares the healthy noise).
    """
    out: dict[str, FloatArray] = {}
    for index, spec in enumerate(METRICS[kind]):
        rng = np.random.default_rng([*seed, 10, index])
        offset = _calibration(spec, rng)
        x = true_values[spec.name] + offset
        sigma = noise_sigma(spec, true_values[spec.name])
        for e in events:
            if e.type is OperatingEventType.SENSOR_REPLACED and e.metric == spec.name:
                after = t_rel_s >= e.start_s
                # The new sensor's calibration replaces the old one's; the event's offset is its error.
                x = np.where(after, x - offset + e.offset, x)
                sigma = np.where(after, sigma * 0.5, sigma)
        x = x + sigma * rng.standard_normal(x.size)
        if spec.name in NON_NEGATIVE:
            x = np.maximum(x, 0.0)
        if spec.name in ZERO_AT_STANDSTILL:
            x = np.where(true_values[spec.name] == 0.0, 0.0, x)
        out[spec.name] = _quantise(x, QUANTUM[spec.name])
    return out


def _apply_fault(x: FloatArray, t_rel_s: FloatArray, f: SensorFaultPlan, *, sigma: FloatArray, quantum: float,
                 rng: np.random.Generator) -> FloatArray:
    lo, hi = np.searchsorted(t_rel_s, [f.start_s, f.end_s])
    if hi <= lo:
        return x
    y = x.copy()
    w = slice(lo, hi)
    if f.mode is SensorFaultMode.STUCK:
        y[w] = x[lo]
    elif f.mode is SensorFaultMode.DRIFT:
        y[w] = x[w] + f.rate_per_day * (t_rel_s[w] - f.start_s) / 86400.0
    elif f.mode is SensorFaultMode.BIAS:
        y[w] = x[w] + f.bias
    elif f.mode is SensorFaultMode.NOISE:
        extra = np.sqrt(max(f.noise_factor**2 - 1.0, 0.0)) * np.maximum(sigma[w], quantum)
        y[w] = x[w] + extra * rng.standard_normal(hi - lo)
    elif f.mode is SensorFaultMode.DROPOUT_NULL:
        y[w] = np.nan
    elif f.mode is SensorFaultMode.WRONG_SCALE:
        y[w] = x[w] * f.scale
    elif f.mode is SensorFaultMode.SPIKE:
        dt = float(t_rel_s[1] - t_rel_s[0]) if t_rel_s.size > 1 else 60.0
        hits = rng.random(hi - lo) < f.spikes_per_h * dt / 3600.0
        signs = rng.choice([-1.0, 1.0], size=hi - lo)
        # A3: 5-20 sigma of the sensor's noise (at least one quantisation step) [E].
        y[w] = np.where(hits, x[w] + signs * f.spike_sigma * np.maximum(sigma[w], quantum), x[w])
    return y


def inject_faults(
    kind: AssetKind,
    readings: dict[str, FloatArray],
    true_values: dict[str, FloatArray],
    t_rel_s: FloatArray,
    *,
    faults: tuple[SensorFaultPlan, ...],
    seed: tuple[int, ...],
) -> Readings:
    """Break the sensors named by ``faults`` (each channel from its own generator)."""
    out: dict[str, FloatArray] = {}
    for index, spec in enumerate(METRICS[kind]):
        x = readings[spec.name]
        mine = [f for f in faults if f.metric == spec.name and f.mode is not SensorFaultMode.DROPOUT_SILENCE]
        if mine:
            rng = np.random.default_rng([*seed, 11, index])
            sigma = noise_sigma(spec, true_values[spec.name])
            for f in mine:
                x = _apply_fault(x, t_rel_s, f, sigma=sigma, quantum=QUANTUM[spec.name], rng=rng)
            if spec.name in NON_NEGATIVE:
                x = np.where(np.isnan(x), x, np.maximum(x, 0.0))
            x = _quantise(x, QUANTUM[spec.name])
        out[spec.name] = x
    present = np.ones(t_rel_s.size, dtype=bool)
    for f in faults:
        if f.mode is SensorFaultMode.DROPOUT_SILENCE:
            present &= ~((t_rel_s >= f.start_s) & (t_rel_s < f.end_s))
    return Readings(values=out, present=present)
