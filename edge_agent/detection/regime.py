"""The regime-residual detector: each channel predicted from the asset's operating drivers.

What is normal for a heat pump depends on outdoor temperature and compressor speed
(failure-physics.md A1: "compute everything from T_oa, the flow setpoint and f_comp"); for a pump on
its shaft speed; for a declared kind on whatever it declares as drivers. Recursive least squares on
those drivers (their squares and products, start-up transients, frost load) turns readings into
*residuals*, so a cold spell or a production change moves the prediction, not the residual.
river-notes.md measured that "residuals against related sensors matter more than the choice of
outlier model".

Per sample, with ``h = x'Px`` the leverage of the regime (about 1/n for a regime seen n times):

1. ``z = (y - prediction) / (sigma * sqrt(1 + h))``: the a-priori residual in units of its own
   predictive spread, so a regime seen only a few times is judged with the wider band it deserves;
2. *point evidence* ``|z|``; *drift evidence*: ``z`` smoothed with a time-based EWMA (half-life
   ``drift_halflife_h``), divided by the spread the smoothing leaves (from the weights since the
   window started, the residuals' lag-one autocorrelation and the spread seen during warm-up, never
   below ``min_drift_sd``);
3. both in units of thresholds that are fixed once the warm-up ends: ``point_sigmas`` /
   ``drift_sigmas``, raised to ``threshold_margin`` times the warm-up's own ``threshold_quantile`` where
   the asset's residuals are heavier-tailed than Gaussian.

Warm-up learns in two halves: the regression and the residual scale from the start, the thresholds
only from the second half (scales before thresholds). It ends when both ``warmup_h`` of operation and
``warmup_samples`` have passed *and* the model has seen enough samples for its size; until then the
detector says why (:meth:`RegimeDetector.warmup_note`) instead of alarming.

After warm-up nothing is learned except regimes never seen (leverage far above the warm-up's): a
fault that develops over days would otherwise be learned as the new normal (the issue measured
thresholds that rose from 34 to 459 sigma with a slow fault when they kept learning).

The regressions share one covariance matrix (RLS covariance depends on the inputs only), so the
cost per sample is one ``dim x dim`` update whatever the number of channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_agent.detection.plan import KindPlan
from edge_agent.detection.protocol import BoolArray, Evidence, FloatArray, Sample, Score
from edge_agent.detection.settings import DetectionSettings
from edge_agent.detection.warmup import WarmupClock

__all__ = ["RegimeDetector", "RegimeTuning"]

_P0 = 1e3
"""Initial RLS covariance: large, so the first samples dominate (standard RLS start, Haykin ch. 10)."""

_LOG_MIN = 1e-3
"""Floor before the logarithm, for a log-scale channel that reads zero."""

_SCALE_HALFLIFE_S = 7 * 86400.0
"""After warm-up, the residual scale of newly learned regimes forgets over a week: slower than any
weather spell, so one odd day does not redefine the noise."""

_LEVERAGE_FACTOR = 2.0
"""A regime is novel when its leverage is this many times the warm-up's median (fewer than half as
many samples support it as the warm-up's typical regime) and above ``novel_leverage``. At 4 (a
quarter), one learned sample of an operating condition the warm-up never saw made it "known": C-MAPSS
FD004 engines were then judged there with residuals of 20 sigma, cycle after cycle. Chosen on the
development split and seeds only: FD004 false alarms 16 -> 12, simulator false alarms per asset-month
0.75 -> 0.56 (healthy winter) and 0.89 -> 0.80 (operating changes), detection unchanged
(docs/detection.md)."""

_RELIABLE_LEVERAGE = 1.0
"""Residuals of regimes with leverage above 1 are mostly parameter uncertainty: they do not teach the scale."""

_Z_CLIP = 3.0
"""z is clipped at this many point thresholds before smoothing, so one wild reading cannot carry the drift."""

_MAX_BUFFER = 4096
"""Warm-up evidence kept for the threshold quantiles (decimated beyond): bounds memory at any rate."""

_QUANTILE_TAIL = 2.0
"""The warm-up quantile bounds the thresholds only when at least two samples lie beyond it (200 for the
0.99 quantile): the largest of a few dozen samples says nothing about the tail."""

_MIN_EXTRA = 10
"""Samples beyond the model's parameter count before its residual scale is trusted (10 degrees of
freedom give the scale to about +-22 %, chi-square)."""

_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class RegimeTuning:
    """The part of :class:`DetectionSettings` this detector reads (plain, so checkpoints stay plain)."""

    warmup_s: float
    warmup_samples: int
    halflife_s: float
    novel_leverage: float
    drift_halflife_s: float
    min_drift_sd: float
    point_sigmas: float
    drift_sigmas: float
    quantile: float
    margin: float

    @classmethod
    def of(cls, s: DetectionSettings) -> RegimeTuning:
        """Read the tuning from ``s``."""
        return cls(
            warmup_s=s.warmup_h * 3600.0,
            warmup_samples=s.warmup_samples,
            halflife_s=s.baseline_halflife_d * 86400.0,
            novel_leverage=s.novel_leverage,
            drift_halflife_s=s.drift_halflife_h * 3600.0,
            min_drift_sd=s.min_drift_sd,
            point_sigmas=s.point_sigmas,
            drift_sigmas=s.drift_sigmas,
            quantile=s.threshold_quantile,
            margin=s.threshold_margin,
        )


class RegimeDetector:
    """Regime-residual detector of one asset (see the module docstring).

    Args:
        plan: the asset's kind: drivers, channels, noise floors.
        settings: detection settings.
        seed: unused (the detector is deterministic); accepted for the protocol.
    """

    def __init__(self, plan: KindPlan, settings: DetectionSettings, *, seed: int = 0) -> None:
        self.plan = plan
        self.tuning = RegimeTuning.of(settings)
        self.seed = seed
        self.reset()

    def retune(self, settings: DetectionSettings, plan: KindPlan | None = None) -> bool:
        """Apply new settings (and the kind's new plan), keeping what was learned; frozen thresholds follow.

        Returns:
            False when ``plan`` changes the model's inputs (drivers, transients, frost): what was learned
            does not fit it, and the caller must :meth:`reset` (the asset re-warms).
        """
        self.tuning = RegimeTuning.of(settings)
        if plan is not None:
            same = (plan.drivers, plan.transients_min, plan.frost) == (
                self.plan.drivers, self.plan.transients_min, self.plan.frost)
            self.plan = plan
            if not same:
                return False
        if self.warm:
            self._set_thresholds()
        return True

    def reset(self) -> None:
        """Forget everything (``reset_baseline``)."""
        plan = self.plan
        self.drivers = plan.drivers
        n = len(self.drivers)
        self._pairs = [(i, j) for i in range(n) for j in range(i, n)]
        self._taus_s = tuple(60.0 * m for m in plan.transients_min)
        self.dim = 1 + n + len(self._pairs) + len(self._taus_s) + (1 if plan.frost else 0)
        self._scale = np.array([plan.channel(d).scale or 0.0 for d in self.drivers], dtype=np.float64)
        self._last_driver = np.zeros(n)
        self._driver_seen = np.zeros(n, dtype=bool)
        self.metrics: list[str] = []
        self._index: dict[str, int] = {}
        dim = self.dim
        self._P: FloatArray = np.eye(dim) * _P0
        self._theta: FloatArray = np.zeros((0, dim))
        self._res_var: FloatArray = np.zeros(0)
        self._res_n: FloatArray = np.zeros(0)
        self._floor: FloatArray = np.zeros(0)
        self._log: BoolArray = np.zeros(0, dtype=bool)
        self._any_log = False
        self._quantum: FloatArray = np.zeros(0)
        self._prev_y: FloatArray = np.zeros(0)
        # Drift windows: weighted sum, sum of weights and of squared weights (bias-corrected EWMA).
        self._A: FloatArray = np.zeros(0)
        self._S1: FloatArray = np.zeros(0)
        self._S2: FloatArray = np.zeros(0)
        self._drift_factor: FloatArray = np.zeros(0)
        # Warm-up bookkeeping.
        self.clock = WarmupClock()
        self.warm = False
        self._rho_xy: FloatArray = np.zeros(0)
        self._rho_xx: FloatArray = np.zeros(0)
        self._prev_z: FloatArray = np.zeros(0)
        self._buf_point: list[float] = []
        self._buf_drift: list[float] = []
        self._buf_lev: list[float] = []
        self._buf_stride = 1
        self._buf_skip = 0
        self._factor_open = True
        self.q_point = 0.0
        self.q_drift = 0.0
        self.novel_at = math.inf
        self.thr_point = self.tuning.point_sigmas
        self.thr_drift = self.tuning.drift_sigmas
        self._pending: tuple[float, FloatArray, FloatArray, FloatArray, float, BoolArray] | None = None
        self._sigma_cache: FloatArray | None = None

    # --- model ---------------------------------------------------------------------------------------
    def _add_metric(self, name: str) -> None:
        ch = self.plan.channel(name)
        self._sigma_cache = None
        self._index[name] = len(self.metrics)
        self.metrics.append(name)
        self._theta = np.vstack([self._theta, np.zeros((1, self.dim))])
        for attr in ("_res_var", "_res_n", "_A", "_S1", "_S2", "_rho_xy", "_rho_xx"):
            setattr(self, attr, np.append(getattr(self, attr), 0.0))
        self._drift_factor = np.append(self._drift_factor, 1.0)
        self._prev_y = np.append(self._prev_y, np.nan)
        self._prev_z = np.append(self._prev_z, np.nan)
        self._log = np.append(self._log, ch.log_scale)
        self._any_log = bool(self._log.any())
        # Floor of the residual sigma: the sensor's noise, half a quantisation step (below, with the
        # learned one), and half a percent of the normal range, so a set-point or a very quiet channel
        # cannot make one step "hundreds of sigmas". In log space the floors are relative.
        rel = 1.0 / max(abs(ch.typical or 1.0), _LOG_MIN) if ch.log_scale else 1.0
        quantum = ch.quantum * rel if ch.quantum is not None else np.inf
        self._quantum = np.append(self._quantum, quantum)
        span = 0.0 if ch.typical is None or ch.scale is None else 2.0 * ch.scale
        self._floor = np.append(self._floor, max(ch.noise or 0.0, 0.005 * span) * rel)

    def features(self, sample: Sample) -> FloatArray:
        """Regression input: intercept, scaled drivers, their squares and products, transients, frost.

        Squares carry curvature (pump head goes with speed squared, the affinity laws); products carry
        interactions (electrical power goes with compressor speed times lift, failure-physics.md A1).
        A missing driver holds its last value, so one dead sensor does not stop scoring. Drivers are
        divided by their declared magnitude, or by their first reading's when undeclared.
        """
        x = np.empty(self.dim)
        x[0] = 1.0
        n = len(self.drivers)
        values = sample.values
        for i, name in enumerate(self.drivers):
            v = values.get(name)
            if v is not None and name not in sample.excluded:
                if not self._driver_seen[i]:
                    self._driver_seen[i] = True
                    if self._scale[i] == 0.0:
                        self._scale[i] = max(abs(v), 1.0)
                self._last_driver[i] = v
            x[1 + i] = self._last_driver[i] / (self._scale[i] or 1.0)
        k = 1 + n
        for i, j in self._pairs:
            x[k] = x[1 + i] * x[1 + j]
            k += 1
        for tau in self._taus_s:
            x[k] = math.exp(-sample.run_s / tau)
            k += 1
        if self.plan.frost:
            x[k] = sample.frost
        return x

    def _vector(self, sample: Sample) -> FloatArray:
        values = sample.values
        plan = self.plan
        for name in values:
            if name not in self._index and name not in self.drivers and plan.accepts(name):
                self._add_metric(name)
        y = np.array([values.get(n, np.nan) for n in self.metrics])
        for name in sample.excluded:
            i = self._index.get(name)
            if i is not None:
                y[i] = np.nan
        if self._any_log:
            logged = self._log & ~np.isnan(y)
            y[logged] = np.log(np.maximum(y[logged], _LOG_MIN))
        return y

    def _raw(self, v: FloatArray) -> FloatArray:
        """Model-space values back in the channels' own units."""
        if not self._any_log:
            return v
        out = v.copy()
        out[self._log] = np.exp(np.minimum(v[self._log], 700.0))
        return out

    def _sigma(self) -> FloatArray:
        """Residual sigma per channel, never below its floor; cached until the model learns again."""
        floor = np.maximum(self._floor, 0.5 * np.where(np.isfinite(self._quantum), self._quantum, 0.0))
        out: FloatArray = np.sqrt(np.maximum(self._res_var, np.maximum(floor, _EPS) ** 2))
        self._sigma_cache = out
        return out

    # --- protocol ------------------------------------------------------------------------------------
    def score_one(self, sample: Sample) -> Score:
        """Residuals, point and drift evidence of ``sample`` (advances the drift windows)."""
        x = self.features(sample)
        y = self._vector(sample)
        m = len(self.metrics)
        px = self._P @ x
        h = max(float(px @ x), 0.0)
        pred = self._theta @ x
        e = y - pred
        sigma = self._sigma_cache if self._sigma_cache is not None else self._sigma()
        z = e / (sigma * math.sqrt(1.0 + h))
        present = ~np.isnan(z)
        dt = self.clock.tick(sample.t, gap=sample.gap)
        self._pending = (sample.t, x, y, e, h, present)
        novel = self.warm and h > self.novel_at
        if not (self.warm or self._phase2()) or m == 0:
            return Score(scored=False, novel=novel)
        z0 = np.where(present, z, 0.0)
        limit = _Z_CLIP * self.thr_point
        # A regime never seen is learned, not judged: its residual says how wrong the model still is
        # there, not how the machine is, so it adds nothing to the drift windows (they only decay).
        z_in, kept = (np.zeros_like(z0), np.zeros_like(present)) if novel else (np.clip(z0, -limit, limit), present)
        self._smooth(z_in, kept, dt, restart=sample.gap, fresh=sample.fresh)
        drift_sig = self._drift_sigmas()
        point_ev = z0 / self.thr_point
        drift_ev = drift_sig / self.thr_drift
        ev = Evidence(names=self.metrics, point=point_ev, drift=drift_ev, valid=present, value=self._raw(y),
                      expected=self._raw(pred), point_sigmas=z0, drift_sigmas=drift_sig)
        if not self.warm:
            self._collect(np.abs(z0), np.abs(drift_sig), h, present)
            return Score(scored=False, evidence=ev)
        top = float(np.max(np.maximum(np.abs(point_ev), np.abs(drift_ev)), initial=0.0, where=present))
        return Score(scored=not novel, value=top, evidence=ev, novel=novel)

    def learn_one(self, sample: Sample, score: Score, *, allowed: bool) -> None:
        """Learn the regression and scale during warm-up and, afterwards, regimes never seen."""
        pending, self._pending = self._pending, None
        if pending is None or pending[0] != sample.t:
            return
        _t, x, y, e, h, present = pending
        if not self.warm:
            if not allowed:
                return
            self._learn(x, y, e, h, present, sample=sample)
            self.clock.samples += 1
            if self._ready():
                self._finish_warmup()
            return
        if allowed and score.novel:
            self._learn(x, y, e, h, present, sample=sample)

    def _learn(self, x: FloatArray, y: FloatArray, e: FloatArray, h: float, present: BoolArray, *,
               sample: Sample) -> None:
        if not present.any():
            return
        self._sigma_cache = None
        dt = min(self.clock.interval_s or 0.0, self.tuning.halflife_s)
        lam = math.exp(-math.log(2) * dt / self.tuning.halflife_s) if dt > 0 else 1.0
        px = self._P @ x
        denom = lam + max(float(px @ x), 0.0)
        gain = px / denom
        self._theta[present] += np.outer(e[present], gain)
        cov = (self._P - np.outer(gain, px)) / lam
        # Keep the covariance symmetric: rounding in the rank-one downdate otherwise makes it indefinite
        # after a few thousand steps in directions the data never excite (h < 0, a negative variance).
        self._P = 0.5 * (cov + cov.T)
        if h < _RELIABLE_LEVERAGE:
            # Recursive residuals e / sqrt(1 + h) are unbiased for the noise once the regime is identified.
            self._res_n[present] += 1.0
            if self.warm:
                a = np.maximum(1.0 / self._res_n[present],
                               1.0 - math.exp(-math.log(2) * (self.clock.interval_s or 0.0) / _SCALE_HALFLIFE_S))
            else:
                a = 1.0 / self._res_n[present]
            self._res_var[present] += a * (e[present] ** 2 / (1.0 + h) - self._res_var[present])
        # Learned quantisation: the smallest step a channel's reading makes.
        step = np.abs(y - self._prev_y)
        moved = present & (step > 0) & ~np.isnan(step)
        self._quantum[moved] = np.minimum(self._quantum[moved], step[moved])
        self._prev_y = np.where(present, y, self._prev_y)
        # Lag-one autocorrelation of the standardised residuals (for the drift spread), first half of warm-up.
        if not self.warm and not self._phase2() and not sample.gap and h < _RELIABLE_LEVERAGE:
            zs = e / np.sqrt(np.maximum(self._res_var, _EPS) * (1.0 + h))
            both = present & ~np.isnan(self._prev_z)
            self._rho_xy[both] += zs[both] * self._prev_z[both]
            self._rho_xx[both] += zs[both] ** 2
            self._prev_z = np.where(present, zs, np.nan)
        if not self.warm and self._phase2() and self._factor_open:
            self._fix_drift_factor()

    # --- drift -----------------------------------------------------------------------------------------
    def _smooth(self, z: FloatArray, present: BoolArray, dt: float, *, restart: bool, fresh: frozenset[str]) -> None:
        if restart:
            self._A[:] = 0.0
            self._S1[:] = 0.0
            self._S2[:] = 0.0
        for name in fresh:
            i = self._index.get(name)
            if i is not None:
                self._A[i] = self._S1[i] = self._S2[i] = 0.0
        d = math.exp(-math.log(2) * dt / self.tuning.drift_halflife_s)
        self._A *= d
        self._A += z  # zero where absent
        self._S1 *= d
        self._S1 += present
        self._S2 *= d * d
        self._S2 += present

    def _drift_sigmas(self) -> FloatArray:
        s1 = np.maximum(self._S1, _EPS)
        ew = self._A / s1
        sd = np.maximum(self._drift_factor * np.sqrt(self._S2) / s1, self.tuning.min_drift_sd)
        out: FloatArray = np.where(self._S1 > _EPS, ew / sd, 0.0)
        return out

    def restart(self) -> None:
        """Zero the drift windows after a service visit: the pre-service deviation is history."""
        self._A[:] = 0.0
        self._S1[:] = 0.0
        self._S2[:] = 0.0

    # --- warm-up ---------------------------------------------------------------------------------------
    def _needed(self) -> int:
        return max(self.tuning.warmup_samples, self.dim + _MIN_EXTRA)

    def _phase2(self) -> bool:
        return self.clock.done(samples=self._needed() // 2, seconds=self.tuning.warmup_s / 2)

    def _ready(self) -> bool:
        return self.clock.done(samples=self._needed(), seconds=self.tuning.warmup_s) and bool(self._buf_point)

    def warmup_progress(self, t: float) -> float:
        """Share of the warm-up done, 0..1 (operating time and samples both count)."""
        if self.warm:
            return 1.0
        return round(min(0.999, self.clock.progress(samples=self._needed(), seconds=self.tuning.warmup_s)), 3)

    def warmup_note(self) -> str | None:
        """Why the detector does not score yet, or None once warm."""
        if self.warm:
            return None
        need = self._needed()
        parts = []
        clock = self.clock
        if clock.samples < need:
            why = (f" (a model of {self.dim} parameters needs {self.dim + _MIN_EXTRA})"
                   if need > self.tuning.warmup_samples else "")
            parts.append(f"{need - clock.samples} more operating samples{why}")
        if clock.operating_s < self.tuning.warmup_s:
            parts.append(f"{(self.tuning.warmup_s - clock.operating_s) / 3600:.1f} more operating hours")
        return "warming up: " + ", ".join(parts) if parts else "warming up: collecting threshold statistics"

    def _collect(self, absz: FloatArray, absd: FloatArray, h: float, present: BoolArray) -> None:
        self._buf_skip += 1
        if self._buf_skip < self._buf_stride:
            return
        self._buf_skip = 0
        self._buf_point.append(_aggregate(absz[present]))
        self._buf_drift.append(_aggregate(absd[present]))
        self._buf_lev.append(h)
        if len(self._buf_point) >= _MAX_BUFFER:
            # Keep every other entry and halve the rate: a uniform thinning, bounded at any sample rate.
            self._buf_point = self._buf_point[::2]
            self._buf_drift = self._buf_drift[::2]
            self._buf_lev = self._buf_lev[::2]
            self._buf_stride *= 2

    def _fix_drift_factor(self) -> None:
        """Spread of the smoothed residuals, fixed when the second half of warm-up starts.

        For residuals with lag-one autocorrelation rho, an EWMA with per-sample decay d has
        (1 + rho d) / (1 - rho d) times the variance of independent ones (AR(1) model); what that
        leaves out (longer memory, heavy tails) the warm-up quantile of the drift evidence catches.
        """
        rho = np.clip(self._rho_xy / np.maximum(self._rho_xx, _EPS), 0.0, 0.99)
        d = math.exp(-math.log(2) * (self.clock.interval_s or 1.0) / self.tuning.drift_halflife_s)
        self._drift_factor = np.sqrt((1.0 + rho * d) / (1.0 - rho * d))
        self._factor_open = False

    def _finish_warmup(self) -> None:
        q = self.tuning.quantile
        if len(self._buf_point) * (1.0 - q) >= _QUANTILE_TAIL:
            self.q_point = float(np.quantile(self._buf_point, q))
            self.q_drift = float(np.quantile(self._buf_drift, q))
        median_h = float(np.median(self._buf_lev))
        self.novel_at = max(self.tuning.novel_leverage, _LEVERAGE_FACTOR * median_h)
        self._buf_point, self._buf_drift, self._buf_lev = [], [], []
        self.warm = True
        self._set_thresholds()

    def _set_thresholds(self) -> None:
        t = self.tuning
        self.thr_point = max(t.point_sigmas, t.margin * self.q_point)
        self.thr_drift = max(t.drift_sigmas, t.margin * self.q_drift)

    # --- state -------------------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Inconsistencies of a restored state (empty when sound)."""
        out: list[str] = []
        m, dim = len(self.metrics), self.dim
        shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
            "theta": (self._theta.shape, (m, dim)), "P": (self._P.shape, (dim, dim))}
        for attr in ("_res_var", "_res_n", "_floor", "_A", "_S1", "_S2", "_drift_factor", "_quantum"):
            shapes[attr] = (getattr(self, attr).shape, (m,))
        out += [f"{k} has shape {got}, expected {want}" for k, (got, want) in shapes.items() if got != want]
        if out:
            return out
        for name, arr in (("theta", self._theta), ("P", self._P), ("residual variance", self._res_var),
                          ("drift windows", self._A), ("drift weights", self._S1)):
            if not np.all(np.isfinite(arr)):
                out.append(f"{name} is not finite")
        if np.any(self._res_var < 0) or np.any(self._S1 < 0) or np.any(self._S2 < 0):
            out.append("a variance or weight is negative")
        if np.any(np.diag(self._P) <= 0):
            out.append("RLS covariance lost positive definiteness")
        out += self.clock.problems()
        if not (math.isfinite(self.thr_point) and self.thr_point > 0 and math.isfinite(self.thr_drift)
                and self.thr_drift > 0):
            out.append("thresholds not positive and finite")
        return out


def _aggregate(values: FloatArray) -> float:
    """The statistic thresholds learn: second largest channel (largest with fewer than three)."""
    if values.size == 0:
        return 0.0
    if values.size < 3:
        return float(values.max())
    return float(np.partition(values, -2)[-2])
