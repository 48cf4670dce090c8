"""Industrial centrifugal pump set (30-75 kW, 2-pole motor on a VFD, rigid base) in a production plant.

The plant runs shifts and stops at night, at weekends and on holidays; production changes move the flow
demand and the drive speed. Hydraulics follow the affinity laws on a parabolic pump curve; current follows
hydraulic power; bearing, motor and seal temperatures follow their losses through first-order lags.
Vibration is broadband velocity RMS on the bearing housing, judged against ISO 10816-3 group 2 rigid:
zone A/B 1.4, B/C 2.8, C/D 4.5 mm/s (failure-physics.md B1) [S]. Pure: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm_common.catalog import FaultCode
from pdm_common.contracts import AssetKind
from simulators.fleet.clock import local_hour, local_weekday
from simulators.fleet.dynamics import first_order_lag
from simulators.fleet.effects import MachineSignals, enforce_criterion, fault_levels
from simulators.fleet.plan import AssetPlan
from simulators.fleet.scenario import OperatingEventType, SiteSpec

__all__ = ["PumpParams", "draw_params", "running_schedule", "simulate_pump"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

RATED_RPM = 2960.0
"""2-pole induction motor at 50 Hz with rated slip [S~]."""
SHUTOFF_HEAD_BAR = 5.0
"""Pump curve H = H0·s² − a·Q²: 4.2 bar differential at the design flow, 5.0 at shut-off; with ≈1.1 bar
suction the discharge sits at 5.1-5.6 bar, the "5 bar duty point" of the catalog's criteria [E]."""
DESIGN_HEAD_BAR = 4.2
PUMP_EFFICIENCY = 0.78
MOTOR_EFFICIENCY = 0.94
"""IE3 motor in this size class [S~]; pump best-efficiency 0.75-0.82 [E]."""
LINE_V = 400.0
MOTOR_PF = 0.87
BEARING_TAU_MIN = 40.0
MOTOR_TAU_MIN = 25.0
SEAL_TAU_MIN = 15.0
"""Thermal time constants of housing, winding and seal chamber [E]."""
UNPLANNED_STOPS_PER_WEEK = 1.5
"""Short process interruptions (upstream starved, operator) [E]."""


@dataclass(frozen=True, slots=True)
class PumpParams:
    """Per-installation constants, drawn once per asset."""

    design_flow_m3_h: float
    base_load: float
    v0_mm_s: float
    hall_temp_c: float


def draw_params(rng: np.random.Generator) -> PumpParams:
    """Draw one installation: size, usual load, healthy vibration level, machine-hall temperature."""
    return PumpParams(
        design_flow_m3_h=rng.uniform(200.0, 400.0),
        base_load=rng.uniform(0.85, 1.0),
        # Healthy sets run 1.0-2.0 mm/s (B1) [E]; new installations sit in zone A/B.
        v0_mm_s=rng.uniform(1.0, 1.8),
        hall_temp_c=rng.uniform(18.0, 24.0),
    )


def running_schedule(epoch_s: FloatArray, site: SiteSpec) -> BoolArray:
    """Planned running hours of the site's plant (weekdays only)."""
    hour = local_hour(epoch_s, site.utc_offset_h)
    weekday = local_weekday(epoch_s, site.utc_offset_h)
    if site.shifts == "day":
        on = (hour >= 7.0) & (hour < 16.0) & (weekday < 5)
    elif site.shifts == "two_shift":
        on = (hour >= 6.0) & (hour < 22.0) & (weekday < 5)
    else:
        start_week = (weekday == 0) & (hour >= 6.0)
        on = start_week | ((weekday >= 1) & (weekday < 5)) | ((weekday == 5) & (hour < 6.0))
    return np.asarray(on, dtype=bool)


def _unplanned_stops(t_rel_s: FloatArray, rng: np.random.Generator) -> BoolArray:
    stopped = np.zeros(t_rel_s.size, dtype=bool)
    span_s = float(t_rel_s[-1] - t_rel_s[0]) if t_rel_s.size else 0.0
    for _ in range(rng.poisson(UNPLANNED_STOPS_PER_WEEK * span_s / (7 * 86400.0))):
        start = rng.uniform(float(t_rel_s[0]), float(t_rel_s[-1]))
        length = rng.uniform(20.0, 90.0) * 60.0
        stopped |= (t_rel_s >= start) & (t_rel_s < start + length)
    return stopped


def _slow_variation(t_rel_s: FloatArray, rng: np.random.Generator, sigma: float, tau_h: float) -> FloatArray:
    n_h = int(np.ceil((float(t_rel_s[-1]) - float(t_rel_s[0])) / 3600.0)) + 2
    a = float(np.exp(-1.0 / tau_h))
    shocks = rng.standard_normal(n_h) * sigma * np.sqrt(1.0 - a * a)
    series = np.empty(n_h)
    x = rng.standard_normal() * sigma
    for i in range(n_h):
        x = a * x + shocks[i]
        series[i] = x
    grid = float(t_rel_s[0]) + 3600.0 * np.arange(n_h)
    return np.asarray(np.interp(t_rel_s, grid, series), dtype=np.float64)


def simulate_pump(
    epoch_s: FloatArray, t_rel_s: FloatArray, plan: AssetPlan, site: SiteSpec, rng: np.random.Generator
) -> MachineSignals:
    """True channel values of one pump set at the sample times (as :func:`.heat_pump.simulate_heat_pump`)."""
    dt = float(t_rel_s[1] - t_rel_s[0]) if t_rel_s.size > 1 else 60.0
    p = draw_params(rng)
    lv = fault_levels(AssetKind.PUMP, plan, t_rel_s)
    bearing, cav, impeller = lv[FaultCode.BEARING_WEAR], lv[FaultCode.CAVITATION], lv[FaultCode.IMPELLER_WEAR]
    seal, motor_f = lv[FaultCode.SEAL_LEAK], lv[FaultCode.MOTOR_OVERHEATING]

    running = running_schedule(epoch_s, site) & ~_unplanned_stops(t_rel_s, rng)
    load = p.base_load + _slow_variation(t_rel_s, rng, 0.03, 6.0)
    for e in plan.events:
        active = (t_rel_s >= e.start_s) & (t_rel_s < e.end_s)
        if e.type is OperatingEventType.HOLIDAY:
            running &= ~active
        elif e.type is OperatingEventType.PRODUCTION_CHANGE:
            load = np.where(active, e.load + (load - p.base_load), load)
    load = np.clip(load, 0.5, 1.05)
    # The VFD trims speed with production: 90 % speed at 0 load, 100 % at design [E].
    speed_ratio = 0.9 + 0.1 * np.minimum(load, 1.0)

    # Cavitation episodes: suction tank low → NPSH margin gone → head collapses, flow and current flutter (B3).
    suction = 1.1 + _slow_variation(t_rel_s, rng, 0.08, 12.0) - 0.45 * cav
    flutter = rng.standard_normal(t_rel_s.size)
    q = p.design_flow_m3_h * load * (1.0 - 0.08 * impeller) * (1.0 - 0.2 * cav * (1.0 + 0.3 * flutter))
    a = (SHUTOFF_HEAD_BAR - DESIGN_HEAD_BAR) / p.design_flow_m3_h**2
    head = (SHUTOFF_HEAD_BAR * speed_ratio**2 - a * q**2) * (1.0 - 0.12 * impeller)
    head = head * (1.0 - 0.25 * cav) - 0.1 * cav * np.abs(flutter)
    p_hyd_kw = q / 3600.0 * head * 1e5 / 1000.0
    # Worn impellers recirculate: hydraulic efficiency falls as head does, so power stays about flat (B3).
    p_in_kw = p_hyd_kw / (PUMP_EFFICIENCY * (1.0 - 0.12 * impeller) * MOTOR_EFFICIENCY)
    current = p_in_kw * 1000.0 / (np.sqrt(3.0) * LINE_V * MOTOR_PF) * (1.0 + 0.06 * motor_f) * (1.0 - 0.05 * cav)
    rated_a = p.design_flow_m3_h / 3600.0 * DESIGN_HEAD_BAR * 1e5 / 1000.0 / (PUMP_EFFICIENCY * MOTOR_EFFICIENCY)
    rated_a = rated_a * 1000.0 / (np.sqrt(3.0) * LINE_V * MOTOR_PF)

    vib = p.v0_mm_s * (0.75 + 0.25 * speed_ratio**2) + 0.4 * np.abs(load - 0.95)
    # Bearing health index: flat then exponential (B2); broadband RMS rises late, +2.2 mm/s at failure [E].
    vib = vib + 2.2 * bearing + 1.2 * cav * (1.0 + 0.4 * np.abs(flutter))

    ambient = p.hall_temp_c + 1.5 * np.sin(2.0 * np.pi * (local_hour(epoch_s, site.utc_offset_h) - 9.0) / 24.0)
    # Bearing temperature rises only in the last 10-15 % of life: +12 K at failure (B2/B3) [S~].
    bearing_rise = np.where(running, 25.0 + 8.0 * load + 12.0 * bearing**3, 0.0)
    motor_rise = np.where(running, 20.0 + 45.0 * (current / rated_a) ** 2 + 45.0 * motor_f, 0.0)
    # Seal chamber: ambient + 10-30 K normal (B3) [E]; a leaking, dry-running face heats fast.
    seal_rise = np.where(running, 12.0 + 6.0 * load + 45.0 * seal, 0.0)

    values = {
        "vibration_mm_s": np.where(running, vib, 0.05),
        "bearing_temp_c": ambient + first_order_lag(bearing_rise, dt, BEARING_TAU_MIN * 60.0),
        "motor_temp_c": ambient + first_order_lag(motor_rise, dt, MOTOR_TAU_MIN * 60.0),
        "motor_current_a": np.where(running, current, 0.0),
        "suction_pressure_bar": suction,
        "discharge_pressure_bar": np.where(running, suction + head, suction),
        "flow_m3_h": np.where(running, q, 0.0),
        "speed_rpm": np.where(running, RATED_RPM * speed_ratio, 0.0),
        "seal_temp_c": ambient + first_order_lag(seal_rise, dt, SEAL_TAU_MIN * 60.0),
    }
    if plan.fault is not None:
        enforce_criterion(AssetKind.PUMP, values, running, plan.fault.code, lv[plan.fault.code])
    return MachineSignals(values=values, flags={"running": running}, operating=running)
