"""Outdoor weather of a site: seasonal and daily cycles, passing weather systems, cold spells, humidity.

Pure: the sample times and a seeded generator go in, arrays come out. Everything is computed on an hourly
grid and interpolated to the samples, so a year of weather costs microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.fleet.clock import day_of_year, local_hour
from simulators.fleet.scenario import ClimateSpec

__all__ = ["ColdSpell", "Weather", "cold_spell_profile", "simulate_weather"]

FloatArray = npt.NDArray[np.float64]

COLDEST_DAY_OF_YEAR = 20.0
"""Seasonal minimum lags the solstice by about a month at these latitudes (met.no normals: coldest in late Jan) [S~]."""
WARMEST_HOUR = 14.0
"""Daily maximum in early afternoon [E]."""
COLD_SPELL_RAMP_H = 12.0
"""A cold air mass arrives and leaves over about half a day [E]."""
HUMIDITY_SIGMA_PCT = 6.0
HUMIDITY_DAILY_PCT = 6.0
"""Relative humidity peaks before dawn when the air is coldest [E]."""
COLD_SPELL_DRYING_PCT = 12.0
"""Arctic air masses are dry; frosting (and defrost) is rare in deep cold (failure-physics.md A1) [S~]."""


@dataclass(frozen=True, slots=True)
class ColdSpell:
    """A cold air mass over a site: ``depth_k`` colder between ``start_s`` and ``end_s`` (epoch seconds)."""

    start_s: float
    end_s: float
    depth_k: float


@dataclass(frozen=True, slots=True)
class Weather:
    """Outdoor air temperature and relative humidity at the sample times."""

    temp_c: FloatArray
    rh_pct: FloatArray


def cold_spell_profile(epoch_s: FloatArray, spell: ColdSpell) -> FloatArray:
    """0…1 profile of a cold spell: raised-cosine ramps of ``COLD_SPELL_RAMP_H`` at both ends."""
    ramp = COLD_SPELL_RAMP_H * 3600.0
    up = np.clip((epoch_s - spell.start_s) / ramp, 0.0, 1.0)
    down = np.clip((spell.end_s - epoch_s) / ramp, 0.0, 1.0)
    shape = np.minimum(up, down)
    return np.asarray(0.5 - 0.5 * np.cos(np.pi * shape), dtype=np.float64)


def _ornstein_uhlenbeck(rng: np.random.Generator, n: int, tau_steps: float, sigma: float) -> FloatArray:
    """A stationary AR(1) series with correlation time ``tau_steps`` and standard deviation ``sigma``."""
    a = float(np.exp(-1.0 / tau_steps))
    shocks = rng.standard_normal(n) * sigma * np.sqrt(1.0 - a * a)
    out = np.empty(n)
    x = rng.standard_normal() * sigma
    for i in range(n):
        x = a * x + shocks[i]
        out[i] = x
    return out


def simulate_weather(
    epoch_s: FloatArray,
    climate: ClimateSpec,
    cold_spells: list[ColdSpell],
    utc_offset_h: float,
    rng: np.random.Generator,
) -> Weather:
    """Weather at the sample times ``epoch_s`` for one site.

    Args:
        epoch_s: sample times, seconds since the Unix epoch, ascending.
        climate: the site's climate statistics.
        cold_spells: cold spells to impose (random ones are drawn by the planner, so they are in the truth).
        utc_offset_h: local time offset, for the daily cycle.
        rng: the site's generator; the same generator state gives the same weather.

    Returns:
        Air temperature (°C) and relative humidity (%) per sample.
    """
    t0 = float(epoch_s[0])
    n_hours = int(np.ceil((float(epoch_s[-1]) - t0) / 3600.0)) + 2
    grid = t0 + 3600.0 * np.arange(n_hours)
    synoptic = _ornstein_uhlenbeck(rng, n_hours, climate.synoptic_tau_h, climate.synoptic_sigma_k)
    rh_anomaly = _ornstein_uhlenbeck(rng, n_hours, 18.0, HUMIDITY_SIGMA_PCT)
    temp_anomaly = np.interp(epoch_s, grid, synoptic)
    rh_noise = np.interp(epoch_s, grid, rh_anomaly)

    seasonal = climate.annual_mean_c - climate.seasonal_amplitude_k * np.cos(
        2.0 * np.pi * (day_of_year(epoch_s) - COLDEST_DAY_OF_YEAR) / 365.25
    )
    hour = local_hour(epoch_s, utc_offset_h)
    daily = climate.daily_amplitude_k * np.cos(2.0 * np.pi * (hour - WARMEST_HOUR) / 24.0)
    spell = np.zeros_like(epoch_s)
    dry = np.zeros_like(epoch_s)
    for s in cold_spells:
        profile = cold_spell_profile(epoch_s, s)
        spell -= s.depth_k * profile
        dry = np.maximum(dry, profile)
    temp = seasonal + daily + temp_anomaly + spell
    rh = climate.humidity_mean_pct - HUMIDITY_DAILY_PCT * np.cos(2.0 * np.pi * (hour - WARMEST_HOUR) / 24.0)
    rh = rh + rh_noise - COLD_SPELL_DRYING_PCT * dry
    return Weather(temp_c=np.asarray(temp, dtype=np.float64), rh_pct=np.clip(rh, 30.0, 100.0))
