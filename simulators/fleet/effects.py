"""Machine-fault severities per asset and the failure-criterion contract.

Each fault's physics moves its coupled channels in the asset models. On top of that, the channel named
by ``FAILURE_CRITERIA[code]`` is pulled toward just past its threshold as the severity approaches 1, on
samples where the criterion applies (:func:`pdm_common.catalog.is_operating`). That is the simulator's
contract with the benchmarks: the criterion is crossed at the ground-truth failure time whatever the
weather or load, and not long before. A real unit would trip a little earlier on a hard day and later on
an easy one; the ground truth would then be the trip, which is what this models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pdm_common.catalog import FAILURE_CRITERIA, FAULTS_BY_KIND, METRICS, FailureCriterion, FaultCode
from pdm_common.contracts import AssetKind
from simulators.fleet.plan import AssetPlan
from simulators.fleet.sensors import RELATIVE_NOISE
from simulators.fleet.trajectory import severity

__all__ = ["CRITERION_SHARPNESS", "MachineSignals", "criterion_margin", "enforce_criterion", "fault_levels"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

CRITERION_SHARPNESS = 40.0
"""Weight ``severity**40`` of the final pull past the threshold: 0.3 at severity 0.97, 0.67 at 0.99, so the
physics sets the trend and the pull is the trip in the last hours: the criterion is crossed once the
weight passes 0.5, at severity ≈0.983 (a 4-day drift fault crosses ≈1.6 h before its failure time) [E]."""


@dataclass(frozen=True, slots=True)
class MachineSignals:
    """True (noise-free) values of one asset's channels, its state flags and when criteria apply."""

    values: dict[str, FloatArray]
    flags: dict[str, BoolArray]
    operating: BoolArray


def fault_levels(kind: AssetKind, plan: AssetPlan, t_rel_s: FloatArray) -> dict[FaultCode, FloatArray]:
    """Severity (0…1) of every fault of ``kind`` for this asset; zeros for faults it does not have.

    Episodes draw from their own generator, so adding a fault leaves the asset's weather, habits and
    noise untouched: the same asset without the fault is an exact counterfactual.
    """
    zeros = np.zeros_like(t_rel_s)
    levels = {code: zeros for code in FAULTS_BY_KIND[kind]}
    if plan.fault is not None:
        f = plan.fault
        levels[f.code] = severity(t_rel_s, f.onset_s, f.failure_s, f.trajectory, np.random.default_rng([*plan.seed, 1]))
    return levels


def criterion_margin(kind: AssetKind, crit: FailureCriterion) -> float:
    """How far past the threshold the channel sits at failure: 3 sigma of noise plus 1 % of the normal span."""
    spec = next(m for m in METRICS[kind] if m.name == crit.metric)
    sigma = float(np.hypot(spec.noise_sigma, RELATIVE_NOISE.get(crit.metric, 0.0) * crit.threshold))
    return 0.01 * (spec.normal_high - spec.normal_low) + 3.0 * sigma


def enforce_criterion(
    kind: AssetKind, values: dict[str, FloatArray], operating: BoolArray, code: FaultCode, level: FloatArray
) -> None:
    """Pull ``code``'s criterion channel past its threshold as ``level`` reaches 1 (in place, operating samples)."""
    crit = FAILURE_CRITERIA[code]
    margin = criterion_margin(kind, crit)
    target = crit.threshold + margin if crit.direction == "above" else crit.threshold - margin
    current = values[crit.metric]
    # Before the trip the physics may run into the threshold (a low-flow unit at a small design flow):
    # values within two margins of it are compressed smoothly to stay one margin short, as a protection
    # controller that throttles would; values farther away are untouched [E].
    sign = 1.0 if crit.direction == "above" else -1.0
    gap = sign * (crit.threshold - current)
    knee = 2.0 * margin
    compressed = margin + (knee - margin) * np.exp(np.minimum(gap - knee, 0.0) / (knee - margin))
    softened = crit.threshold - sign * np.where(gap >= knee, gap, compressed)
    weight = level**CRITERION_SHARPNESS
    pulled = softened + weight * (target - softened)
    values[crit.metric] = np.asarray(np.where(operating & (level > 0.0), pulled, current), dtype=np.float64)
