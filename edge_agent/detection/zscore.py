"""A frozen robust z-score per channel: median and MAD of the warm-up, never updated.

The simplest honest detector, and the one river-notes.md measured: it catches most faults and,
because real channels wander with the operating point, alarms on many healthy samples. It is here as
a baseline behind the same protocol and for kinds with no regime drivers and a steady operating point.
Each channel's evidence is ``(x - median) / (1.4826 MAD)`` over ``drift_sigmas`` (point and drift
alike); a channel that did not vary during warm-up is ignored, as in ``realdata/baselines.py``.
"""

from __future__ import annotations

import numpy as np

from edge_agent.detection.plan import KindPlan
from edge_agent.detection.protocol import Evidence, FloatArray, Sample, Score
from edge_agent.detection.settings import DetectionSettings
from edge_agent.detection.warmup import WarmupClock

__all__ = ["RobustZScore"]

_MAD_SIGMA = 1.4826
"""MAD of a normal distribution times this is its standard deviation."""

_MAX_KEPT = 2048
"""Warm-up values kept per channel (thinned uniformly beyond), so memory is bounded at any rate."""


class RobustZScore:
    """Frozen per-channel robust z-score of one asset.

    Args:
        plan: the asset's kind (its drivers are not scored).
        settings: detection settings (warm-up and ``drift_sigmas``).
        seed: unused (deterministic); accepted for the protocol.
    """

    def __init__(self, plan: KindPlan, settings: DetectionSettings, *, seed: int = 0) -> None:
        self.plan = plan
        self.seed = seed
        self.retune(settings)
        self.reset()

    def retune(self, settings: DetectionSettings, plan: KindPlan | None = None) -> bool:
        """Apply new settings; the frozen statistics stay."""
        self.warmup_s = settings.warmup_h * 3600.0
        self.warmup_samples = settings.warmup_samples
        self.threshold = settings.drift_sigmas
        if plan is not None:
            self.plan = plan
        return True

    def reset(self) -> None:
        """Forget everything."""
        self.clock = WarmupClock()
        self.metrics: list[str] = []
        self._kept: dict[str, list[float]] = {}
        self._stride = 1
        self._skip = 0
        self.center: FloatArray = np.zeros(0)
        self.scale: FloatArray = np.zeros(0)
        self.warm = False

    def score_one(self, sample: Sample) -> Score:
        """Robust z of each channel against the frozen warm-up statistics."""
        self.clock.tick(sample.t, gap=sample.gap)
        if not self.warm:
            return Score(scored=False)
        x = np.array([sample.values.get(n, np.nan) if n not in sample.excluded else np.nan for n in self.metrics])
        z = (x - self.center) / self.scale
        valid = ~np.isnan(z)
        z = np.where(valid, z, 0.0)
        ev_z = z / self.threshold
        ev = Evidence(names=self.metrics, point=ev_z, drift=np.zeros_like(z), valid=valid, value=x,
                      expected=self.center.copy(), point_sigmas=z, drift_sigmas=np.zeros_like(z))
        return Score(scored=True, value=float(np.max(np.abs(ev_z), initial=0.0, where=valid)), evidence=ev)

    def learn_one(self, sample: Sample, score: Score, *, allowed: bool) -> None:
        """Collect warm-up values; freeze median and MAD when the warm-up ends."""
        if self.warm or not allowed:
            return
        self.clock.samples += 1
        self._skip += 1
        if self._skip >= self._stride:
            self._skip = 0
            for name, v in sample.values.items():
                if name in sample.excluded or name in self.plan.drivers or not self.plan.accepts(name):
                    continue
                self._kept.setdefault(name, []).append(v)
            if max((len(v) for v in self._kept.values()), default=0) >= _MAX_KEPT:
                self._kept = {k: v[::2] for k, v in self._kept.items()}
                self._stride *= 2
        if self.clock.done(samples=self.warmup_samples, seconds=self.warmup_s) and self._kept:
            self._freeze()

    def _freeze(self) -> None:
        names, centers, scales = [], [], []
        for name, vals in self._kept.items():
            arr = np.asarray(vals)
            med = float(np.median(arr))
            mad = _MAD_SIGMA * float(np.median(np.abs(arr - med)))
            if mad > 0.0:
                names.append(name)
                centers.append(med)
                scales.append(mad)
        self.metrics, self.center, self.scale = names, np.array(centers), np.array(scales)
        self._kept = {}
        self.warm = True

    def warmup_progress(self, t: float) -> float:
        """Share of the warm-up done, 0..1."""
        if self.warm:
            return 1.0
        return round(min(0.999, self.clock.progress(samples=self.warmup_samples, seconds=self.warmup_s)), 3)

    def warmup_note(self) -> str | None:
        """Why the detector does not score yet, or None once warm."""
        return None if self.warm else "warming up: collecting each channel's median and spread"

    def restart(self) -> None:
        """Nothing accumulates between samples."""

    def problems(self) -> list[str]:
        """Inconsistencies of a restored state (empty when sound)."""
        out = self.clock.problems()
        if self.center.shape != (len(self.metrics),) or self.scale.shape != (len(self.metrics),):
            out.append("z-score statistics do not match their channels")
        elif np.any(~np.isfinite(self.scale)) or np.any(self.scale <= 0):
            out.append("z-score scale not positive and finite")
        return out
