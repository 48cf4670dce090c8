"""Severity of a machine fault over time: 0 before onset, 1 at (and after) the failure time.

Three shapes (failure-physics.md D):

* ``drift``: linear, e.g. clogging strainer, impeller clearance, slow winding-insulation ageing;
* ``exponential``: flat, then exponential (the knee of refrigerant loss, the bearing health index
  after its first-prediction time);
* ``intermittent``: episodes (a sticking valve, cavitation when the suction tank runs low) that grow
  more frequent and more severe until the fault is permanent.

Fault effects are written in terms of this severity, so the failure criterion is met at severity 1.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from simulators.fleet.scenario import Trajectory

__all__ = ["EXPONENTIAL_RATE", "severity"]

FloatArray = npt.NDArray[np.float64]

EXPONENTIAL_RATE = 5.0
"""exp(5u): severity reaches 10 % at u ≈ 0.57 and 50 % at u ≈ 0.87 of the onset→failure span, like the
first-prediction times at 50-90 % of life in the XJTU-SY/FEMTO bearings (failure-physics.md B2) [E]."""
EPISODE_MEAN_H = 3.0
"""Mean length of an intermittent episode (hours-days sticking, failure-physics.md A2) [E]."""
PERMANENT_FROM = 0.9
"""Intermittent faults stay on for the last 10 % of the span: the part sticks for good [E]."""


def _episodes(t_s: FloatArray, onset_s: float, failure_s: float, rng: np.random.Generator) -> FloatArray:
    """0/1 mask of episodes whose duty cycle rises from 15 % at onset to 100 % at ``PERMANENT_FROM``."""
    span = failure_s - onset_s
    mean_s = EPISODE_MEAN_H * 3600.0
    mask = np.zeros_like(t_s)
    t = onset_s
    while t < onset_s + PERMANENT_FROM * span:
        u = (t - onset_s) / span
        duty = 0.15 + 0.85 * (u / PERMANENT_FROM) ** 2
        on_s = rng.exponential(mean_s)
        off_s = rng.exponential(mean_s * (1.0 - duty) / duty)
        mask[(t_s >= t) & (t_s < t + on_s)] = 1.0
        t += on_s + off_s
    mask[t_s >= onset_s + PERMANENT_FROM * span] = 1.0
    return mask


def severity(
    t_s: FloatArray, onset_s: float, failure_s: float, trajectory: Trajectory, rng: np.random.Generator
) -> FloatArray:
    """Fault severity in [0, 1] at times ``t_s`` (any common time base with ``onset_s`` and ``failure_s``).

    >>> t = np.array([0.0, 50.0, 100.0, 150.0])
    >>> severity(t, 0.0, 100.0, Trajectory.DRIFT, np.random.default_rng(0)).tolist()
    [0.0, 0.5, 1.0, 1.0]
    """
    u = np.clip((t_s - onset_s) / (failure_s - onset_s), 0.0, 1.0)
    if trajectory is Trajectory.DRIFT:
        return np.asarray(u, dtype=np.float64)
    if trajectory is Trajectory.EXPONENTIAL:
        return np.asarray(np.expm1(EXPONENTIAL_RATE * u) / np.expm1(EXPONENTIAL_RATE), dtype=np.float64)
    # Even the first sticking episodes are noticeable (a valve is stuck or it is not) [E].
    envelope = np.where(u > 0.0, 0.3 + 0.7 * u, 0.0)
    return np.asarray(envelope * _episodes(t_s, onset_s, failure_s, rng), dtype=np.float64)
