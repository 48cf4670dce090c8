"""Outdoor weather of a site: season, day and night, passing weather systems, cold spells, sun, wind, humidity.

Pure: the sample times and a seeded generator go in, arrays come out. Slow processes are drawn on an hourly
grid and interpolated, so a year of weather costs milliseconds.

Cold spells do not *add* to whatever the weather was doing: a spell pulls the synoptic anomaly toward
``depth`` below the seasonal normal, and daily means flatten out near the climate's coldest normal day (a
soft floor). That keeps a deep spell on top of a cold anomaly at realistic values; the old additive model
gave an Oslo site daily means of -32 to -38 °C, below the heat pumps' operating limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.fleet.clock import day_of_year, local_hour
from simulators.fleet.dynamics import hourly_ar1
from simulators.fleet.scenario import ClimateSpec

__all__ = ["ColdSpell", "Weather", "clear_sky_irradiance", "cold_spell_profile", "coldness", "simulate_weather"]

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
FLOOR_SOFTNESS_K = 2.5
"""Width of the soft floor on daily means [E]."""
CLOUD_SIGMA = 1.6
CLOUD_TAU_H = 10.0
"""Cloud cover: a logistic transform of an AR(1) with a half-day memory (fronts, clearing nights) [E]."""
WIND_SIGMA = 0.45
WIND_TAU_H = 8.0
"""Wind: log-normal AR(1) [E]."""


@dataclass(frozen=True, slots=True)
class ColdSpell:
    """A cold air mass over a site: ``depth_k`` below normal between ``start_s`` and ``end_s`` (epoch seconds)."""

    start_s: float
    end_s: float
    depth_k: float


@dataclass(frozen=True, slots=True)
class Weather:
    """Outdoor conditions at the sample times.

    Attributes:
        temp_c: air temperature (what the coil sees; the unit's own sensor adds sunshine, see heat_pump).
        rh_pct: relative humidity.
        solar_w_m2: global horizontal irradiance.
        cloud: cloud cover 0..1.
        wind_m_s: wind speed.
    """

    temp_c: FloatArray
    rh_pct: FloatArray
    solar_w_m2: FloatArray
    cloud: FloatArray
    wind_m_s: FloatArray


def cold_spell_profile(epoch_s: FloatArray, spell: ColdSpell) -> FloatArray:
    """0…1 profile of a cold spell: raised-cosine ramps of ``COLD_SPELL_RAMP_H`` at both ends."""
    ramp = COLD_SPELL_RAMP_H * 3600.0
    up = np.clip((epoch_s - spell.start_s) / ramp, 0.0, 1.0)
    down = np.clip((spell.end_s - epoch_s) / ramp, 0.0, 1.0)
    shape = np.minimum(up, down)
    return np.asarray(0.5 - 0.5 * np.cos(np.pi * shape), dtype=np.float64)


def coldness(epoch_s: FloatArray | float) -> FloatArray:
    """1 in the coldest week of the year, 0 in the warmest: where cold spells can happen."""
    doy = day_of_year(np.asarray(epoch_s, dtype=np.float64))
    return np.asarray(0.5 + 0.5 * np.cos(2.0 * np.pi * (doy - COLDEST_DAY_OF_YEAR) / 365.25), dtype=np.float64)


def clear_sky_irradiance(epoch_s: FloatArray, latitude_deg: float, utc_offset_h: float) -> FloatArray:
    """Clear-sky global horizontal irradiance (W/m²): Haurwitz (1945) on the sun's height [S~].

    Solar time is taken as local clock time (the site's UTC offset stands in for its longitude) [E].

    >>> noon = np.array([1750507200.0])  # 21 June 2025, 12:00 UTC
    >>> 700 < float(clear_sky_irradiance(noon, 52.0, 0.0)[0]) < 1000
    True
    """
    doy = day_of_year(epoch_s)
    decl = np.radians(23.44) * np.sin(2.0 * np.pi * (284.0 + doy) / 365.0)
    hour_angle = np.radians(15.0 * (local_hour(epoch_s, utc_offset_h) - 12.0))
    lat = np.radians(latitude_deg)
    sin_elev = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    s = np.maximum(sin_elev, 0.0)
    ghi = 1098.0 * s * np.exp(-0.057 / np.maximum(s, 1e-3))
    return np.asarray(np.where(sin_elev > 0.0, ghi, 0.0), dtype=np.float64)


def _soft_floor(x: FloatArray, floor: float) -> FloatArray:
    z = (x - floor) / FLOOR_SOFTNESS_K
    return np.asarray(floor + FLOOR_SOFTNESS_K * np.logaddexp(0.0, z), dtype=np.float64)


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
        utc_offset_h: local time offset, for the daily cycle and the sun.
        rng: the site's generator; the same generator state gives the same weather.
    """
    synoptic = hourly_ar1(epoch_s, rng, climate.synoptic_sigma_k, climate.synoptic_tau_h)
    rh_noise = hourly_ar1(epoch_s, rng, HUMIDITY_SIGMA_PCT, 18.0)
    cloud_z = hourly_ar1(epoch_s, rng, CLOUD_SIGMA, CLOUD_TAU_H)
    wind_z = hourly_ar1(epoch_s, rng, WIND_SIGMA, WIND_TAU_H)

    mean_cloud = min(max(climate.cloud_mean, 0.02), 0.98)
    cloud = 1.0 / (1.0 + np.exp(-(np.log(mean_cloud / (1.0 - mean_cloud)) + cloud_z)))
    clear = clear_sky_irradiance(epoch_s, climate.latitude_deg, utc_offset_h)
    # Kasten & Czeplak (1980): GHI = clear-sky · (1 − 0.75 · cloud^3.4) [S~].
    solar = clear * (1.0 - 0.75 * cloud**3.4)
    wind = climate.wind_mean_m_s * np.exp(wind_z - 0.5 * WIND_SIGMA**2)

    seasonal = climate.annual_mean_c - climate.seasonal_amplitude_k * np.cos(
        2.0 * np.pi * (day_of_year(epoch_s) - COLDEST_DAY_OF_YEAR) / 365.25
    )
    anomaly = synoptic
    dry = np.zeros_like(epoch_s)
    for s in cold_spells:
        w = cold_spell_profile(epoch_s, s)
        # The spell replaces the anomaly (a blocking high), keeping a little of its day-to-day wobble.
        anomaly = (1.0 - w) * anomaly + w * (-s.depth_k + 0.3 * synoptic)
        dry = np.maximum(dry, w)
    daily_mean = _soft_floor(seasonal + anomaly, climate.coldest_daily_mean_c)
    hour = local_hour(epoch_s, utc_offset_h)
    # Clear skies swing more (sunny afternoons, radiative nights); so does summer, with a higher sun [E].
    noon_sun = clear_sky_irradiance(np.floor(epoch_s / 86400.0) * 86400.0 + (12.0 - utc_offset_h) * 3600.0,
                                    climate.latitude_deg, utc_offset_h) / 1000.0
    swing = climate.daily_amplitude_k * (0.6 + 0.8 * (1.0 - cloud)) * (0.6 + 0.8 * noon_sun)
    temp = daily_mean + swing * np.cos(2.0 * np.pi * (hour - WARMEST_HOUR) / 24.0)

    rh = climate.humidity_mean_pct - HUMIDITY_DAILY_PCT * np.cos(2.0 * np.pi * (hour - WARMEST_HOUR) / 24.0)
    rh = rh + rh_noise + 12.0 * (cloud - mean_cloud) - COLD_SPELL_DRYING_PCT * dry
    return Weather(
        temp_c=np.asarray(temp, dtype=np.float64),
        rh_pct=np.clip(rh, 30.0, 100.0),
        solar_w_m2=np.asarray(solar, dtype=np.float64),
        cloud=np.asarray(cloud, dtype=np.float64),
        wind_m_s=np.asarray(wind, dtype=np.float64),
    )
