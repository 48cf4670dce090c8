"""Air-to-water heat pump (6-10 kW class, R32 monobloc, inverter compressor) in a house, with its faults.

Causal chain (failure-physics.md A1): weather and household → heat demand (``building``) → controller:
heating, hot-water priority, cycling, defrost, cut-off (``controller``) → water side: flow and return
temperatures from the heat balance ``ΔT = Q / (c_p·ṁ)`` → refrigerant side: evaporating and condensing
temperatures, superheat, R32 saturation pressures, compressor speed from the mass flow the load needs,
discharge temperature from the pressure ratio, COP ≈ η·Carnot, electrical power and current.

Every unit is built differently (capacity, compressor efficiency, heat-exchanger approaches, EEV set-point,
charge, fan curve, water flow, installation of the outdoor sensor) and ages (coil fouling, scaling). Faults
change hidden quantities (charge, mass flow, bypass, friction, defrost effectiveness, resistance of the
water circuit …) so coupled channels move together, and the failure criterion is crossed when this physics
gets there: nothing pulls a channel to its threshold. Pure: arrays in, arrays out. Numbers are [E] unless
tagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm_common.catalog import FaultCode
from simulators.fleet.building import HouseLoad, draw_house, house_load
from simulators.fleet.clock import local_hour
from simulators.fleet.controller import (
    CUTOFF,
    DEFROST,
    DHW,
    HEAT,
    LOCKOUT,
    ControlTrace,
    draw_control,
    run_controller,
)
from simulators.fleet.dynamics import first_order_lag, hourly_ar1
from simulators.fleet.effects import MachineSignals, fault_damage
from simulators.fleet.plan import AssetPlan
from simulators.fleet.refrigerant import saturation_pressure_bar
from simulators.fleet.scenario import SiteSpec
from simulators.fleet.weather import Weather

__all__ = ["F_LIMIT_HZ", "F_MAX_HZ", "F_MIN_HZ", "Unit", "draw_unit", "simulate_heat_pump"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

F_MIN_HZ = 25.0
F_MAX_HZ = 100.0
F_LIMIT_HZ = 110.0
"""Inverter rotary compressors run ≈20-120 Hz (A1) [E]; 100 Hz is the rated maximum, 110 Hz the boost limit."""
MAINS_V = 230.0
POWER_FACTOR = 0.98
"""Inverter with active PFC [E]."""
AUX_A = 0.3
"""Controller, pump relay and crankcase heater of a running unit [E]."""
STANDBY_A = 0.2
WATER_CP_KJ_KG_K = 4.186
CONTROL_TAU_H = 3.0
"""Damped outdoor temperature used by the weather-compensation curve (common controller practice) [E]."""
WATER_TAU_MIN = 3.0
"""Water-loop sensor and pipe time constant [E]."""
DISCHARGE_TAU_S = 150.0
"""Time constant of the discharge-line temperature sensor on its pipe [E]."""
PRESSURE_TAU_S = 120.0
"""Pressures settle within a few minutes of a start, stop or defrost [E]."""
SUCTION_TAU_S = 60.0
FROST_BLOCK = 4.0
"""Ice equal to four defrost loads blocks the coil completely [E]."""
DEFROST_MIN = (4.0, 10.0)
"""Defrost duration: <1 to 10+ min, 5-15 in cold damp weather (A1) [S~]; longer with more frost."""
LOW_FLOW_END_LPM = 10.5
"""Flow a low-flow fault reaches at its span on a typical day; hot-water charges and closing radiator
valves take it under the 9 l/min switch [E]."""
DISCHARGE_CONTROL_C = 95.0
"""The EEV opens (lowers superheat) to cool the discharge above 95 °C (Technibel) [S]; a starved evaporator
(leak, restricted valve) has no opening left to give."""
FAN_MAX_RPM = 880.0
"""Outdoor fan maximum (A1: 300-900 rpm) [E]."""
SILENT_HZ_SHARE = 0.7
SILENT_FAN_SHARE = 0.8
"""Silent mode caps the compressor at 70 % and the fan at 80 % of their maxima [E]."""
MIN_FLOW_C = 27.0
"""Lowest flow temperature a heating curve asks for (curve minimum setting, 25-30 °C) [E]."""
DHW_MAX_FLOW_C = 55.0
"""Leaving-water limit in hot-water mode [E]."""


def envelope_max_flow_c(t_air: FloatArray) -> FloatArray:
    """Operating envelope: 55 °C leaving water down to -7 °C outdoor, falling to 45 °C at -20 °C (a typical
    single-stage R32 monobloc map) [E]; beyond it the backup heater makes up the flow temperature."""
    return np.asarray(np.clip(55.0 + (t_air + 7.0) * (10.0 / 13.0), 45.0, 55.0), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Unit:
    """One heat pump as built and installed (drawn per asset)."""

    nominal_kw: float
    carnot_eff: float
    compression_exp: float
    motor_heat_k: float
    evap_approach_k: float
    cond_approach_k: float
    superheat_k: float
    eev_hunt_k: float
    fan_min_rpm: float
    fan_rpm_per_hz: float
    flow_lpm: float
    dhw_flow_share: float
    p_el_max_kw: float
    charge: float
    fouling_k: float
    fouling_k_per_day: float
    scaling_k_per_day: float
    sun_on_sensor_k: float
    recirculation_k: float
    min_outdoor_c: float
    silent_nights: bool
    fan_cold_boost: float


def draw_unit(rng: np.random.Generator, site: SiteSpec) -> Unit:
    """Draw a unit: manufacturing spread and installation differences [E] unless tagged."""
    return Unit(
        nominal_kw=rng.uniform(6.0, 10.0),
        # Practical COP ≈ 0.5 × Carnot (A1) [S~]; ±5 % between units of a model and between models.
        carnot_eff=rng.uniform(0.46, 0.54),
        # Effective compression exponent: discharge 55-60 °C at A7/W35, 80-90 °C at A-7/W45, ≈100 °C at
        # A-20/W50 before the EEV's discharge control (A1: 55-95 °C in heat mode) [S]/[E].
        compression_exp=rng.uniform(0.145, 0.158),
        # Suction gas cooling the motor: ~250 W of losses into ~0.03 kg/s of gas, ≈8 K at rated speed.
        motor_heat_k=rng.uniform(6.0, 10.0),
        # Evaporator approach at full load, clean coil: T_evap ≈ T_oa − (6…10) K (A1) [E].
        evap_approach_k=rng.uniform(6.0, 9.0),
        # Condensing approach T_cond − T_flow: 2-5 K (A1) [E].
        cond_approach_k=rng.uniform(2.0, 4.0),
        # EEV superheat target: about 5 K (A1) [S~].
        superheat_k=rng.uniform(4.0, 7.0),
        eev_hunt_k=rng.uniform(0.3, 1.0),
        fan_min_rpm=rng.uniform(250.0, 320.0),
        fan_rpm_per_hz=rng.uniform(5.0, 6.5),
        # ≈2.9 l/min per kW at ΔT 5 K (A1) [S~], set by the installer's pump speed and pipework.
        flow_lpm=rng.uniform(17.0, 26.0),
        dhw_flow_share=rng.uniform(0.85, 1.0),
        # Single-phase inverter input limit, 12.5-14 A at 230 V, inside the 14 A normal maximum [E].
        p_el_max_kw=rng.uniform(2.8, 3.15),
        # Installed charge: 69 % of inspected units had charge problems (Pigg, via HPT Magazine) [S];
        # under the 15-20 % knee an EEV unit barely notices (Choi & Kim 2002) [S~].
        charge=float(np.clip(rng.normal(0.98, 0.04), 0.85, 1.05)),
        # Coil fouling and water-side scaling: present at the start, growing slowly (months, A2) [E].
        fouling_k=rng.uniform(0.0, 1.5),
        fouling_k_per_day=rng.uniform(0.5, 2.0) / 365.0,
        scaling_k_per_day=rng.uniform(0.2, 1.0) / 365.0,
        # The unit's outdoor sensor in sunshine reads warm; fan exhaust recirculating onto it reads cold.
        sun_on_sensor_k=rng.uniform(0.0, 4.0),
        recirculation_k=rng.uniform(0.0, 1.2),
        min_outdoor_c=site.heat_pump_min_outdoor_c + rng.uniform(-1.0, 1.0),
        # "Silent mode" 22-06 h, set on a third of installations near bedrooms or neighbours [E].
        silent_nights=bool(rng.random() < 0.35),
        # Fans run faster in the cold to keep the approach down (0-1.5 %/K below 0 °C) [E].
        fan_cold_boost=rng.uniform(0.0, 0.015),
    )


@dataclass(frozen=True, slots=True)
class _Faults:
    """Hidden quantities a fault changes (zero / neutral when healthy)."""

    fill: FloatArray
    superheat_k: FloatArray
    approach_k: FloatArray
    cond_k: FloatArray
    vol_eff: FloatArray
    comp_eff: FloatArray
    suction_bar: FloatArray
    head_bar: FloatArray
    drag_a: FloatArray
    ripple_a: FloatArray
    fan_friction: FloatArray
    defrost_eff: FloatArray
    flow_factor: FloatArray
    bypass: FloatArray
    flooded: FloatArray


def _fault_state(plan: AssetPlan, unit: Unit, t_rel_s: FloatArray, dt_s: float) -> _Faults:
    """Map the asset's fault damage onto the hidden quantities; effects carry per-asset spread."""
    n = t_rel_s.size
    zero, one = np.zeros(n), np.ones(n)
    fill, sh, app, cond = one.copy(), zero.copy(), zero.copy(), zero.copy()
    vol, comp, suc, head, drag, ripple = one.copy(), one.copy(), zero.copy(), zero.copy(), zero.copy(), zero.copy()
    friction, defrost_eff, flow, bypass, flooded = zero.copy(), one.copy(), one.copy(), zero.copy(), zero.copy()
    f = plan.fault
    if f is not None:
        rng = np.random.default_rng([*plan.seed, 2])
        d = fault_damage(plan, t_rel_s)

        def k(value: float) -> float:
            """An effect coefficient with this unit's magnitude and its own ±20 % spread."""
            return value * f.magnitude * float(rng.uniform(0.8, 1.2))

        if f.code is FaultCode.REFRIGERANT_LEAK:
            # Charge falls linearly to 40-60 % loss at the span (A2: lockout at 40-60 % loss) [E]; its effect
            # starts at the knee, 15-20 % loss (Choi & Kim 2002) [S~]: the EEV compensates until fully open.
            loss_end, knee = float(rng.uniform(0.40, 0.60)), float(rng.uniform(0.15, 0.20))
            loss = np.minimum(loss_end * d, 0.95)
            e = np.maximum(loss - knee, 0.0) / (loss_end - knee)
            fill = np.maximum(1.0 - k(0.55) * e, 0.05)
            sh, app = k(16.0) * e, k(5.0) * e
        elif f.code is FaultCode.COMPRESSOR_WEAR:
            # Valve leakage (volumetric and isentropic efficiency down, "high back / low head") and bearing
            # drag that the inverter cannot throttle away; ripple on the current grows with it (A2) [S~]/[E].
            vol = 1.0 - np.minimum(k(0.30) * d, 0.8)
            comp = 1.0 - np.minimum(k(0.25) * d, 0.7)
            suc, head = k(0.8) * d, k(2.5) * d
            drag = k(8.0) * d**1.5
            ripple = k(1.2) * d**2
        elif f.code is FaultCode.FAN_MOTOR:
            friction = k(0.8) * d
        elif f.code is FaultCode.EVAPORATOR_ICING:
            # Defrosts stop working: each removes less of the frost, the rest stays as ice (A2) [E].
            defrost_eff = np.clip(1.0 - k(1.0) * d, 0.0, 1.0)
        elif f.code is FaultCode.LOW_FLOW:
            # Rising resistance of the water circuit (strainer, pump wear) against the circulator's curve,
            # Q ∝ 1/√(1 + r): at the span a typical day's flow reaches the switch point (D: flow 100 → 50 %,
            # flow-switch alarm; the switch is the catalog's 9 l/min) [E].
            flow = 1.0 / np.sqrt(1.0 + k((unit.flow_lpm / LOW_FLOW_END_LPM) ** 2 - 1.0) * d)
        elif f.code is FaultCode.EXPANSION_VALVE:
            # Restricted valve: a starved evaporator like a leak, but charge piles up in the condenser:
            # head pressure (subcooling) up, the tell against a leak (A2) [S].
            fill = np.maximum(1.0 - k(0.5) * d, 0.05)
            sh, app, cond = k(16.0) * d, k(4.0) * d, k(6.0) * d
        elif f.code is FaultCode.FOUR_WAY_VALVE_LEAK:
            # Discharge gas bleeding to suction inside the valve: bypass 0 → 25 % over the span (D) [E].
            bypass = np.minimum(k(0.25) * d, 0.6)
            cond = -k(2.0) * d
        elif f.code is FaultCode.EEV_STUCK_OPEN:
            # Stuck open in episodes: superheat → 0 and liquid floods back (A2) [S~]; the compressor's
            # bearings wear by flood-back while it is flooded (damage accumulates with flooded run time).
            flooded = (d > 0.0).astype(np.float64)
            wear = np.cumsum(flooded) * dt_s / (f.span_s * 0.49)  # 0.49: mean duty of the episodes
            drag = k(8.0) * wear**1.5
            ripple = k(1.2) * wear**2
    return _Faults(fill, sh, app, cond, vol, comp, suc, head, drag, ripple, friction, defrost_eff, flow, bypass,
                   flooded)


def _capacity_kw(unit: Unit, t_air: FloatArray, t_water: FloatArray) -> FloatArray:
    """Heat output at 100 Hz: falls with outdoor temperature (suction density) and water temperature (lift).

    ≈ -1.8 %/K outdoor and -0.5 %/K water, the shape of hplib's regressions (A1) [S~]/[E].
    """
    return np.asarray(
        unit.nominal_kw * np.clip(1.0 + 0.018 * (t_air - 7.0), 0.35, 1.35) * (1.0 - 0.005 * (t_water - 35.0)),
        dtype=np.float64,
    )


def _frost_rate(weather: Weather, load: FloatArray, airflow: FloatArray) -> FloatArray:
    """Frost build-up per running minute, 1/35 at its fastest (one defrost per 35 min, A1) [S~].

    Humid air between about −12 and +6 °C, fastest near 0 °C (A1: −5…+5 °C and humid) [S~]; more with
    more load (a colder coil) and less airflow.
    """
    humid = np.clip((weather.rh_pct - 65.0) / 30.0, 0.0, 1.0) ** 1.5
    t = weather.temp_c
    band = np.exp(-0.5 * ((t + 1.0) / 4.0) ** 2) * ((t > -12.0) & (t < 6.0))
    return np.asarray(humid * band * (0.4 + 0.6 * load) / np.maximum(airflow, 0.2) / 35.0, dtype=np.float64)


def _mode_masks(trace: ControlTrace) -> tuple[BoolArray, BoolArray, BoolArray]:
    running = (trace.mode == HEAT) | (trace.mode == DHW)
    defrost = trace.mode == DEFROST
    backup = (trace.mode == CUTOFF) | (trace.mode == LOCKOUT)
    return running, defrost, backup


def simulate_heat_pump(
    epoch_s: FloatArray,
    t_rel_s: FloatArray,
    weather: Weather,
    plan: AssetPlan,
    site: SiteSpec,
    *,
    lockout_from: int | None = None,
) -> MachineSignals:
    """True channel values of one heat pump at the sample times.

    Args:
        epoch_s: sample times (Unix seconds).
        t_rel_s: the same times relative to the run's start (fault and event times are relative).
        weather: the site's weather at those times.
        plan: the asset's fault, operating events and seed.
        site: the site (climate, local time, operating limit of its units).
        lockout_from: sample index of a protective trip (found by the runner on a first pass); from there
            the unit is locked out.
    """
    n = t_rel_s.size
    dt = float(t_rel_s[1] - t_rel_s[0]) if n > 1 else 60.0
    rng = np.random.default_rng([*plan.seed, 3])
    unit, house, ctrl = draw_unit(rng, site), draw_house(rng), draw_control(rng)
    load_h: HouseLoad = house_load(epoch_s, t_rel_s, weather, house, climate=site.climate, events=plan.events,
                                   utc_offset_h=site.utc_offset_h, rng=rng)
    fx = _fault_state(plan, unit, t_rel_s, dt)
    hunt = hourly_ar1(t_rel_s, rng, unit.eev_hunt_k, 0.2, step_s=120.0)
    ripple_noise = np.abs(rng.standard_normal(n))
    t_air = weather.temp_c
    days = t_rel_s / 86400.0

    # The unit's outdoor sensor: sunshine warms it (the controller sees that too).
    sensor_sun = unit.sun_on_sensor_k * weather.solar_w_m2 / 1000.0
    t_ctrl = first_order_lag(t_air + sensor_sun, dt, CONTROL_TAU_H * 3600.0)
    room = load_h.room_setpoint_c
    curve = np.clip(room + house.curve_offset_k + house.curve_slope * (room - t_ctrl), MIN_FLOW_C, house.max_flow_c)
    limit = envelope_max_flow_c(t_air)
    curve = np.minimum(curve, limit)

    # Fan health: friction against the motor's torque, worse when the grease is cold (A2) [E].
    stiff = 1.0 + 0.03 * np.maximum(5.0 - t_air, 0.0)
    fan_health = np.sqrt(np.clip(1.0 - (fx.fan_friction * stiff) ** 2, 0.0, 1.0))
    airflow = np.maximum(fan_health, 0.05)
    net = fx.fill * fx.vol_eff * (1.0 - fx.bypass) * (1.0 - 0.08 * fx.flooded)
    hour = local_hour(epoch_s, site.utc_offset_h)
    silent = unit.silent_nights & ((hour >= 22.0) | (hour < 6.0))
    hz_cap = np.where(silent, SILENT_HZ_SHARE * F_LIMIT_HZ, F_LIMIT_HZ)
    q100 = _capacity_kw(unit, t_air, curve)
    q100_dhw = _capacity_kw(unit, t_air, np.minimum(ctrl.dhw_setpoint_c + 5.0, limit))
    q_max = np.where(load_h.heating_on, q100, q100_dhw) * net * (hz_cap / F_MAX_HZ)
    q_min = q100 * net * (F_MIN_HZ / F_MAX_HZ)
    allowed = t_air > unit.min_outdoor_c
    frost_rate = _frost_rate(weather, np.clip(load_h.demand_kw / np.maximum(q100, 0.5), 0.0, 1.0), airflow)
    trace = run_controller(
        demand_kw=np.where(load_h.heating_on, load_h.demand_kw, 0.0),
        q_min_kw=q_min,
        q_max_kw=q_max,
        allowed=allowed,
        dhw_draw_kwh=load_h.dhw_draw_kwh,
        frost_rate_per_min=frost_rate,
        defrost_eff=fx.defrost_eff,
        defrost_min=DEFROST_MIN[0] + (DEFROST_MIN[1] - DEFROST_MIN[0]) * np.clip(weather.rh_pct / 100.0, 0, 1),
        params=ctrl,
        dt_s=dt,
        lockout_from=n if lockout_from is None else lockout_from,
    )
    running, defrost, backup = _mode_masks(trace)
    dhw = trace.mode == DHW

    # --- water side -------------------------------------------------------------------------------------
    circulating = load_h.heating_on | running | defrost | backup | (trace.buffer_k > -6.0)
    flow_lpm = unit.flow_lpm * (1.0 - 0.15 * load_h.trv_closing * (~house.underfloor)) * fx.flow_factor
    flow_lpm = np.where(dhw, flow_lpm * unit.dhw_flow_share, flow_lpm)
    flow_lpm = np.where(circulating, flow_lpm, 0.0)
    q_hp = trace.q_hp_kw
    flow_w = np.maximum(flow_lpm, 1.0)
    # Refrigerant side first needs the water the condenser sees (the controller's heat output); the curve
    # sets the flow temperature, the loop's mean sits half a temperature drop below it.
    dt_water = np.where(running, q_hp, 0.0) * 60.0 / (WATER_CP_KJ_KG_K * flow_w)
    mean_loop = curve - np.minimum(np.where(dhw, 0.0, dt_water), 8.0) / 2.0 + trace.buffer_k
    summer_idle = ~load_h.heating_on & ~running & ~defrost
    mean_loop = np.where(summer_idle, room + 2.0, mean_loop)

    # --- refrigerant side -------------------------------------------------------------------------------
    load = np.clip(q_hp / np.maximum(q100, 0.5), 0.0, 1.2)
    frost = trace.frost
    blocked = np.minimum(frost / FROST_BLOCK, 0.97)
    frost_k = 3.5 * frost + 6.0 * blocked**2 / (1.0 - blocked)
    fouling = unit.fouling_k + unit.fouling_k_per_day * days
    # Less air over the coil: the approach grows about as 1/airflow (D: fan bearing, approach 6 → 15 K) [E].
    approach = unit.evap_approach_k * (0.35 + 0.65 * load) * airflow**-1.2 + frost_k + fouling + fx.approach_k
    approach = np.where(fx.flooded > 0, approach - 2.0, approach)
    t_evap = t_air - approach
    healthy_evap = t_air - unit.evap_approach_k * (0.35 + 0.65 * load)
    density = saturation_pressure_bar(t_evap) / saturation_pressure_bar(healthy_evap)
    dhw_max = np.minimum(limit, DHW_MAX_FLOW_C)
    t_water_out = np.where(dhw, np.minimum(trace.tank_c + 2.0 + dt_water, dhw_max), mean_loop + dt_water / 2.0)
    # Less water through the plate exchanger transfers worse (h ~ velocity^0.8): the condensing approach
    # grows as flow falls (A2: low flow raises condensing pressure and discharge temperature) [E].
    water_side = (unit.flow_lpm / np.maximum(flow_lpm, 0.2 * unit.flow_lpm)) ** 0.8
    t_cond = (t_water_out + unit.cond_approach_k * (0.5 + 0.5 * load) * water_side + unit.scaling_k_per_day * days
              + fx.cond_k - np.where(fx.flooded > 0, 1.0, 0.0))
    p_suc = saturation_pressure_bar(t_evap) + fx.suction_bar
    p_dis = np.maximum(saturation_pressure_bar(t_cond) - fx.head_bar, p_suc + 1.0)
    # Bypass raises suction and lowers head pressure a little more (A2: "high suction P, low head P") [S~].
    p_suc = p_suc + 0.15 * fx.bypass * (p_dis - p_suc)
    hz_needed = F_MAX_HZ * q_hp / np.maximum(q100 * net * np.maximum(density, 0.2), 0.1)
    hz = np.clip(hz_needed, F_MIN_HZ, hz_cap)
    delivered = np.where(running, q_hp * np.minimum(1.0, hz_cap / np.maximum(hz_needed, 1e-6)), 0.0)

    lift = np.maximum(t_cond - t_evap, 10.0)
    part_load = 1.0 - 0.12 * ((hz - 55.0) / 55.0) ** 2
    cop = unit.carnot_eff * (t_cond + 273.15) / lift * part_load * fx.comp_eff * (1.0 - 0.15 * fx.flooded)
    # Recompressing bypassed gas is wasted work; a starved evaporator needs more revolutions per kWh of
    # heat (D: a leak costs 20-40 % of COP) [E].
    cop = cop * (1.0 - fx.bypass) * np.sqrt(fx.fill)
    p_el = delivered / np.maximum(cop, 0.5)
    i_limit = unit.p_el_max_kw * 1000.0 / (MAINS_V * POWER_FACTOR)
    i_thermo = p_el * 1000.0 / (MAINS_V * POWER_FACTOR)
    i_min = i_thermo * F_MIN_HZ / np.maximum(hz, F_MIN_HZ)
    # The inverter throttles speed to stay under its current limit; bearing drag it cannot throttle.
    throttle = np.clip((i_limit - fx.drag_a) / np.maximum(i_thermo, 1e-6), np.minimum(i_min / np.maximum(
        i_thermo, 1e-6), 1.0), 1.0)
    hz = np.maximum(hz * throttle, F_MIN_HZ)
    delivered = delivered * throttle
    p_el = p_el * throttle
    current = AUX_A + i_thermo * throttle + fx.drag_a + fx.ripple_a * ripple_noise

    ratio = (p_dis / p_suc) ** (unit.compression_exp / fx.comp_eff)
    motor = unit.motor_heat_k * (hz / F_MAX_HZ) / np.maximum(net, 0.08)
    b = fx.bypass
    denom = np.maximum(1.0 - b * ratio, 0.05)

    def discharge(superheat: FloatArray) -> FloatArray:
        # Discharge gas bleeding into suction mixes with it: solve T_dis = ((1−b)·T_suc + b·T_dis + ΔT_m)·r.
        return np.asarray((((1.0 - b) * (t_evap + superheat + 273.15) + motor) * ratio / denom) - 273.15)

    # Superheat: EEV target with hunting, pushed up by a starved evaporator, never above the air's warmth;
    # the EEV gives up its own target (down to 0.5 K) to hold the discharge under its control point.
    ceiling = np.maximum(approach - 0.5, 0.5)
    target_sh = np.clip(unit.superheat_k + hunt, 0.5, None)
    uncontrolled = np.clip(target_sh + fx.superheat_k, 0.5, ceiling)
    relief = np.clip((discharge(uncontrolled) - DISCHARGE_CONTROL_C) / np.maximum(ratio, 1.0), 0.0, target_sh - 0.5)
    superheat = np.clip(target_sh - relief + fx.superheat_k, 0.5, ceiling)
    superheat = np.where(fx.flooded > 0, 0.3 + 0.2 * np.abs(hunt), superheat)
    t_suc_evap = t_evap + superheat
    t_dis = discharge(superheat)
    # Wet compression (flood-back): liquid evaporating in the compressor keeps the discharge cool [S~].
    t_dis = np.where(fx.flooded > 0, (t_evap + 273.15 + 0.5 * motor) * ratio * 0.93 - 273.15, t_dis)
    t_suc = (1.0 - b) * t_suc_evap + b * t_dis
    fan_cmd = (unit.fan_min_rpm + unit.fan_rpm_per_hz * (hz - F_MIN_HZ)) * (
        1.0 + unit.fan_cold_boost * np.maximum(-t_air, 0.0))
    fan_cmd = np.clip(fan_cmd, unit.fan_min_rpm, np.where(silent, SILENT_FAN_SHARE, 1.0) * FAN_MAX_RPM)

    # --- what the sensors see -------------------------------------------------------------------------
    heat_total = np.where(running, delivered, np.where(defrost, q_hp, 0.0)) + trace.q_backup_kw
    dt_total = heat_total * 60.0 / (WATER_CP_KJ_KG_K * flow_w)
    return_target = np.where(dhw, np.minimum(trace.tank_c + 2.0, dhw_max - dt_total), mean_loop - dt_total / 2.0)
    flow_target = np.where(dhw, return_target + dt_total, mean_loop + dt_total / 2.0)
    t_flow = first_order_lag(flow_target, dt, WATER_TAU_MIN * 60.0)
    t_ret = first_order_lag(return_target, dt, WATER_TAU_MIN * 60.0)

    # Off: pressures equalise toward the casing's temperature (A1: both 7-20 bar when off) [S].
    equalised = saturation_pressure_bar(np.maximum(t_air, -10.0) + 8.0)
    # In defrost the cycle runs reversed: the water HX evaporates, the outdoor coil condenses (A1) [S].
    defrost_suc = saturation_pressure_bar(np.minimum(t_ret - 15.0, 10.0))
    defrost_dis = saturation_pressure_bar(np.maximum(t_air, 0.0) + 18.0)
    suction = first_order_lag(np.where(running, p_suc, np.where(defrost, defrost_suc, equalised)), dt, PRESSURE_TAU_S)
    discharge_p = first_order_lag(np.where(running, p_dis, np.where(defrost, defrost_dis, equalised)), dt,
                                  PRESSURE_TAU_S)
    # The discharge line heats within minutes of a start and cools slowly in the casing after a stop.
    discharge_t = first_order_lag(np.where(running, t_dis, np.where(defrost, 55.0, t_air + 25.0)), dt,
                                  DISCHARGE_TAU_S)
    suction_t = first_order_lag(np.where(running, t_suc, np.where(defrost, t_ret - 20.0, t_air + 3.0)), dt,
                                SUCTION_TAU_S)
    fan = np.where(running, fan_cmd * fan_health, 0.0)
    outdoor_reading = t_air + sensor_sun - unit.recirculation_k * fan / 900.0

    values = {
        "outdoor_temp_c": np.asarray(outdoor_reading, dtype=np.float64),
        "flow_temp_c": t_flow,
        "return_temp_c": t_ret,
        "discharge_temp_c": discharge_t,
        "suction_pressure_bar": suction,
        "discharge_pressure_bar": discharge_p,
        "compressor_current_a": np.where(running, current, np.where(defrost, 6.0, STANDBY_A)),
        "compressor_hz": np.where(running, np.round(hz), np.where(defrost, 70.0, 0.0)),
        "fan_rpm": fan,
        "flow_lpm": flow_lpm,
        "suction_temp_c": suction_t,
    }
    flags = {"defrost": defrost, "dhw": dhw, "tripped": trace.mode == LOCKOUT}
    return MachineSignals(values=values, flags=flags, operating=running, state={"mode": trace.mode})

