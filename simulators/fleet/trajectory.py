"""Hidden damage of a machine fault over time: 0 before onset, 1 at its nominal time scale, growing after.

The damage is the fault's hidden variable in units of "typical damage at failure": the asset models map it
to physical changes (charge lost, bypass fraction, bearing defect size …) and the physics decides when the
failure criterion is crossed. It is **not** capped at 1: a unit that has an easy week keeps degrading until
it trips. Three shapes (failure-physics.md D):

* ``drift``: linear, e.g. a clogging strainer, impeller clearance, a leaking reversing valve;
* ``exponential``: flat, then exponential (the knee of refrigerant loss, a bearing's health index after
  its first-prediction time);
* ``intermittent``: episodes (a sticking valve, cavitation when the suction tank runs low) that grow more
  frequent and more severe until the fault is permanent.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from simulators.fleet.scenario import Trajectory

__all__ = ["EXPONENTIAL_RATE", "MAX_DAMAGE", "damage", "episodes"]

FloatArray = npt.NDArray[np.float64]

EXPONENTIAL_RATE = 5.0
"""exp(5u): damage reaches 10 % at u ≈ 0.57 and 50 % at u ≈ 0.87 of the span, like the first-prediction
times at 50-90 % of life in the XJTU-SY/FEMTO bearings (failure-physics.md B2) [E]."""
EPISODE_MEAN_H = 3.0
"""Mean length of an intermittent episode (hours-days sticking, failure-physics.md A2) [E]."""
PERMANENT_FROM = 0.9
"""Intermittent faults stay on from 90 % of the span: the part sticks for good [E]."""
MAX_DAMAGE = 4.0
"""Numerical guard: four times the typical damage at failure; every fault trips long before."""


def episodes(t_s: FloatArray, onset_s: float, span_s: float, rng: np.random.Generator) -> FloatArray:
    """0/1 mask of episodes whose duty cycle rises from 15 % at onset to 100 % at ``PERMANENT_FROM``."""
    mask = np.zeros_like(t_s)
    mean_s = EPISODE_MEAN_H * 3600.0
    permanent_s = onset_s + PERMANENT_FROM * span_s
    t = onset_s
    while t < permanent_s:
        u = (t - onset_s) / span_s
        duty = 0.15 + 0.85 * (u / PERMANENT_FROM) ** 2
        on_s = rng.exponential(mean_s)
        off_s = rng.exponential(mean_s * (1.0 - duty) / duty)
        lo, hi = np.searchsorted(t_s, [t, min(t + on_s, permanent_s)])
        mask[lo:hi] = 1.0
        t += on_s + off_s
    mask[np.searchsorted(t_s, permanent_s) :] = 1.0
    return mask


def damage(
    t_s: FloatArray,
    onset_s: float,
    span_s: float,
    trajectory: Trajectory,
    rng: np.random.Generator,
    *,
    first_prediction: float = 0.0,
) -> FloatArray:
    """Hidden damage at times ``t_s`` (any common time base with ``onset_s``), 1 at ``onset_s + span_s``.

    Args:
        t_s: sample times.
        onset_s: when the damage starts (may lie before ``t_s[0]``: the unit starts degraded).
        span_s: the fault's time scale.
        trajectory: shape.
        rng: the fault's own generator (episodes).
        first_prediction: for ``exponential``, the share of the span that stays flat before the rise
            (a bearing's first-prediction time, failure-physics.md B2).

    >>> t = np.array([0.0, 50.0, 100.0, 150.0])
    >>> damage(t, 0.0, 100.0, Trajectory.DRIFT, np.random.default_rng(0)).tolist()
    [0.0, 0.5, 1.0, 1.5]
    """
    u = np.maximum(t_s - onset_s, 0.0) / span_s
    if trajectory is Trajectory.DRIFT:
        d = u
    elif trajectory is Trajectory.EXPONENTIAL:
        v = np.maximum(u - first_prediction, 0.0) / (1.0 - first_prediction)
        d = np.expm1(EXPONENTIAL_RATE * np.minimum(v, 2.0)) / np.expm1(EXPONENTIAL_RATE)
    else:
        # Even the first sticking episodes are noticeable (a valve is stuck or it is not) [E].
        envelope = np.where(u > 0.0, 0.3 + 0.7 * u, 0.0)
        d = envelope * episodes(t_s, onset_s, span_s, rng)
    return np.asarray(np.minimum(d, MAX_DAMAGE), dtype=np.float64)
