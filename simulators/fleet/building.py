"""The house behind a heat pump: heat loss, thermal mass, sun, wind, occupants and hot-water draws.

None of this is measured by the heat pump, which is the point: the unit sees its own channels, while the
load it serves moves with sunshine through the windows, wind, people coming and going, windows opened for
airing and showers. Pure: arrays and a seeded generator in, arrays out. Numbers are [E] unless tagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.fleet.clock import SECONDS_PER_DAY, day_of_year, local_hour, local_weekday
from simulators.fleet.dynamics import first_order_lag, hourly_ar1
from simulators.fleet.plan import EventPlan
from simulators.fleet.scenario import ClimateSpec, OperatingEventType
from simulators.fleet.weather import Weather

__all__ = ["AWAY_SETPOINT_C", "House", "HouseLoad", "draw_house", "house_load"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

AWAY_SETPOINT_C = 16.0
"""Away/holiday mode room set-point [E]."""
WATER_KWH_PER_L_K = 4.186 / 3600.0
DHW_DRAW_TEMP_C = 40.0
"""Showers and taps mix to about 40 °C (EN 16147 tapping cycles use 40 °C useful water) [S~]."""
HEATING_LIMIT_LAG_H = 24.0
"""Summer mode: heating stops when the day-mean outdoor temperature is above the limit [E]."""


@dataclass(frozen=True, slots=True)
class House:
    """One installation's building and household (drawn once per asset)."""

    design_load_kw: float
    tau_h: float
    solar_aperture_m2: float
    wind_coef: float
    room_setpoint_c: float
    night_setback_k: float
    works_away: bool
    gains_kw: float
    airing_per_day: float
    dhw_litres_per_day: float
    heating_limit_c: float
    underfloor: bool
    curve_slope: float
    curve_offset_k: float
    max_flow_c: float


def draw_house(rng: np.random.Generator) -> House:
    """Draw a house and its occupants."""
    underfloor = bool(rng.random() < 0.45)
    return House(
        # 120-200 m² Nordic house, 4-7 kW heat loss at the design temperature [E].
        design_load_kw=rng.uniform(4.0, 7.0),
        # Building thermal time constant: light timber frame to heavy slab with underfloor heating [E].
        tau_h=rng.uniform(14.0, 30.0) if underfloor else rng.uniform(6.0, 16.0),
        # Effective south-facing glazing × g-value [E].
        solar_aperture_m2=rng.uniform(1.5, 6.0),
        wind_coef=rng.uniform(0.01, 0.04),
        room_setpoint_c=rng.uniform(20.0, 22.5),
        night_setback_k=float(rng.choice([0.0, 0.0, 0.0, 1.0, 2.0])),
        works_away=bool(rng.random() < 0.6),
        gains_kw=rng.uniform(0.25, 0.6),
        airing_per_day=rng.uniform(0.2, 1.5),
        # 2-4 person household: 80-220 l of 40 °C water a day (EN 16147 profile M ≈ 5.8 kWh/day) [S~].
        dhw_litres_per_day=rng.uniform(80.0, 220.0),
        heating_limit_c=rng.uniform(14.0, 17.0),
        underfloor=underfloor,
        # Installer-set heating curve: flatter for underfloor heating, steeper for radiators [S~] (A1:
        # underfloor 35-45 °C, radiators 45-55 °C on a design day).
        curve_slope=rng.uniform(0.35, 0.55) if underfloor else rng.uniform(0.6, 0.9),
        curve_offset_k=rng.uniform(4.0, 8.0),
        max_flow_c=rng.uniform(42.0, 46.0) if underfloor else rng.uniform(52.0, 56.0),
    )


@dataclass(frozen=True, slots=True)
class HouseLoad:
    """What the house asks of the heat pump at each sample."""

    room_setpoint_c: FloatArray
    demand_kw: FloatArray
    heating_on: BoolArray
    dhw_draw_kwh: FloatArray
    cold_water_c: FloatArray
    trv_closing: FloatArray


def _room_setpoint(epoch_s: FloatArray, t_rel_s: FloatArray, h: House, events: tuple[EventPlan, ...],
                   utc_offset_h: float) -> FloatArray:
    hour = local_hour(epoch_s, utc_offset_h)
    night = (hour >= 22.0) | (hour < 6.0)
    sp = h.room_setpoint_c - np.where(night, h.night_setback_k, 0.0)
    for e in events:
        active = (t_rel_s >= e.start_s) & (t_rel_s < e.end_s)
        if e.type is OperatingEventType.SETPOINT_CHANGE:
            sp = sp + np.where(active, e.setpoint_delta_k, 0.0)
        elif e.type is OperatingEventType.HOLIDAY:
            sp = np.where(active, AWAY_SETPOINT_C, sp)
    return np.asarray(sp, dtype=np.float64)


def _away(epoch_s: FloatArray, h: House, utc_offset_h: float, rng: np.random.Generator) -> BoolArray:
    """Occupants out: working days 08-16 h for working households, plus random days out [E]."""
    hour = local_hour(epoch_s, utc_offset_h)
    weekday = local_weekday(epoch_s, utc_offset_h)
    day = np.floor((epoch_s + utc_offset_h * 3600.0) / SECONDS_PER_DAY).astype(np.int64)
    first = int(day[0]) if day.size else 0
    day_out = (rng.random(int(day[-1]) - first + 1 if day.size else 0) < 0.08)[day - first]
    at_work = h.works_away & (weekday < 5) & (hour >= 8.0) & (hour < 16.0)
    return np.asarray(at_work | (day_out & (hour >= 9.0) & (hour < 20.0)), dtype=bool)


def _pulses(epoch_s: FloatArray, rate_per_day: float, length_s: tuple[float, float], *, rng: np.random.Generator,
            weight: FloatArray) -> FloatArray:
    """0/1 series of random pulses (Poisson starts thinned by ``weight`` 0..1, uniform lengths)."""
    out = np.zeros_like(epoch_s)
    if epoch_s.size < 2:
        return out
    span = float(epoch_s[-1] - epoch_s[0])
    count = rng.poisson(rate_per_day * span / SECONDS_PER_DAY / max(float(weight.mean()), 1e-3))
    for start in np.sort(rng.uniform(float(epoch_s[0]), float(epoch_s[-1]), count)).tolist():
        i = int(np.searchsorted(epoch_s, start))
        if i >= epoch_s.size or rng.random() > weight[i]:
            continue
        j = int(np.searchsorted(epoch_s, start + rng.uniform(*length_s)))
        out[i:j] = 1.0
    return out


def _dhw_draws(epoch_s: FloatArray, h: House, away: BoolArray, *, utc_offset_h: float,
               cold_water_c: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Hot-water energy drawn per sample (kWh): showers morning and evening, small draws in between."""
    out = np.zeros_like(epoch_s)
    if epoch_s.size < 2:
        return out
    hour = local_hour(epoch_s, utc_offset_h)
    # Morning and evening peaks, some use through the day, nothing at night [E].
    profile = (
        np.exp(-0.5 * ((hour - 7.0) / 0.8) ** 2)
        + 0.8 * np.exp(-0.5 * ((hour - 20.0) / 1.5) ** 2)
        + 0.15 * ((hour > 8.0) & (hour < 22.0))
    ) * np.where(away, 0.1, 1.0)
    cdf = np.cumsum(profile)
    days = float(epoch_s[-1] - epoch_s[0]) / SECONDS_PER_DAY
    n_draws = rng.poisson(6.0 * days)
    if n_draws == 0 or cdf[-1] <= 0:
        return out
    at = np.searchsorted(cdf, rng.uniform(0.0, float(cdf[-1]), n_draws))
    at = np.minimum(at, epoch_s.size - 1)
    # A draw: a short tap (a few litres) to a long shower (60 l), spread over the minutes it lasts [E].
    litres = np.minimum(rng.gamma(2.0, h.dhw_litres_per_day / 12.0, n_draws), 60.0)
    dt = float(epoch_s[1] - epoch_s[0])
    minutes = np.maximum(np.round(litres / 8.0 * 60.0 / dt), 1).astype(np.int64)
    kwh = litres * WATER_KWH_PER_L_K * (DHW_DRAW_TEMP_C - cold_water_c[at])
    for start, steps, energy in zip(at.tolist(), minutes.tolist(), kwh.tolist(), strict=True):
        out[start : start + steps] += energy / steps
    return out


def house_load(
    epoch_s: FloatArray,
    t_rel_s: FloatArray,
    weather: Weather,
    h: House,
    *,
    climate: ClimateSpec,
    events: tuple[EventPlan, ...],
    utc_offset_h: float,
    rng: np.random.Generator,
) -> HouseLoad:
    """The heat the house needs and the hot water it draws, at each sample.

    Heat loss ``UA·(1 + c·wind)·(T_room − T_out)`` through the building's thermal mass (a first-order lag
    of ``tau_h``), less occupants' and appliances' gains and sunshine through the windows.
    """
    dt = float(t_rel_s[1] - t_rel_s[0]) if t_rel_s.size > 1 else 60.0
    setpoint = _room_setpoint(epoch_s, t_rel_s, h, events, utc_offset_h)
    away = _away(epoch_s, h, utc_offset_h, rng)
    ua = h.design_load_kw / (21.0 - climate.design_temp_c)
    loss = ua * (1.0 + h.wind_coef * (weather.wind_m_s - climate.wind_mean_m_s)) * (setpoint - weather.temp_c)
    hour = local_hour(epoch_s, utc_offset_h)
    evening = np.exp(-0.5 * ((hour - 19.0) / 2.5) ** 2)
    morning = 0.5 * np.exp(-0.5 * ((hour - 7.0) / 1.0) ** 2)
    activity = np.where(away, 0.35, 0.6 + 0.9 * evening + morning)
    appliances = np.maximum(1.0 + hourly_ar1(epoch_s, rng, 0.35, 2.0, step_s=900.0), 0.2)
    gains = h.gains_kw * activity * appliances + h.solar_aperture_m2 * weather.solar_w_m2 / 1000.0
    home = (~away).astype(np.float64)
    airing = _pulses(epoch_s, h.airing_per_day, (600.0, 1500.0), rng=rng, weight=0.2 + 0.8 * home)
    # An open window loses 1-3 kW while it is open [E].
    airing_kw = airing * rng.uniform(1.0, 3.0)
    demand = first_order_lag(loss - gains, dt, h.tau_h * 3600.0) + airing_kw
    day_mean = first_order_lag(weather.temp_c, dt, HEATING_LIMIT_LAG_H * 3600.0)
    heating_on = day_mean < h.heating_limit_c
    # Radiator thermostats close as sun and gains warm the rooms: less water flow on sunny afternoons [E].
    trv = np.clip(first_order_lag(gains, dt, 3600.0) / max(h.design_load_kw, 1.0), 0.0, 1.0)
    # Mains water: 4-6 °C in late winter, 12-15 °C in late summer (lags the air by ~2 months) [S~].
    cold_water = 9.5 - 5.0 * np.cos(2.0 * np.pi * (day_of_year(epoch_s) - 60.0) / 365.25)
    return HouseLoad(
        room_setpoint_c=setpoint,
        demand_kw=np.maximum(demand, 0.0),
        heating_on=np.asarray(heating_on, dtype=bool),
        dhw_draw_kwh=_dhw_draws(epoch_s, h, away, utc_offset_h=utc_offset_h, cold_water_c=cold_water, rng=rng),
        cold_water_c=np.asarray(cold_water, dtype=np.float64),
        trv_closing=np.asarray(trv, dtype=np.float64),
    )
