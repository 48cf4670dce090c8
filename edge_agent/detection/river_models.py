"""River's online models behind the detector protocol: HalfSpaceTrees, and a predictive residual model.

Importing this module imports ``river.anomaly``, ``river.linear_model``, ``river.preprocessing`` and
``river.drift``, which pull in ``scipy.stats`` (river-notes.md; measured cost in docs/detection.md),
so :mod:`edge_agent.detection.models` imports it only when a kind or an asset is configured with
``hst`` or ``river_linear``.

Both follow what river-notes.md measured on real rig data: a River model that learns every sample
learns the fault as normal (HalfSpaceTrees in a QuantileFilter caught 3 % of anomalous samples), so
here they learn during warm-up and afterwards only from samples they judge clearly healthy and while
no alert is active; thresholds are fixed at the end of warm-up.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from river import anomaly, drift, linear_model, optim, preprocessing, stats

from edge_agent.detection.plan import KindPlan
from edge_agent.detection.protocol import Evidence, Sample, Score
from edge_agent.detection.settings import DetectionSettings
from edge_agent.detection.warmup import WarmupClock

__all__ = ["HalfSpaceTreesDetector", "RiverResidualDetector"]

_HST_TREES, _HST_HEIGHT, _HST_WINDOW = 25, 8, 250
"""river-notes.md's measured set-up: 25 trees of height 8 (about 36 µs a sample on 6 features)."""

_MAX_KEPT = 2048
"""Warm-up samples buffered for scaling and calibration (thinned uniformly beyond)."""

_HEALTHY_SHARE = 0.5
"""After warm-up a model learns only from samples scoring below this share of its threshold."""


class _Buffered:
    """Warm-up bookkeeping shared by the River detectors: a thinned buffer of samples."""

    def __init__(self, plan: KindPlan, settings: DetectionSettings, *, seed: int) -> None:
        self.plan = plan
        self.seed = seed
        self.retune(settings)
        self.reset()

    def retune(self, settings: DetectionSettings, plan: KindPlan | None = None) -> bool:
        """Apply new settings; what was learned stays."""
        self.warmup_s = settings.warmup_h * 3600.0
        self.warmup_samples = settings.warmup_samples
        self.quantile = settings.threshold_quantile
        self.drift_hold_s = settings.drift_halflife_h * 3600.0
        self.point_sigmas = settings.point_sigmas
        if plan is not None:
            self.plan = plan
        return True

    def reset(self) -> None:
        """Forget everything."""
        self.clock = WarmupClock()
        self._buffer: list[dict[str, float]] = []
        self._stride = 1
        self._skip = 0
        self.warm = False

    def _keep(self, sample: Sample) -> None:
        self.clock.samples += 1
        self._skip += 1
        if self._skip < self._stride:
            return
        self._skip = 0
        self._buffer.append({k: v for k, v in sample.values.items() if k not in sample.excluded})
        if len(self._buffer) >= _MAX_KEPT:
            self._buffer = self._buffer[::2]
            self._stride *= 2

    def _ready(self) -> bool:
        return len(self._buffer) >= 8 and self.clock.done(samples=self.warmup_samples, seconds=self.warmup_s)

    def warmup_progress(self, t: float) -> float:
        """Share of the warm-up done, 0..1."""
        if self.warm:
            return 1.0
        return round(min(0.999, self.clock.progress(samples=self.warmup_samples, seconds=self.warmup_s)), 3)

    def warmup_note(self) -> str | None:
        """Why the detector does not score yet, or None once warm."""
        return None if self.warm else "warming up: buffering samples to scale and calibrate the model"

    def problems(self) -> list[str]:
        """Inconsistencies of a restored state (empty when sound)."""
        return self.clock.problems()


class HalfSpaceTreesDetector(_Buffered):
    """River ``anomaly.HalfSpaceTrees`` on channels min-max scaled with the warm-up's range.

    The trees learn the first half of the warm-up, the threshold is the ``threshold_quantile`` of the
    scores on the second half (as ``realdata/baselines.py`` does); afterwards a sample is scored, then
    learned only when it scores below half the threshold and no alert is active. One number per
    sample: no per-channel evidence, so alerts from this detector are ``unclassified``.
    """

    def reset(self) -> None:
        """Forget everything."""
        super().reset()
        self.limits: dict[str, tuple[float, float]] = {}
        self.model: Any = None
        self.threshold = math.inf
        self._x: dict[str, float] = {}

    def _scaled(self, values: dict[str, float]) -> dict[str, float]:
        # A channel absent from the sample is left out: HST walks past features it is not given.
        return {name: (values[name] - lo) / span for name, (lo, span) in self.limits.items() if name in values}

    def _fit(self) -> None:
        names = sorted({k for x in self._buffer for k in x})
        for name in names:
            vals = [x[name] for x in self._buffer if name in x]
            if vals and max(vals) > min(vals):
                self.limits[name] = (min(vals), max(vals) - min(vals))
        half = len(self._buffer) // 2
        # Scaled readings lie in [0, 1] during warm-up; a fault takes them outside, into the trees' edges.
        self.model = anomaly.HalfSpaceTrees(n_trees=_HST_TREES, height=_HST_HEIGHT,
                                            window_size=max(1, min(_HST_WINDOW, half)),
                                            limits=dict.fromkeys(self.limits, (0.0, 1.0)), seed=self.seed)
        scores = []
        for i, x in enumerate(self._buffer):
            z = self._scaled(x)
            if i >= half:
                scores.append(self.model.score_one(z))
            self.model.learn_one(z)
        self.threshold = max(float(np.quantile(scores, self.quantile)), 1e-6)
        self._buffer = []
        self.warm = True

    def score_one(self, sample: Sample) -> Score:
        """HST score over the threshold."""
        self.clock.tick(sample.t, gap=sample.gap)
        if not self.warm or not self.limits:
            return Score(scored=False)
        values = {k: v for k, v in sample.values.items() if k not in sample.excluded}
        self._x = self._scaled(values)
        return Score(scored=True, value=float(self.model.score_one(self._x)) / self.threshold)

    def learn_one(self, sample: Sample, score: Score, *, allowed: bool) -> None:
        """Buffer during warm-up; afterwards learn clearly healthy samples only."""
        if not self.warm:
            if allowed:
                self._keep(sample)
                if self._ready():
                    self._fit()
            return
        if allowed and score.scored and score.value < _HEALTHY_SHARE:
            self.model.learn_one(self._x)

    def restart(self) -> None:
        """Nothing accumulates between samples beyond what the trees learned."""


class RiverResidualDetector(_Buffered):
    """Predictive anomaly detection with River: each channel predicted from the drivers, plus drift detection.

    Per measured channel a ``preprocessing.StandardScaler() | linear_model.LinearRegression()`` on the
    drivers (and their squares) learns the normal relation during warm-up; the residual's spread is
    ``stats.Var`` of the warm-up residuals. A ``drift.ADWIN`` per channel watches the standardised
    residuals for a shift of their mean (slow change is the signal of degradation); a detected change
    counts as drift evidence, in the direction of the window's new mean, for ``drift_halflife_h``.
    (``drift.PageHinkley`` would do too, but its state pickles through ``getattr``, which a checkpoint
    loader must not allow.) Without drivers the model is the channel's warm-up mean.
    """

    def reset(self) -> None:
        """Forget everything."""
        super().reset()
        self.models: dict[str, Any] = {}
        self.spread: dict[str, float] = {}
        self.change: dict[str, Any] = {}
        self.changed_at: dict[str, tuple[float, float]] = {}
        self.metrics: list[str] = []
        self.threshold = 1.0

    def _x(self, values: dict[str, float]) -> dict[str, float]:
        x = {d: values[d] for d in self.plan.drivers if d in values}
        x.update({f"{d}^2": v * v for d, v in list(x.items())})
        return x

    def _new_model(self) -> Any:
        return preprocessing.StandardScaler() | linear_model.LinearRegression(optimizer=optim.SGD(0.01),
                                                                                intercept_lr=0.1)

    def _fit(self) -> None:
        names = sorted({k for x in self._buffer for k in x if k not in self.plan.drivers and self.plan.accepts(k)})
        # Several passes over the buffer: SGD needs them to converge on a short warm-up.
        for name in names:
            model = self._new_model()
            rows = [(self._x(x), x[name]) for x in self._buffer if name in x]
            for _ in range(5):
                for xd, y in rows:
                    model.learn_one(xd, y)
            var = stats.Var()
            for xd, y in rows:
                var.update(y - model.predict_one(xd))
            sd = math.sqrt(var.get()) if var.get() > 0 else 0.0
            if sd > 0.0:
                self.models[name] = model
                self.spread[name] = sd
                self.change[name] = _adwin()
        self.metrics = list(self.models)
        self._buffer = []
        self.warm = True

    def score_one(self, sample: Sample) -> Score:
        """Residual z per channel (point) and River drift detections (drift)."""
        self.clock.tick(sample.t, gap=sample.gap)
        if not self.warm or not self.metrics:
            return Score(scored=False)
        values = sample.values
        x = self._x(dict(values))
        n = len(self.metrics)
        z, val, exp, drift_ev = (np.zeros(n) for _ in range(4))
        valid = np.zeros(n, dtype=bool)
        for i, name in enumerate(self.metrics):
            y = values.get(name)
            if y is None or name in sample.excluded:
                val[i] = exp[i] = np.nan
                continue
            pred = float(self.models[name].predict_one(x))
            z[i] = (y - pred) / self.spread[name]
            val[i], exp[i], valid[i] = y, pred, True
            detector = self.change[name]
            detector.update(z[i])
            if detector.drift_detected:
                self.changed_at[name] = (sample.t, math.copysign(1.0, detector.estimation))
            seen = self.changed_at.get(name)
            if seen is not None and sample.t - seen[0] <= self.drift_hold_s:
                drift_ev[i] = seen[1]
        point = z / self.point_sigmas
        ev = Evidence(names=self.metrics, point=point, drift=drift_ev, valid=valid, value=val, expected=exp,
                      point_sigmas=z, drift_sigmas=drift_ev)
        top = float(np.max(np.maximum(np.abs(point), np.abs(drift_ev)), initial=0.0, where=valid))
        return Score(scored=True, value=top, evidence=ev)

    def learn_one(self, sample: Sample, score: Score, *, allowed: bool) -> None:
        """Buffer during warm-up, then fit; the relation stays frozen afterwards (a slow fault is not learned)."""
        if not self.warm and allowed:
            self._keep(sample)
            if self._ready():
                self._fit()

    def restart(self) -> None:
        """Forget the drift detections (after a service visit)."""
        self.changed_at.clear()
        for name in self.change:
            self.change[name] = _adwin()

    def problems(self) -> list[str]:
        """Inconsistencies of a restored state (empty when sound)."""
        out = super().problems()
        if set(self.metrics) != set(self.models) or any(not (s > 0 and math.isfinite(s)) for s in self.spread.values()):
            out.append("residual models and spreads do not match")
        return out


def _adwin() -> Any:
    """A fresh ``drift.ADWIN`` with River's defaults (delta 0.002: a change is reported at 99.8 %)."""
    return drift.ADWIN()  # type: ignore[no-untyped-call]  # River's ADWIN constructor is not annotated
