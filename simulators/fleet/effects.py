"""What the asset models hand back, the damage of an asset's fault, and where its unit trips.

A fault fails by its own physics: the runner measures the asset's channels as its sensors report them
and looks for the first operating sample past the fault's catalog criterion (:func:`first_trip`). That
sample is the ground-truth failure; the asset is then simulated again with its protection locked out from
there, exactly as the machine would stop. Nothing moves a channel toward the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pdm_common.catalog import FAILURE_CRITERIA, FaultCode
from simulators.fleet.plan import AssetPlan
from simulators.fleet.trajectory import damage

__all__ = ["MachineSignals", "fault_damage", "first_trip"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class MachineSignals:
    """True (noise-free) values of one asset's channels, its state flags and when criteria apply.

    ``state`` holds internal traces (controller mode …) for diagnostics and tests; it is never published.
    """

    values: dict[str, FloatArray]
    flags: dict[str, BoolArray]
    operating: BoolArray
    state: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)


def fault_damage(plan: AssetPlan, t_rel_s: FloatArray) -> FloatArray:
    """Hidden damage of the asset's fault at each sample (zeros when it has none).

    Episodes draw from their own generator, so adding a fault leaves the asset's weather, habits and
    noise untouched: the same asset without the fault is an exact counterfactual until it diverges.
    """
    f = plan.fault
    if f is None:
        return np.zeros_like(t_rel_s)
    return damage(
        t_rel_s, f.onset_s, f.span_s, f.trajectory, np.random.default_rng([*plan.seed, 1]),
        first_prediction=f.first_prediction,
    )


def first_trip(
    code: FaultCode, reported: Mapping[str, FloatArray], operating: BoolArray, onset_index: int
) -> int | None:
    """Index of the first operating sample at or after ``onset_index`` past ``code``'s failure criterion.

    The protection reads the unit's own (healthy) sensor, so the reported value at the trip is past the
    threshold by construction. None when the run ends first.
    """
    crit = FAILURE_CRITERIA[code]
    x = reported[crit.metric]
    with np.errstate(invalid="ignore"):
        past = x >= crit.threshold if crit.direction == "above" else x <= crit.threshold
    hit = past & operating
    hit[: max(onset_index, 0)] = False
    if not hit.any():
        return None
    return int(np.argmax(hit))
