"""Industrial centrifugal pump set (30-75 kW, 2-pole motor on a VFD, rigid base) in a production plant.

The plant (``plant``) decides when it runs, the flow it must deliver and the drive's set-point. A pump runs
in one of two control modes: **throttled** (fixed speed per order, a process valve sets the flow, so flow
and head move along the pump curve at constant speed) or **pressure-controlled** (the drive holds a header
pressure, so speed follows the flow). Hydraulics follow the affinity laws on a parabolic pump curve;
efficiency falls off-design; current follows shaft power; bearing, motor and seal temperatures follow their
losses, the hall and the pumped fluid through first-order lags. Vibration is broadband velocity RMS on the
bearing housing, judged against ISO 10816-3 group 2 rigid: zone A/B 1.4, B/C 2.8, C/D 4.5 mm/s
(failure-physics.md B1) [S], plus kurtosis and envelope (``bearing``). Faults change hidden quantities
(defect size, NPSH margin, clearance, seal-face condition, motor cooling) and the unit trips when its
criterion is crossed. Pure: arrays in, arrays out. Numbers are [E] unless tagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm_common.catalog import FaultCode
from simulators.fleet.bearing import bearing_features, early_stage
from simulators.fleet.dynamics import first_order_lag, hourly_ar1
from simulators.fleet.effects import MachineSignals, fault_damage
from simulators.fleet.plan import AssetPlan
from simulators.fleet.plant import process_conditions
from simulators.fleet.scenario import SiteSpec

__all__ = ["PumpUnit", "draw_unit", "simulate_pump", "vapour_pressure_bar"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

RATED_RPM = 2960.0
"""2-pole induction motor at 50 Hz with rated slip [S~]."""
LINE_V = 400.0
MOTOR_PF = 0.87
MOTOR_EFFICIENCY = 0.94
"""IE3 motor in this size class [S~]; pump best-efficiency 0.75-0.82 [E]."""
BEARING_TAU_MIN = 40.0
MOTOR_TAU_MIN = 25.0
SEAL_TAU_MIN = 15.0
"""Thermal time constants of housing, winding and seal chamber [E]."""
M_PER_BAR = 10.2
"""Metres of water head per bar."""
ZONE_D_MM_S = 4.5
MAX_SPEED = 1.0
"""The drive runs at most at the motor's rated speed [E]."""


def vapour_pressure_bar(temp_c: FloatArray) -> FloatArray:
    """Water's vapour pressure (Antoine fit): 0.023 bar at 20 °C, 0.474 bar at 80 °C (B3) [S]; the fit gives 0.024.

    >>> [round(float(v), 3) for v in vapour_pressure_bar(np.array([20.0, 80.0]))]
    [0.024, 0.474]
    """
    return np.asarray(np.exp(16.3872 - 3885.7 / (np.asarray(temp_c) + 230.17)) / 100.0, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class PumpUnit:
    """One pump set as built, installed and aged (drawn per asset)."""

    design_flow_m3_h: float
    design_head_bar: float
    shutoff_ratio: float
    bep_efficiency: float
    pressure_control: bool
    header_ratio: float
    v0_mm_s: float
    vib_ageing_per_day: float
    kurtosis0: float
    envelope0_g: float
    npshr_m: float
    strainer_bar: float
    strainer_bar_per_day: float
    impeller_worn: float
    bearing_rise_k: float
    seal_rise_k: float
    motor_rise_k: float


def draw_unit(rng: np.random.Generator) -> PumpUnit:
    """Draw a pump set: size, trim, control mode, condition at the start of the run [E]."""
    return PumpUnit(
        design_flow_m3_h=rng.uniform(200.0, 400.0),
        # Differential head at design flow; with ≈1.1 bar suction the discharge sits at 5.0-6.0 bar, about
        # the "5 bar duty point" of the catalog's criteria, at least 10 % of head above 4.5 bar [E].
        design_head_bar=rng.uniform(4.3, 4.7),
        shutoff_ratio=rng.uniform(1.15, 1.25),
        bep_efficiency=rng.uniform(0.75, 0.82),
        pressure_control=bool(rng.random() < 0.5),
        header_ratio=rng.uniform(0.98, 1.03),
        # Healthy sets run 1.0-2.0 mm/s (B1) [E]; older ones higher, and grease ages.
        v0_mm_s=rng.uniform(0.9, 1.7),
        vib_ageing_per_day=rng.uniform(0.0, 0.003),
        kurtosis0=rng.uniform(2.8, 3.3),
        envelope0_g=rng.uniform(0.1, 0.3),
        npshr_m=rng.uniform(2.0, 3.5),
        strainer_bar=rng.uniform(0.04, 0.10),
        strainer_bar_per_day=rng.uniform(0.0, 0.003),
        # Wear-ring clearance already opened: 0-4 % head lost before the run [E].
        impeller_worn=rng.uniform(0.0, 0.04),
        bearing_rise_k=rng.uniform(20.0, 30.0),
        seal_rise_k=rng.uniform(8.0, 15.0),
        motor_rise_k=rng.uniform(40.0, 50.0),
    )


def simulate_pump(
    epoch_s: FloatArray, t_rel_s: FloatArray, plan: AssetPlan, site: SiteSpec, *, lockout_from: int | None = None
) -> MachineSignals:
    """True channel values of one pump set at the sample times (as :func:`.heat_pump.simulate_heat_pump`)."""
    n = t_rel_s.size
    dt = float(t_rel_s[1] - t_rel_s[0]) if n > 1 else 60.0
    rng = np.random.default_rng([*plan.seed, 3])
    unit = draw_unit(rng)
    proc = process_conditions(epoch_s, t_rel_s, site, plan.events, rng)
    flutter = rng.standard_normal(n)
    scatter = hourly_ar1(t_rel_s, rng, 0.04, 0.5, step_s=300.0)
    wander = hourly_ar1(t_rel_s, rng, 0.12, 2.0, step_s=600.0)
    days = t_rel_s / 86400.0
    tripped = np.zeros(n, dtype=bool) if lockout_from is None else np.arange(n) >= lockout_from
    running = proc.running & ~tripped

    f = plan.fault
    d = fault_damage(plan, t_rel_s)
    fr = np.random.default_rng([*plan.seed, 2])

    def k(value: float) -> float:
        """An effect coefficient with this unit's magnitude and its own ±20 % spread."""
        return value * (f.magnitude if f is not None else 1.0) * float(fr.uniform(0.8, 1.2))

    code = f.code if f is not None else None
    zero = np.zeros(n)
    bearing_d = d if code is FaultCode.BEARING_WEAR else zero
    cav = d if code is FaultCode.CAVITATION else zero
    wear = unit.impeller_worn + (k(0.10) * d if code is FaultCode.IMPELLER_WEAR else zero)
    seal = k(60.0) * d if code is FaultCode.SEAL_LEAK else zero
    cooling = np.minimum(k(0.55) * d, 0.9) if code is FaultCode.MOTOR_OVERHEATING else zero

    qd = unit.design_flow_m3_h
    h0 = unit.design_head_bar * unit.shutoff_ratio
    a = (h0 - unit.design_head_bar) / qd**2
    head_factor = 1.0 - wear
    q = qd * proc.demand
    if unit.pressure_control:
        # The drive holds the header pressure: speed follows flow (and rises to make up a worn impeller).
        h_set = unit.design_head_bar * unit.header_ratio
        speed = np.clip(np.sqrt((h_set + a * q**2) / (h0 * head_factor)), 0.8, MAX_SPEED)
    else:
        # Throttled: the order's speed, but never so slow that the process loses its duty head (the
        # order was planned on the new pump's curve, so a worn impeller is not made up).
        duty = 0.97 * unit.design_head_bar
        speed = np.clip(np.maximum(proc.speed_order, np.sqrt((duty + a * q**2) / h0)), 0.8, MAX_SPEED)
    head = (h0 * speed**2 - a * q**2) * head_factor

    # Suction: the tank, the pump's strainer (fouling slowly) and, for cavitation, a falling suction level
    # and eroding impeller (B3: NPSH margin gone, head collapses, flow and current flutter) [S~].
    suction = proc.suction_bar - (unit.strainer_bar + unit.strainer_bar_per_day * days) * (q / qd) ** 2
    suction = suction - k(0.7) * cav
    x = q / (qd * speed)
    npsha = (suction - vapour_pressure_bar(proc.fluid_c)) * M_PER_BAR
    npshr = unit.npshr_m * np.maximum(x, 0.3) ** 2 * (1.0 + k(0.3) * np.minimum(cav, 2.0))
    margin = npsha - npshr
    collapse = 0.6 / (1.0 + np.exp((margin + 0.5) / 0.6))
    cavitating = collapse > 0.02
    head = head * (1.0 - collapse * (1.0 + 0.3 * flutter * cavitating))
    q = q * (1.0 - 0.5 * collapse * (1.0 + 0.3 * flutter))

    eff = unit.bep_efficiency * np.clip(1.0 - 0.6 * (x - 1.0) ** 2, 0.3, 1.0) * (1.0 - wear) * (1.0 - 0.5 * collapse)
    p_hyd_kw = q / 3600.0 * head * 1e5 / 1000.0
    p_in_kw = p_hyd_kw / (eff * MOTOR_EFFICIENCY)
    # An overheating winding (insulation, unbalance) draws a little more current for the same work (B3) [E].
    current = p_in_kw * 1000.0 / (np.sqrt(3.0) * LINE_V * MOTOR_PF) * (1.0 + 0.08 * cooling)
    rated_a = qd / 3600.0 * unit.design_head_bar * 1e5 / 1000.0 / (unit.bep_efficiency * MOTOR_EFFICIENCY)
    rated_a = rated_a * 1000.0 / (np.sqrt(3.0) * LINE_V * MOTOR_PF)

    incipient = zero
    if f is not None and code is FaultCode.BEARING_WEAR:
        incipient = early_stage(np.maximum(t_rel_s - f.onset_s, 0.0) / f.span_s, f.first_prediction)
    healthy_vib = (unit.v0_mm_s * (1.0 + unit.vib_ageing_per_day * days) * speed**1.5
                   * (1.0 + 0.8 * (x - 1.0) ** 2) * (1.0 + scatter))
    brg = bearing_features(bearing_d, incipient, speed, rms_at_failure=k(ZONE_D_MM_S - 1.3), rng=fr, t_rel_s=t_rel_s)
    hf = 1.5 * collapse * (1.0 + 0.4 * np.abs(flutter))
    vib = healthy_vib + brg.rms_mm_s + hf
    # Healthy kurtosis wanders a little with process noise (valves, flow turbulence) [E].
    kurtosis = unit.kurtosis0 + 0.3 * (x - 1.0) ** 2 + wander + brg.kurtosis + 2.0 * collapse
    envelope = unit.envelope0_g * speed**2 * (1.0 + scatter) + brg.envelope_g + 0.8 * collapse

    # Temperatures: hall + losses; bearings and seal also take heat from the pumped fluid.
    bearing_rise = (unit.bearing_rise_k * speed * (1.0 + 0.2 * proc.demand) + 0.2 * (proc.fluid_c - proc.hall_c)
                    + brg.temp_k)
    motor_rise = (20.0 + unit.motor_rise_k * (current / rated_a) ** 2) / (1.0 - cooling)
    # Seal chamber: fluid + 8-15 K normal (B3: ambient + 10-30 K) [E]; a leaking, dry-running face heats fast.
    seal_rise = unit.seal_rise_k * speed + seal * speed
    bearing_t = proc.hall_c + first_order_lag(np.where(running, bearing_rise, 0.2 * (proc.fluid_c - proc.hall_c)),
                                              dt, BEARING_TAU_MIN * 60.0)
    motor_t = proc.hall_c + first_order_lag(np.where(running, motor_rise, 0.0), dt, MOTOR_TAU_MIN * 60.0)
    seal_t = proc.fluid_c + first_order_lag(np.where(running, seal_rise, 0.0), dt, SEAL_TAU_MIN * 60.0)

    values = {
        "vibration_mm_s": np.where(running, vib, 0.05),
        "bearing_temp_c": bearing_t,
        "motor_temp_c": motor_t,
        "motor_current_a": np.where(running, current, 0.0),
        "suction_pressure_bar": np.where(running, suction, proc.suction_bar),
        "discharge_pressure_bar": np.where(running, suction + head, proc.suction_bar),
        "flow_m3_h": np.where(running, q, 0.0),
        "speed_rpm": np.where(running, RATED_RPM * speed, 0.0),
        "seal_temp_c": seal_t,
        "vibration_kurtosis": np.where(running, kurtosis, unit.kurtosis0),
        "vibration_envelope_g": np.where(running, envelope, 0.02),
    }
    return MachineSignals(values=values, flags={"running": running, "tripped": tripped}, operating=running)
