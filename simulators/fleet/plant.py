"""The production process around an industrial pump: shifts, orders, flow demand, fluid and hall temperature.

A pump does not choose its duty: the plant runs shifts and stops at night, at weekends and on holidays;
production orders change the flow demand and the drive's set-point every few hours; the pumped fluid's
temperature follows season and batch; the suction tank's level wanders with draw and refill; the machine
hall warms in summer. None of it is measured as such; the pump's channels carry it. Numbers are [E].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.fleet.clock import day_of_year, local_hour, local_weekday
from simulators.fleet.dynamics import first_order_lag, hourly_ar1
from simulators.fleet.plan import EventPlan
from simulators.fleet.scenario import OperatingEventType, SiteSpec

__all__ = ["UNPLANNED_STOPS_PER_WEEK", "Process", "process_conditions", "running_schedule"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

UNPLANNED_STOPS_PER_WEEK = 1.5
"""Short process interruptions (upstream starved, operator) [E]."""
ORDER_HOURS = (2.0, 8.0)
"""A production order runs for a few hours [E]."""


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
        lo, hi = np.searchsorted(t_rel_s, [start, start + rng.uniform(20.0, 90.0) * 60.0])
        stopped[lo:hi] = True
    return stopped


def _orders(t_rel_s: FloatArray, rng: np.random.Generator, levels: tuple[float, float]) -> FloatArray:
    """A step series: a new level drawn from ``levels`` at every order change."""
    out = np.empty_like(t_rel_s)
    t, i = float(t_rel_s[0]) if t_rel_s.size else 0.0, 0
    while i < t_rel_s.size:
        j = int(np.searchsorted(t_rel_s, t + rng.uniform(*ORDER_HOURS) * 3600.0))
        out[i:j] = rng.uniform(*levels)
        t, i = float(t_rel_s[j]) if j < t_rel_s.size else np.inf, max(j, i + 1)
    return out


@dataclass(frozen=True, slots=True)
class Process:
    """The plant's conditions for one pump at each sample.

    Attributes:
        running: the plant wants the pump running (shifts, holidays, unplanned stops).
        demand: flow demand as a share of the pump's design flow.
        speed_order: the drive's set-point for the order (fixed-speed control mode).
        fluid_c: pumped-fluid temperature.
        suction_bar: suction pressure before the pump's own strainer losses (tank level).
        hall_c: machine-hall air temperature.
    """

    running: BoolArray
    demand: FloatArray
    speed_order: FloatArray
    fluid_c: FloatArray
    suction_bar: FloatArray
    hall_c: FloatArray


def process_conditions(
    epoch_s: FloatArray,
    t_rel_s: FloatArray,
    site: SiteSpec,
    events: tuple[EventPlan, ...],
    rng: np.random.Generator,
) -> Process:
    """Draw the plant's process for one pump over the run."""
    dt = float(t_rel_s[1] - t_rel_s[0]) if t_rel_s.size > 1 else 60.0
    running = running_schedule(epoch_s, site) & ~_unplanned_stops(t_rel_s, rng)
    base = rng.uniform(0.7, 0.9)
    demand = _orders(t_rel_s, rng, (base - 0.15, base + 0.1)) + hourly_ar1(t_rel_s, rng, 0.03, 1.0, step_s=600.0)
    speed = _orders(t_rel_s, rng, (0.93, 1.0))
    for e in events:
        active = (t_rel_s >= e.start_s) & (t_rel_s < e.end_s)
        if e.type is OperatingEventType.HOLIDAY:
            running &= ~active
        elif e.type is OperatingEventType.PRODUCTION_CHANGE:
            demand = np.where(active, e.load + (demand - base), demand)
    season = -np.cos(2.0 * np.pi * (day_of_year(epoch_s) - 20.0) / 365.25)
    batch = first_order_lag(_orders(t_rel_s, rng, (-3.0, 3.0)), dt, 1800.0)
    fluid = site.process_fluid_c + 4.0 * season + batch + hourly_ar1(t_rel_s, rng, 1.0, 6.0)
    suction = rng.uniform(1.05, 1.3) + hourly_ar1(t_rel_s, rng, 0.05, 4.0, step_s=600.0)
    hour = local_hour(epoch_s, site.utc_offset_h)
    hall = (rng.uniform(17.0, 23.0) + 3.0 * season + 1.5 * np.sin(2.0 * np.pi * (hour - 9.0) / 24.0)
            + hourly_ar1(t_rel_s, rng, 0.8, 12.0))
    return Process(
        running=np.asarray(running, dtype=bool),
        demand=np.clip(demand, 0.45, 1.0),
        speed_order=speed,
        fluid_c=np.asarray(fluid, dtype=np.float64),
        suction_bar=np.asarray(suction, dtype=np.float64),
        hall_c=np.asarray(hall, dtype=np.float64),
    )
