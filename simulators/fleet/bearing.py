"""Rolling-bearing condition features of a pump set: velocity RMS, kurtosis, envelope and temperature.

A spall's impacts show first in the impulsiveness of the acceleration signal (kurtosis) and in the
envelope at the bearing's defect frequencies; broadband velocity RMS rises only once the damage has
spread, and temperature in the last 10-15 % of life (failure-physics.md B2/B3) [S~]. Kurtosis then falls
back toward 3 as the damage becomes distributed (a well-known shape of the IMS and FEMTO curves) [S~].
The healthy values scatter with speed and off-design flow. Numbers are [E] unless tagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.fleet.trajectory import EXPONENTIAL_RATE

__all__ = ["BearingFeatures", "bearing_features", "early_stage"]

FloatArray = npt.NDArray[np.float64]

HEALING_DIPS_PER_DAY = 0.5
"""Spalls smooth over now and then: RMS dips of 10-30 % lasting hours (B2, seen in IMS/XJTU curves) [S~]."""
EARLY_LEAD = 0.35
"""Envelope and kurtosis start rising about a third of the life before broadband RMS does (B2: "kurtosis /
envelope energy rise first (stage 1-2)"; B3 P-F: spectrum/envelope warns weeks before noise) [S~]/[E]."""


@dataclass(frozen=True, slots=True)
class BearingFeatures:
    """Added bearing-defect contributions (zero for a healthy bearing)."""

    rms_mm_s: FloatArray
    kurtosis: FloatArray
    envelope_g: FloatArray
    temp_k: FloatArray


def early_stage(u: FloatArray, first_prediction: float) -> FloatArray:
    """Incipient-damage index 0 → 1 over the span, rising ``EARLY_LEAD`` of life before the RMS stage."""
    start = max(first_prediction - EARLY_LEAD, 0.05)
    v = np.clip((u - start) / (1.0 - start), 0.0, 2.0)
    return np.asarray(np.expm1(EXPONENTIAL_RATE * 0.6 * v) / np.expm1(EXPONENTIAL_RATE * 0.6), dtype=np.float64)


def bearing_features(
    defect: FloatArray,
    incipient: FloatArray,
    speed: FloatArray,
    *,
    rms_at_failure: float,
    rng: np.random.Generator,
    t_rel_s: FloatArray,
) -> BearingFeatures:
    """Defect contributions to the features.

    Args:
        defect: spall damage, 1 at the span (the RMS stage, flat until the first-prediction time).
        incipient: the earlier impacts stage (:func:`early_stage`).
        speed: shaft speed ratio (impact energy grows with speed).
        rms_at_failure: RMS added at damage 1 and rated speed for this unit.
        rng: the fault's generator (healing dips).
        t_rel_s: sample times.
    """
    dips = np.ones_like(defect)
    span = float(t_rel_s[-1] - t_rel_s[0]) if t_rel_s.size else 0.0
    for _ in range(rng.poisson(HEALING_DIPS_PER_DAY * span / 86400.0)):
        start = rng.uniform(float(t_rel_s[0]), float(t_rel_s[-1]))
        lo, hi = np.searchsorted(t_rel_s, [start, start + rng.uniform(2.0, 8.0) * 3600.0])
        dips[lo:hi] = 1.0 - rng.uniform(0.1, 0.3)
    rms = rms_at_failure * defect * speed**1.5 * dips
    # Impulsive early, back toward Gaussian as damage spreads [S~].
    kurt = 7.0 * incipient * np.exp(-np.maximum(defect - 0.3, 0.0) / 0.6)
    env = (0.6 * incipient + 0.5 * defect) * speed**2
    temp = 12.0 * np.minimum(defect, 2.0) ** 2
    return BearingFeatures(rms, np.asarray(kurt, dtype=np.float64), np.asarray(env, dtype=np.float64), temp)
