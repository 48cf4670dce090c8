"""The heat pump's controller: when the compressor runs, for what, and how hard.

A sample-by-sample state machine (the one sequential part of the heat-pump model; everything else is
vectorised around it):

* **space heating** with an inverter that modulates between its minimum and maximum capacity, and below
  minimum modulation **cycles** on a loop-temperature hysteresis with anti-short-cycle timers, so cycle
  lengths follow the load instead of a fixed period;
* **hot-water priority**: when the tank has cooled by its hysteresis the 3-way valve turns to the tank,
  the compressor charges it at high output and space heating waits;
* **defrost** when the coil's frost load reaches the trigger and the compressor has run at least the
  minimum interval; a defrost takes heat from the water loop and removes ``defrost_eff`` of the frost;
* **cut-off** below the compressor's operating limit and **lockout** after a protective trip: the
  compressor stays off and the backup heater carries the house.

Modes are small integers so the trace is a compact array. Steady stretches (modulating heat, idle,
cut-off, lockout) are filled in one vectorised step each, from cumulative sums of demand, draws and frost
(the next event is a ``searchsorted`` away); the loop steps sample by sample only through cycling, hot-water
charges and defrosts. A month of one unit takes a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "CUTOFF",
    "DEFROST",
    "DHW",
    "HEAT",
    "LOCKOUT",
    "MIN_DEFROST_INTERVAL_MIN",
    "OFF",
    "ControlParams",
    "ControlTrace",
    "draw_control",
    "run_controller",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ArrayOrFloat = npt.NDArray[np.floating[Any]] | float

OFF, HEAT, DHW, DEFROST, CUTOFF, LOCKOUT = 0, 1, 2, 3, 4, 5
MIN_DEFROST_INTERVAL_MIN = 35.0
"""Minimum compressor run between defrosts (failure-physics.md A1: typically 35 min) [S~]."""
TANK_MIN_C = 15.0
"""A tank drained of hot water holds mains water, warmed a little by the room [E]."""
SETTLE_STEPS = 240
"""The loop error has decayed to nothing within this many samples (a half-hour time constant) [E]."""
BUFFER_LIMITS_K = (-8.0, 6.0)
"""The loop never strays further from its curve temperature: the backup heater or the high limit acts [E]."""


@dataclass(frozen=True, slots=True)
class ControlParams:
    """Controller settings and the water-side capacities they act on (drawn per installation)."""

    min_on_min: float
    min_off_min: float
    hysteresis_k: float
    loop_kwh_per_k: float
    dhw_setpoint_c: float
    dhw_hysteresis_k: float
    tank_kwh_per_k: float
    tank_loss_kw: float
    dhw_share: float
    defrost_kw: float
    tank_start_c: float


def draw_control(rng: np.random.Generator) -> ControlParams:
    """Draw one installation's controller settings [E]."""
    tank_l = rng.uniform(150.0, 300.0)
    # Heat-pump hot water is usually kept at 45-50 °C (legionella cycles use the immersion heater) [E].
    setpoint = rng.uniform(45.0, 50.0)
    return ControlParams(
        # Anti-short-cycle timers: typically 5-10 min each [E].
        min_on_min=rng.uniform(6.0, 10.0),
        min_off_min=rng.uniform(5.0, 12.0),
        hysteresis_k=rng.uniform(1.5, 3.0),
        # Water in pipes and emitters plus the emitters' own mass (radiators, a screed floor), and a buffer
        # tank on some units: 0.25-0.8 kWh per kelvin of loop temperature [E].
        loop_kwh_per_k=rng.uniform(0.25, 0.8),
        dhw_setpoint_c=setpoint,
        dhw_hysteresis_k=rng.uniform(5.0, 8.0),
        tank_kwh_per_k=tank_l * 4.186 / 3600.0,
        # Standing losses 1.2-2 kWh/day for 150-300 l tanks (EN 12897-class) [S~].
        tank_loss_kw=rng.uniform(1.2, 2.0) / 24.0,
        dhw_share=rng.uniform(0.75, 0.95),
        defrost_kw=rng.uniform(2.0, 4.0),
        tank_start_c=setpoint - rng.uniform(0.0, 5.0),
    )


@dataclass(frozen=True, slots=True)
class ControlTrace:
    """What the controller did at each sample.

    Attributes:
        mode: OFF, HEAT, DHW, DEFROST, CUTOFF or LOCKOUT.
        q_hp_kw: heat the heat pump delivers to the water (negative in defrost).
        q_backup_kw: heat from the backup heater (cut-off, lockout, or beyond the unit's capacity).
        buffer_k: loop temperature above (+) or below (−) the curve's target.
        tank_c: hot-water tank temperature.
        frost: frost load of the outdoor coil, 1 = a defrost is due (more when defrosts fail).
        since_start_min: minutes since the compressor last started (0 when it is off).
    """

    mode: npt.NDArray[np.int8]
    q_hp_kw: FloatArray
    q_backup_kw: FloatArray
    buffer_k: FloatArray
    tank_c: FloatArray
    frost: FloatArray
    since_start_min: FloatArray


def _next_false(mask: BoolArray) -> npt.NDArray[np.int64]:
    """For every index, the first index at or after it where ``mask`` is False (``len(mask)`` if none)."""
    n = mask.size
    idx = np.where(mask, n, np.arange(n))
    return np.asarray(np.minimum.accumulate(idx[::-1])[::-1], dtype=np.int64)


def run_controller(
    *,
    demand_kw: FloatArray,
    q_min_kw: FloatArray,
    q_max_kw: FloatArray,
    allowed: BoolArray,
    dhw_draw_kwh: FloatArray,
    frost_rate_per_min: FloatArray,
    defrost_eff: FloatArray,
    defrost_min: FloatArray,
    params: ControlParams,
    dt_s: float,
    lockout_from: int,
) -> ControlTrace:
    """Step the controller through the run.

    Args:
        demand_kw: space-heating demand (0 when heating is off for the season).
        q_min_kw: heat output at minimum compressor speed (at current conditions and health).
        q_max_kw: heat output at maximum speed.
        allowed: the compressor may run (outdoor temperature above its operating limit).
        dhw_draw_kwh: hot water drawn from the tank in each sample.
        frost_rate_per_min: frost build-up per running minute (1 = a defrost is due).
        defrost_eff: share of the frost a defrost removes (1 healthy; less when defrosts fail).
        defrost_min: how long a defrost started at this sample lasts.
        params: the installation's controller settings.
        dt_s: sample period.
        lockout_from: index of a protective trip; from there the compressor stays off (``len`` = never).
    """
    n = demand_kw.size
    dt_min = dt_s / 60.0
    dt_h = dt_s / 3600.0
    p = params
    cap = p.loop_kwh_per_k
    gain = cap / 0.5  # close a loop error within about half an hour [E]
    decay = max(1.0 - gain * dt_h / cap, 0.0)
    lo_buf, hi_buf = BUFFER_LIMITS_K
    tank_low = p.dhw_setpoint_c - p.dhw_hysteresis_k
    lockout_from = min(max(lockout_from, 0), n)
    # Cumulative sums with a leading zero: the total over samples i..j is cum[j + 1] - cum[i].
    cum_demand = np.concatenate([[0.0], np.cumsum(demand_kw * dt_h)])
    cum_draw = np.concatenate([[0.0], np.cumsum(dhw_draw_kwh + p.tank_loss_kw * dt_h)])
    cum_frost = np.concatenate([[0.0], np.cumsum(frost_rate_per_min * dt_min)])
    steady_heat = (demand_kw >= q_min_kw) & (demand_kw <= q_max_kw)
    next_unsteady = _next_false(steady_heat & allowed)
    beyond = demand_kw > q_max_kw
    next_within = _next_false(beyond & allowed)
    next_forbidden = _next_false(allowed)
    next_allowed = _next_false(~allowed)
    dem, qmin, qmax = demand_kw.tolist().__getitem__, q_min_kw.tolist().__getitem__, q_max_kw.tolist().__getitem__
    ok, draw = allowed.tolist().__getitem__, dhw_draw_kwh.tolist().__getitem__
    frate, feff = frost_rate_per_min.tolist().__getitem__, defrost_eff.tolist().__getitem__
    fdur, over = defrost_min.tolist().__getitem__, beyond.tolist().__getitem__

    def over_target(i: int, buf: float) -> bool:
        return bool(dem(i) - gain * buf > qmax(i))
    mode_out = np.zeros(n, dtype=np.int8)
    qhp_out, qbk_out, buf_out = np.zeros(n), np.zeros(n), np.zeros(n)
    tank_out, frost_out, since_out = np.zeros(n), np.zeros(n), np.zeros(n)

    def tank_event(i: int, tank: float) -> int:
        """First sample from ``i`` at which the tank has cooled to its restart temperature."""
        return int(cum_draw.searchsorted(cum_draw[i] + (tank - tank_low) * p.tank_kwh_per_k)) - 1

    def drained(i: int, end: int, tank: float) -> FloatArray:
        """Tank temperatures over samples i..end-1 with draws and losses only."""
        return np.asarray(tank - (cum_draw[i + 1 : end + 1] - cum_draw[i]) / p.tank_kwh_per_k, dtype=np.float64)

    def frosting(i: int, w: int, frost: float, since_defrost: float) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """Frost load while running over samples i..w-1, and where a defrost would be due."""
        frosts = frost + cum_frost[i + 1 : w + 1] - cum_frost[i]
        k = np.arange(1, w - i + 1)
        return frosts, (frosts >= 1.0) & (since_defrost + k * dt_min >= MIN_DEFROST_INTERVAL_MIN)

    def frost_event(i: int, frost: float, since_defrost: float) -> int:
        """First sample from ``i`` at which a running compressor would start a defrost."""
        by_frost = int(cum_frost.searchsorted(cum_frost[i] + 1.0 - frost)) - 1
        return max(by_frost, i + int(np.ceil((MIN_DEFROST_INTERVAL_MIN - since_defrost) / dt_min)) - 1)

    def write(i: int, end: int, mode: int, *, q_hp: ArrayOrFloat, q_bk: ArrayOrFloat = 0.0, bufs: ArrayOrFloat,
              tanks: ArrayOrFloat, frosts: ArrayOrFloat, since: ArrayOrFloat = 0.0) -> None:
        """Record a fast-forwarded stretch i..end-1."""
        mode_out[i:end], qhp_out[i:end], qbk_out[i:end], buf_out[i:end] = mode, q_hp, q_bk, bufs
        tank_out[i:end], frost_out[i:end], since_out[i:end] = tanks, frosts, since

    mode = OFF
    buf = 0.0
    tank = p.tank_start_c
    frost = 0.0
    on_min = 0.0
    off_min = p.min_off_min
    since_defrost = 0.0
    defrost_left = 0.0
    resume = HEAT
    dhw_wanted = False
    i = 0
    while i < n:
        end = i
        if i >= lockout_from or not ok(i):
            # Backup heater holds the loop; the tank's immersion heater holds the tank.
            end = n if i >= lockout_from else min(int(next_allowed[i]), lockout_from)
            mode = LOCKOUT if i >= lockout_from else CUTOFF
            k = np.arange(1, end - i + 1)
            bufs = buf * decay**k
            tanks = np.maximum(drained(i, end, tank), tank_low)
            write(i, end, mode, q_hp=0.0, q_bk=np.maximum(demand_kw[i:end] - gain * bufs / decay, 0.0), bufs=bufs,
                  tanks=tanks, frosts=frost)
            buf, tank = float(bufs[-1]), float(tanks[-1])
            dhw_wanted, on_min = False, 0.0
            off_min += (end - i) * dt_min
            i = end
            continue
        if not dhw_wanted and mode == HEAT and qmin(i) <= dem(i) - gain * buf <= qmax(i):
            # Modulating: the inverter follows the demand plus the loop error's correction, and the error
            # decays geometrically, while the output stays between its limits; hot water or frost interrupt.
            caps = min(int(next_forbidden[i]), lockout_from, tank_event(i, tank),
                       frost_event(i, frost, since_defrost), n)
            settle = min(caps, i + SETTLE_STEPS)
            k = np.arange(1, settle - i + 1)
            targets = demand_kw[i:settle] - gain * buf * decay ** (k - 1)
            outside = (targets < q_min_kw[i:settle]) | (targets > q_max_kw[i:settle])
            if outside.any():
                end = i + int(np.argmax(outside))
            elif settle < caps:
                end = min(caps, int(next_unsteady[settle]))  # the error has decayed: the demand alone decides
            else:
                end = settle
            k = np.arange(1, end - i + 1)
            bufs = buf * decay**k
            if end - i >= 2:
                tanks, (frosts, _) = drained(i, end, tank), frosting(i, end, frost, since_defrost)
                write(i, end, HEAT, q_hp=demand_kw[i:end] - gain * bufs / decay, bufs=bufs, tanks=tanks, frosts=frosts,
                      since=on_min + k * dt_min)
                buf, tank, frost = float(bufs[-1]), float(tanks[-1]), float(frosts[-1])
                on_min += (end - i) * dt_min
                since_defrost += (end - i) * dt_min
                i = end
                continue
        if not dhw_wanted and mode == HEAT and over(i) and buf <= -p.hysteresis_k + 0.2:
            # Beyond the unit's capacity (bivalent): full output, the backup heater holds the loop at the
            # hysteresis point.
            end = min(int(next_within[i]), int(next_forbidden[i]), lockout_from, tank_event(i, tank),
                      frost_event(i, frost, since_defrost), n)
            if end - i >= 2:
                k = np.arange(1, end - i + 1)
                buf = -p.hysteresis_k
                tanks, (frosts, _) = drained(i, end, tank), frosting(i, end, frost, since_defrost)
                write(i, end, HEAT, q_hp=q_max_kw[i:end], q_bk=demand_kw[i:end] - q_max_kw[i:end], bufs=buf,
                      tanks=tanks, frosts=frosts, since=on_min + k * dt_min)
                tank, frost = float(tanks[-1]), float(frosts[-1])
                on_min += (end - i) * dt_min
                since_defrost += (end - i) * dt_min
                i = end
                continue
        below = dem(i) - gain * buf < qmin(i)
        if not dhw_wanted and mode == HEAT and not over(i) and over_target(i, buf) and buf <= -p.hysteresis_k:
            # Recovering from a cold loop (after hot water or a defrost): flat out, the backup heater
            # closing the rest of the loop error, which decays geometrically.
            w = min(n, i + SETTLE_STEPS, int(next_forbidden[i]), lockout_from, tank_event(i, tank) + 1)
            k = np.arange(1, w - i + 1)
            bufs = buf * decay**k
            before = np.concatenate([[buf], bufs[:-1]])
            frosts, due = frosting(i, w, frost, since_defrost)
            targets = demand_kw[i:w] - gain * before
            exits = (before > -p.hysteresis_k) | (targets <= q_max_kw[i:w]) | due | (demand_kw[i:w] <= 0.0)
            end = min(i + int(np.argmax(exits)) if exits.any() else w, tank_event(i, tank))
            if end - i >= 2:
                m = end - i
                tanks = drained(i, end, tank)
                write(i, end, HEAT, q_hp=q_max_kw[i:end], q_bk=targets[:m] - q_max_kw[i:end], bufs=bufs[:m],
                      tanks=tanks, frosts=frosts[:m], since=on_min + k[:m] * dt_min)
                buf, tank, frost = float(bufs[m - 1]), float(tanks[-1]), float(frosts[m - 1])
                on_min += m * dt_min
                since_defrost += m * dt_min
                i = end
                continue
        if not dhw_wanted and mode == HEAT and (below or (over_target(i, buf) and buf > -p.hysteresis_k)):
            # At a limit: below minimum modulation the compressor runs at its minimum and the loop warms
            # until the hysteresis stops it; beyond its capacity it runs flat out and the loop cools until
            # the backup heater steps in. Either way until the demand comes back into the modulation range.
            limit = q_min_kw if below else q_max_kw
            w = min(n, i + SETTLE_STEPS, int(next_forbidden[i]), lockout_from, tank_event(i, tank) + 1)
            k = np.arange(1, w - i + 1)
            bufs = np.clip(buf + np.cumsum((limit[i:w] - demand_kw[i:w]) * dt_h) / cap, lo_buf, hi_buf)
            before = np.concatenate([[buf], bufs[:-1]])
            frosts, due = frosting(i, w, frost, since_defrost)
            ons = on_min + k * dt_min
            targets = demand_kw[i:w] - gain * before
            if below:
                stop = (before >= p.hysteresis_k) & (ons - dt_min >= p.min_on_min)
                leave = stop | (targets >= q_min_kw[i:w])
            else:
                leave = (before <= -p.hysteresis_k) | (targets <= q_max_kw[i:w])
            exits = leave | due | (demand_kw[i:w] <= 0.0)
            end = i + int(np.argmax(exits)) if exits.any() else w
            end = min(end, tank_event(i, tank))
            if end - i >= 2:
                m = end - i
                tanks = drained(i, end, tank)
                write(i, end, HEAT, q_hp=limit[i:end], bufs=bufs[:m], tanks=tanks, frosts=frosts[:m], since=ons[:m])
                buf, tank, frost = float(bufs[m - 1]), float(tanks[-1]), float(frosts[m - 1])
                on_min += m * dt_min
                since_defrost += m * dt_min
                i = end
                continue
        if not dhw_wanted and mode == OFF and buf > -p.hysteresis_k:
            # Idle or cycling off: the loop cools with the demand until the restart point.
            k_start = int(cum_demand.searchsorted(cum_demand[i] + (buf + p.hysteresis_k) * cap)) - 1
            end = min(int(next_forbidden[i]), lockout_from, tank_event(i, tank), k_start, n)
            if end - i >= 2:
                bufs = buf - (cum_demand[i + 1 : end + 1] - cum_demand[i]) / cap
                tanks = drained(i, end, tank)
                write(i, end, OFF, q_hp=0.0, bufs=bufs, tanks=tanks, frosts=frost)
                buf, tank = float(bufs[-1]), float(tanks[-1])
                off_min += (end - i) * dt_min
                i = end
                continue
        if mode == DEFROST and defrost_left > dt_min:
            # A defrost runs its planned length, drawing heat from the loop.
            end = min(i + int(np.ceil(defrost_left / dt_min)) - 1, int(next_forbidden[i]), lockout_from)
            if end - i >= 1:
                k = np.arange(1, end - i + 1)
                tanks = np.maximum(drained(i, end, tank), TANK_MIN_C)
                bufs = np.maximum(buf - (p.defrost_kw * k * dt_h + cum_demand[i + 1 : end + 1] - cum_demand[i]) / cap,
                                  lo_buf)
                write(i, end, DEFROST, q_hp=-p.defrost_kw, bufs=bufs, tanks=tanks, frosts=frost,
                      since=on_min + k * dt_min)
                buf, tank = float(bufs[-1]), float(tanks[-1])
                dhw_wanted = dhw_wanted or tank <= tank_low
                on_min += (end - i) * dt_min
                defrost_left -= (end - i) * dt_min
                i = end
                continue
        if mode == DHW and dhw_wanted:
            # Charging the tank: until it is full or the coil needs a defrost; the loop waits.
            w = min(n, i + SETTLE_STEPS, int(next_forbidden[i]), lockout_from)
            k = np.arange(1, w - i + 1)
            charge = p.dhw_share * q_max_kw[i:w]
            tanks = tank + np.cumsum(charge * dt_h - dhw_draw_kwh[i:w] - p.tank_loss_kw * dt_h) / p.tank_kwh_per_k
            frosts, due = frosting(i, w, frost, since_defrost)
            full = tanks >= p.dhw_setpoint_c
            end = w
            if due.any():
                end = i + int(np.argmax(due))
            if full.any():
                end = min(end, i + int(np.argmax(full)) + 1)
            if end - i >= 2:
                m = end - i
                bufs = np.maximum(buf - (cum_demand[i + 1 : end + 1] - cum_demand[i]) / cap, lo_buf)
                write(i, end, DHW, q_hp=charge[:m], bufs=bufs, tanks=tanks[:m], frosts=frosts[:m],
                      since=on_min + k[:m] * dt_min)
                buf, tank, frost = float(bufs[-1]), float(tanks[m - 1]), float(frosts[m - 1])
                dhw_wanted = tank < p.dhw_setpoint_c
                on_min += m * dt_min
                off_min = 0.0
                since_defrost += m * dt_min
                i = end
                continue
        # --- one sample of the state machine ---------------------------------------------------------
        d = dem(i)
        tank = max(tank - (draw(i) + p.tank_loss_kw * dt_h) / p.tank_kwh_per_k, TANK_MIN_C)
        if tank <= tank_low:
            dhw_wanted = True
        q_loop = q_tank = q_bk = 0.0
        if mode == DEFROST:
            # Reversed cycle: heat is drawn from the water loop (A1) [S].
            q_loop = -p.defrost_kw
            on_min += dt_min
            defrost_left -= dt_min
            if defrost_left <= 0.0:
                frost *= 1.0 - feff(i)
                since_defrost = 0.0
                mode = resume
        else:
            can_start = mode in (HEAT, DHW) or off_min >= p.min_off_min
            if dhw_wanted and can_start:
                mode = DHW
            elif mode == DHW:
                mode = HEAT if d > 0.0 else OFF
            if mode == DHW:
                q_tank = p.dhw_share * qmax(i)
                tank += q_tank * dt_h / p.tank_kwh_per_k
                if tank >= p.dhw_setpoint_c:
                    dhw_wanted = False
            else:
                target: float = d - gain * buf
                if mode == HEAT:
                    if d <= 0.0 or (buf >= p.hysteresis_k and on_min >= p.min_on_min and target < qmin(i)):
                        mode = OFF
                elif d > 0.0 and buf <= -p.hysteresis_k and can_start:
                    mode = HEAT
                if mode == HEAT:
                    q_loop = min(max(target, qmin(i)), qmax(i))
                    if target > qmax(i) and buf <= -p.hysteresis_k:
                        q_bk = target - qmax(i)  # bivalent: the heater tops up beyond the unit's capacity
                else:
                    mode = OFF
                    if buf <= lo_buf:
                        q_bk = max(target, 0.0)  # held off by its timer: the heater steps in
            if mode in (HEAT, DHW):
                on_min += dt_min
                off_min = 0.0
                since_defrost += dt_min
                frost += frate(i) * dt_min
                if frost >= 1.0 and since_defrost >= MIN_DEFROST_INTERVAL_MIN:
                    resume = mode
                    mode = DEFROST
                    defrost_left = fdur(i)
            else:
                on_min = 0.0
                off_min += dt_min
        buf += (q_loop + q_bk - d) * dt_h / cap
        buf = lo_buf if buf < lo_buf else (hi_buf if buf > hi_buf else buf)
        mode_out[i] = mode
        qhp_out[i] = q_loop + q_tank
        qbk_out[i] = q_bk
        buf_out[i] = buf
        tank_out[i] = tank
        frost_out[i] = frost
        since_out[i] = on_min
        i += 1
    return ControlTrace(
        mode=mode_out, q_hp_kw=qhp_out, q_backup_kw=qbk_out, buffer_k=buf_out, tank_c=tank_out, frost=frost_out,
        since_start_min=since_out,
    )
