"""Air-to-water heat pump (8 kW class, R32 monobloc, inverter compressor) driven by weather and a house.

Causal chain (failure-physics.md A1): outdoor air → building heat demand (heat loss, set-point, occupancy,
thermal mass) → weather-compensated flow temperature → compressor modulation or on/off cycling →
evaporating/condensing temperatures → R32 saturation pressures, discharge temperature, COP ≈ 0.5·Carnot →
electrical power and current. Frost builds on the outdoor coil in humid air near 0 °C and is removed by
reverse-cycle defrosts. Faults enter as changes to hidden quantities (charge, efficiency, airflow, water
flow, superheat) so coupled channels move together. Pure: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm_common.catalog import FaultCode
from pdm_common.contracts import AssetKind
from simulators.fleet.clock import local_hour
from simulators.fleet.dynamics import first_order_lag
from simulators.fleet.effects import MachineSignals, enforce_criterion, fault_levels
from simulators.fleet.plan import AssetPlan
from simulators.fleet.refrigerant import saturation_pressure_bar
from simulators.fleet.scenario import OperatingEventType
from simulators.fleet.weather import Weather

__all__ = ["HeatPumpParams", "draw_params", "simulate_heat_pump"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

F_MIN_HZ = 25.0
F_MAX_HZ = 100.0
F_LIMIT_HZ = 110.0
"""Inverter rotary compressors run ≈20-120 Hz (A1) [E]; 100 Hz is the rated maximum, 110 Hz the boost limit."""
P_EL_MAX_KW = 3.0
"""Inverter input-current limit of a single-phase 8 kW unit: ≈13.5 A at 230 V, inside the 14 A normal maximum [E]."""
MAINS_V = 230.0
POWER_FACTOR = 0.98
"""Inverter with active PFC [E]."""
STANDBY_A = 0.2
CARNOT_EFFICIENCY = 0.5
"""Practical COP ≈ 0.5 × Carnot (A1) [S~]."""
WATER_CP_KJ_KG_K = 4.186
CYCLE_PERIOD_MIN = 40.0
"""On/off cycle at minimum modulation: anti-short-cycle timers allow ≈2-3 starts per hour [E]."""
MIN_DEFROST_INTERVAL_MIN = 35.0
"""Minimum run time between defrosts (A1: typically 35 min) [S~]."""
DEFROST_MIN = (5.0, 10.0)
"""Defrost duration 5-10 min (A1) [S~]."""
BUILDING_TAU_H = 8.0
"""Thermal time constant of the heated building as seen by the load [E]."""
CONTROL_TAU_H = 3.0
"""Damped outdoor temperature used by the weather-compensation curve (common controller practice) [E]."""
WATER_TAU_MIN = 4.0
"""Water-loop and refrigerant-side time constant at a 1-min sample rate [E]."""
DISCHARGE_TAU_S = 150.0
"""Time constant of the discharge-line temperature sensor on its pipe [E]."""
PRESSURE_TAU_S = 120.0
"""Pressures settle within a few minutes of a start, stop or defrost [E]."""
AWAY_SETPOINT_C = 16.0
"""Away/holiday mode room set-point [E]."""
MIN_OUTDOOR_C = -25.0
"""Operating limit: below it the compressor stays off and the backup heater carries the house; −25 °C is a
common lower limit in monobloc datasheets [S~]."""
DESIGN_OUTDOOR_C = -20.0
"""Design outdoor temperature for Oslo-like sites (NS-EN 12831 DUT ≈ −20 °C) [S~]."""


@dataclass(frozen=True, slots=True)
class HeatPumpParams:
    """Per-installation constants, drawn once per asset."""

    design_load_kw: float
    nominal_kw: float
    flow_lpm: float
    room_setpoint_c: float
    night_setback_k: float
    gains_kw: float
    cycle_phase: float


def draw_params(rng: np.random.Generator) -> HeatPumpParams:
    """Draw one installation: house size, water flow, habits."""
    return HeatPumpParams(
        design_load_kw=rng.uniform(4.5, 6.0),
        nominal_kw=rng.uniform(7.5, 8.5),
        # ≈2.9 l/min per kW at ΔT 5 K (A1) for the 7-8 kW rating [S~].
        flow_lpm=rng.uniform(19.0, 24.0),
        room_setpoint_c=rng.uniform(20.5, 22.0),
        night_setback_k=float(rng.choice([0.0, 0.0, 1.5, 2.0])),
        gains_kw=rng.uniform(0.3, 0.6),
        cycle_phase=rng.uniform(0.0, 1.0),
    )


def _setpoint(
    epoch_s: FloatArray, t_rel_s: FloatArray, p: HeatPumpParams, plan: AssetPlan, utc_offset_h: float
) -> FloatArray:
    hour = local_hour(epoch_s, utc_offset_h)
    night = (hour >= 22.0) | (hour < 6.0)
    sp = p.room_setpoint_c - np.where(night, p.night_setback_k, 0.0)
    for e in plan.events:
        active = (t_rel_s >= e.start_s) & (t_rel_s < e.end_s)
        if e.type is OperatingEventType.SETPOINT_CHANGE:
            sp = sp + np.where(active, e.setpoint_delta_k, 0.0)
        elif e.type is OperatingEventType.HOLIDAY:
            sp = np.where(active, AWAY_SETPOINT_C, sp)
    return np.asarray(sp, dtype=np.float64)


def _occupancy_gains(epoch_s: FloatArray, p: HeatPumpParams, utc_offset_h: float) -> FloatArray:
    hour = local_hour(epoch_s, utc_offset_h)
    # Cooking, people and appliances peak in the evening [E].
    evening = np.exp(-0.5 * ((hour - 19.0) / 2.5) ** 2)
    return np.asarray(p.gains_kw * (0.6 + 0.8 * evening), dtype=np.float64)


def _defrosts(
    frost_rate: FloatArray, running: BoolArray, dt_s: float, duration_min: FloatArray
) -> tuple[BoolArray, FloatArray]:
    """Place defrost cycles where accumulated frost reaches 1; returns (defrost mask, frost load 0…1)."""
    n = frost_rate.size
    per_sample = np.where(running, frost_rate * dt_s / 60.0, 0.0)
    cum = np.cumsum(per_sample)
    run_cum = np.cumsum(running.astype(np.float64)) * dt_s / 60.0
    defrost = np.zeros(n, dtype=bool)
    frost = np.zeros(n)
    base, run_base, i0 = 0.0, 0.0, 0
    while True:
        i = int(np.searchsorted(cum, base + 1.0))
        j = int(np.searchsorted(run_cum, run_base + MIN_DEFROST_INTERVAL_MIN))
        k = max(i, j)
        if k >= n:
            frost[i0:] = cum[i0:] - base
            break
        frost[i0:k] = cum[i0:k] - base
        length = max(1, round(float(duration_min[k]) * 60.0 / dt_s))
        end = min(n, k + length)
        defrost[k:end] = True
        frost[k:end] = np.linspace(1.0, 0.0, end - k)
        base = float(cum[end - 1]) if end - 1 >= 0 else 0.0
        run_base = float(run_cum[end - 1])
        i0 = end
    return defrost, np.clip(frost, 0.0, 1.5)


def simulate_heat_pump(
    epoch_s: FloatArray,
    t_rel_s: FloatArray,
    weather: Weather,
    plan: AssetPlan,
    *,
    utc_offset_h: float,
    rng: np.random.Generator,
) -> MachineSignals:
    """True channel values of one heat pump at the sample times.

    Args:
        epoch_s: sample times (Unix seconds).
        t_rel_s: the same times relative to the run's start (fault and event times are relative).
        weather: the site's weather at those times.
        plan: the asset's faults and operating events.
        utc_offset_h: the site's local time offset (night set-back, occupancy).
        rng: the asset's generator.
    """
    dt = float(t_rel_s[1] - t_rel_s[0]) if t_rel_s.size > 1 else 60.0
    p = draw_params(rng)
    lv = fault_levels(AssetKind.HEAT_PUMP, plan, t_rel_s)
    leak, wear = lv[FaultCode.REFRIGERANT_LEAK], lv[FaultCode.COMPRESSOR_WEAR]
    fan_f, icing = lv[FaultCode.FAN_MOTOR], lv[FaultCode.EVAPORATOR_ICING]
    low_flow, eev = lv[FaultCode.LOW_FLOW], lv[FaultCode.EXPANSION_VALVE]

    t_out = weather.temp_c
    setpoint = _setpoint(epoch_s, t_rel_s, p, plan, utc_offset_h)
    ua = p.design_load_kw / (21.0 - DESIGN_OUTDOOR_C)
    demand = first_order_lag(ua * (setpoint - t_out), dt, BUILDING_TAU_H * 3600.0) - _occupancy_gains(
        epoch_s, p, utc_offset_h
    )
    demand = np.maximum(demand, 0.0)
    t_damped = first_order_lag(t_out, dt, CONTROL_TAU_H * 3600.0)
    # Weather-compensation curve: ≈34 °C at +10 °C, ≈40 °C at 0 °C, ≈52 °C at −20 °C (A1: 35-55 °C) [S~].
    flow_set = np.clip(setpoint + 6.0 + 0.62 * (setpoint - t_damped), 28.0, 52.0)

    # Capacity per Hz falls with lost charge, leaking valves, ice and a throttled EEV (A2).
    capacity_factor = (1.0 - 0.30 * leak) * (1.0 - 0.30 * wear) * (1.0 - 0.20 * icing) * (1.0 - 0.15 * eev)
    q_max = p.nominal_kw * np.clip(1.0 + 0.015 * (t_out + 7.0), 0.5, 1.3)
    q_min = q_max * F_MIN_HZ / F_MAX_HZ
    duty = np.clip(demand / q_min, 0.0, 1.0)
    phase = np.mod(t_rel_s / (CYCLE_PERIOD_MIN * 60.0) + p.cycle_phase, 1.0)
    on = np.where(demand >= q_min, True, phase < duty) & (t_out > MIN_OUTDOOR_C)
    q_out = np.where(on, np.maximum(demand, q_min), 0.0)
    load = np.clip(q_out / q_max, 0.0, 1.0)

    # Frost: humid air between about −12 and +6 °C, fastest near 0 °C (A1: −5…+5 °C and humid) [S~];
    # at best one defrost per 35 min of running. Weak fans and low charge frost faster (A2).
    humid = np.clip((weather.rh_pct - 65.0) / 30.0, 0.0, 1.0)
    band = np.exp(-0.5 * ((t_out + 1.0) / 4.0) ** 2) * ((t_out > -12.0) & (t_out < 6.0))
    frost_rate = (1.0 / MIN_DEFROST_INTERVAL_MIN) * humid * band * (0.4 + 0.6 * load)
    frost_rate = frost_rate * (1.0 + 1.5 * fan_f) * (1.0 + 0.5 * leak)
    # Ineffective defrosts end early (A2: defrost failure) [E].
    duration = (DEFROST_MIN[0] + (DEFROST_MIN[1] - DEFROST_MIN[0]) * band) * (1.0 - 0.6 * icing)
    defrost, frost = _defrosts(frost_rate, on, dt, duration)
    on = on | defrost
    running = on & ~defrost

    flow_lpm = p.flow_lpm * (1.0 - 0.45 * low_flow)
    approach = (
        3.0 + 5.0 * load + 3.0 * frost * (1.0 + 2.0 * icing) + 8.0 * leak + 9.0 * fan_f + 14.0 * icing + 4.0 * eev
    )
    t_evap = t_out - approach
    t_cond = flow_set + 2.0 + 1.5 * load + 6.0 * low_flow - 3.0 * wear + 1.0 * eev
    lift = np.maximum(t_cond - t_evap, 10.0)
    efficiency = (1.0 - 0.30 * leak) * (1.0 - 0.45 * wear) * (1.0 - 0.15 * fan_f) * (1.0 - 0.2 * icing)
    efficiency = efficiency * (1.0 - 0.10 * eev) * (1.0 - 0.15 * low_flow)
    cop = CARNOT_EFFICIENCY * (t_cond + 273.15) / lift * efficiency
    p_el = q_out / np.maximum(cop, 0.5)
    limited = p_el > P_EL_MAX_KW
    p_el = np.minimum(p_el, P_EL_MAX_KW)
    q_out = np.where(limited, p_el * cop, q_out)
    hz = np.clip(F_MAX_HZ * (q_out / q_max) / capacity_factor, F_MIN_HZ, F_LIMIT_HZ)
    # Flow temperature sags when the unit cannot cover the load (current limit) [E].
    shortfall = np.maximum(demand - q_out, 0.0) * limited
    t_flow_on = flow_set - 2.0 * shortfall
    delta_t = q_out * 60.0 / (WATER_CP_KJ_KG_K * flow_lpm)
    ret_on = t_flow_on - delta_t

    t_dis = t_cond + 15.0 + 0.4 * (lift - 30.0) + 22.0 * leak + 15.0 * wear + 8.0 * low_flow + 25.0 * eev
    p_suc = saturation_pressure_bar(t_evap) + 0.8 * wear
    p_dis = saturation_pressure_bar(t_cond) - 2.5 * wear
    current = p_el * 1000.0 / (MAINS_V * POWER_FACTOR) + 2.0 * wear
    fan = np.clip(250.0 + 5.5 * (hz - F_MIN_HZ), 250.0, 850.0) * (1.0 - 0.45 * fan_f)

    # Off: the loop coasts toward room-side temperatures, pressures equalise (A1: 7-20 bar when off) [S].
    mean_return = setpoint + 0.5 * (flow_set - setpoint)
    flow_target = np.where(running, t_flow_on, np.where(defrost, mean_return - 4.0, mean_return))
    return_target = np.where(running, ret_on, np.where(defrost, mean_return - 1.0, mean_return))
    t_flow = first_order_lag(flow_target, dt, WATER_TAU_MIN * 60.0)
    t_ret = first_order_lag(return_target, dt, WATER_TAU_MIN * 60.0)
    equalised = saturation_pressure_bar(np.maximum(t_out, -10.0) + 8.0)
    # In defrost the cycle runs reversed: the water HX evaporates, the outdoor coil condenses [S] (A1).
    defrost_suc = saturation_pressure_bar(np.minimum(t_ret - 15.0, 10.0))
    defrost_dis = saturation_pressure_bar(np.maximum(t_out, 0.0) + 18.0)
    suction = first_order_lag(np.where(running, p_suc, np.where(defrost, defrost_suc, equalised)), dt, PRESSURE_TAU_S)
    discharge_p = first_order_lag(
        np.where(running, p_dis, np.where(defrost, defrost_dis, equalised)), dt, PRESSURE_TAU_S
    )
    # The discharge line heats within minutes of a start and cools slowly in the casing after a stop [E].
    discharge_t = first_order_lag(np.where(running, t_dis, np.where(defrost, 55.0, t_out + 25.0)), dt, DISCHARGE_TAU_S)

    values = {
        "outdoor_temp_c": t_out.copy(),
        "flow_temp_c": t_flow,
        "return_temp_c": t_ret,
        "discharge_temp_c": discharge_t,
        "suction_pressure_bar": suction,
        "discharge_pressure_bar": discharge_p,
        "compressor_current_a": np.where(running, current, np.where(defrost, 6.0, STANDBY_A)),
        "compressor_hz": np.where(running, np.round(hz), np.where(defrost, 70.0, 0.0)),
        "fan_rpm": np.where(running, fan, 0.0),
        "flow_lpm": flow_lpm,
    }
    if plan.fault is not None:
        enforce_criterion(AssetKind.HEAT_PUMP, values, running, plan.fault.code, lv[plan.fault.code])
    return MachineSignals(values=values, flags={"defrost": defrost}, operating=running)
