"""One asset's streaming detector: regime residuals -> point and drift scores -> learned thresholds.

Per operating sample (``catalog.is_operating``; defrost and stops are skipped, then ``settle_samples``
more so transients after a defrost do not count):

1. every metric is predicted from the regime drivers (:class:`RegimeBaseline`) and its residual is
   expressed in sigmas, ``z``;
2. *point evidence*: ``|z|`` per channel (sudden faults, e.g. a seized EEV);
3. *drift evidence*: each ``z`` is smoothed with a time-based EWMA (half-life ``drift_halflife_h``)
   and divided by its own healthy spread. Averaging shrinks noise,
   so a shift of a fraction of a sigma that persists for hours stands out: the slow-degradation
   detector (a one-sided CUSUM is the same idea with a reset; the EWMA keeps the sign per channel,
   which the classifier needs);
4. thresholds are ``threshold_margin`` times the ``threshold_quantile`` of the asset's own
   second-largest point and drift evidence, streamed with P² quantiles (``river.stats.Quantile``);
5. the machine score is the second strongest channel in threshold units (see
   :meth:`AssetDetector._machine_score`), 1 at the threshold.

Learning is frozen while the score is above the hysteresis level or an alert is active, because
learning on anomalous samples teaches the fault as normal (river-notes.md).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from river import stats

from edge_agent.detection.regime import FloatArray, RegimeBaseline
from edge_agent.detection.sensors import SensorWatch
from edge_agent.detection.settings import DetectionSettings
from edge_agent.detection.signatures import (
    Diagnosis,
    classify,
    diagnose,
    is_lone_lead,
    leads_a_signature,
    probabilities,
)
from edge_agent.detection.trend import TrendTracker, TtfEstimate
from pdm_common.catalog import FAILURE_CRITERIA, FAULTS_BY_KIND, METRICS, FaultCode, MetricSpec, is_operating
from pdm_common.contracts import AssetKind, SensorStatus, Telemetry

__all__ = ["Assessment", "AssetDetector", "Finding", "MetricDeviation", "plausible_range"]

_SCALE_HALFLIFE_SAMPLES = 10_080.0
"""Healthy spread of the smoothed residuals forgets over about a week of one-minute samples."""

_MAX_CONTRIBUTORS = 5

_MAX_LEVERAGE = 0.02
"""Leverage above 1/50: fewer than about fifty learned samples support this regime."""

_STEP_SHARE = 0.5
"""Half or more of a day's residual shift inside one hour is a step, not a sensor's ramp."""

_MIN_DEFROST_INTERVAL_MIN = 35.0
"""failure-physics.md A1: typical minimum interval of 35 min of compressor run between defrosts."""
_MAX_GAP_MIN = 5.0
"""A gap in telemetry counts for at most five minutes of running (we do not know what happened)."""

_VOTE_HALFLIFE_H = 12.0
"""Fault probabilities are averaged with a 12 h memory: the diagnosis follows the fault, not the noise."""


@dataclass(frozen=True, slots=True)
class MetricDeviation:
    """One channel's contribution: reading, baseline expectation and signed deviation in sigmas."""

    metric: str
    value: float | None
    expected: float | None
    deviation: float


@dataclass(frozen=True, slots=True)
class Finding:
    """What a machine alert says: diagnosis, contributing channels and time to failure."""

    diagnosis: Diagnosis | None
    contributors: tuple[MetricDeviation, ...]
    ttf: TtfEstimate | None


@dataclass(frozen=True, slots=True)
class Assessment:
    """The detector's verdict on one sample."""

    scored: bool
    warm: bool
    warmup_progress: float
    samples_seen: int
    score: float
    anomalous: bool
    healthy: bool
    sensors: dict[str, SensorStatus]


class AssetDetector:
    """Streaming detector of one asset; pure (time comes with the sample) and picklable.

    Args:
        kind: asset kind, which selects drivers, noise floors and fault signatures.
        settings: detection settings.
    """

    def __init__(self, kind: AssetKind, settings: DetectionSettings) -> None:
        self.kind = kind
        self.settings = settings
        self.watch = SensorWatch(
            stuck_samples=settings.stuck_samples,
            dropout_samples=settings.dropout_samples,
            spike_z=settings.spike_z,
            spike_count=settings.spike_count,
            spike_window=timedelta(hours=settings.spike_window_h),
            # Half a normal span beyond the normal range (or twice a failure criterion) is no reading
            # a working sensor gives (a x10 decimal slip, a wrong unit); catalog.METRICS holds the ranges.
            plausible={m.name: plausible_range(kind, m) for m in METRICS.get(kind, ())},
            # Set-points carry no measurement noise (catalog.METRICS sigma 0) and may legitimately
            # sit at a limit for hours (compressor at its boost maximum): never "stuck".
            noiseless=frozenset(m.name for m in METRICS.get(kind, ()) if m.noise_sigma == 0.0),
        )
        self.trend = TrendTracker()
        self._recent_every_s = 12 * 3600 / settings.recent_points
        self.recent: dict[str, deque[tuple[int, float]]] = {}
        self.reset()

    def reset(self) -> None:
        """Start learning from scratch (``reset_baseline``): the asset re-warms."""
        s = self.settings
        specs = {m.name: m for m in METRICS.get(self.kind, ())}
        drivers = s.drivers.get(self.kind, ())
        self.baseline = RegimeBaseline(
            drivers,
            # One-minute samples: 1440 a day (settings module docstring).
            halflife_samples=s.baseline_halflife_d * 1440.0,
            # Floor: sensor noise, or half a percent of the normal range for quantised setpoints and
            # very quiet channels, so a residual of one quantisation step is not "hundreds of sigmas".
            noise_floor={n: max(m.noise_sigma, 0.005 * (m.normal_high - m.normal_low)) for n, m in specs.items()},
            driver_scale={d: max(abs(specs[d].normal_low), abs(specs[d].normal_high)) for d in drivers if d in specs},
            typical={n: (m.normal_low + m.normal_high) / 2 for n, m in specs.items()},
        )
        self.watch.reset()
        self.trend.reset()
        self.q_point = stats.Quantile(s.threshold_quantile)
        self.q_drift = stats.Quantile(s.threshold_quantile)
        self.samples_seen = 0
        self.first_ts: datetime | None = None
        self._last_scored: datetime | None = None
        self._settle = 0
        self._run_start: datetime | None = None
        self._ew: FloatArray = np.zeros(0)
        self._ew_var: FloatArray = np.zeros(0)
        self._ew_n = 0
        self._y: FloatArray = np.zeros(0)
        self._pred: FloatArray = np.zeros(0)
        self._z: FloatArray = np.zeros(0)
        self._valid = np.zeros(0, dtype=bool)
        self._drift_candidate: tuple[str, int] | None = None
        self._faulty: set[str] = set()
        self._run_min = 0.0
        self._frost_run_min = 0.0
        self._frost_interval_min: float | None = None
        self._in_defrost = False
        self._last_ts: datetime | None = None
        self._votes: dict[str, float] = {}
        self._vote_at: datetime | None = None
        self.context: dict[str, float] = {}
        self.last_score = 0.0

    # --- thresholds ------------------------------------------------------------------------------
    def _thresholds(self) -> tuple[float, float]:
        m = self.settings.threshold_margin
        qp = self.q_point.get() or 0.0
        qd = self.q_drift.get() or 0.0
        return m * max(qp, 1.0), m * max(qd, 0.5)

    def warmup_progress(self, now: datetime) -> float:
        """Share of the warm-up done, 0..1 (samples and hours both count)."""
        s = self.settings
        by_n = self.samples_seen / s.warmup_samples
        hours = 0.0 if self.first_ts is None else (now - self.first_ts).total_seconds() / 3600
        by_h = 1.0 if s.warmup_h == 0 else hours / s.warmup_h
        return round(min(1.0, by_n, by_h), 3)

    # --- per sample ------------------------------------------------------------------------------
    def observe(self, tel: Telemetry, now: datetime, *, alert_active: bool) -> Assessment:
        """Score one sample and learn from it if it looks healthy.

        Args:
            tel: the validated sample.
            now: the sample's time (its ``ts``); the detector never reads a clock.
            alert_active: a machine alert is suspect or open, so learning stays frozen.
        """
        s = self.settings
        if self.first_ts is None:
            self.first_ts = now
        self._remember(tel, now)
        self._track_frost(tel, now)
        if not is_operating(self.kind, tel.metrics):
            self._settle, self._run_start = s.settle_samples, None
            return self._idle(now)
        if self._run_start is None:
            self._run_start = now
        if self._settle > 0:
            self._settle -= 1
            return self._idle(now)
        candidates = self.watch.observe(
            {k: v for k, v in tel.metrics.items() if not isinstance(v, bool)},
            now,
            learning=not alert_active and self.last_score < s.hysteresis,
        )
        numeric = tel.numeric()
        drivers = self.baseline.drivers
        self.context = {d: numeric[d] for d in drivers if d in numeric}
        status = self.watch.statuses(now)
        if candidates & set(drivers) or any(status.get(d, SensorStatus.OK) is not SensorStatus.OK for d in drivers):
            # Without a trustworthy regime there is no baseline to compare with: hold the machine
            # score (and learning) until the driver is back; the sensor track reports the driver.
            return self._idle(now)
        self._run_min = (now - self._run_start).total_seconds() / 60
        x = self.baseline.features(self.context, self._run_min, self._frost_load())
        y = self.baseline.vectorise({k: v for k, v in numeric.items() if k not in drivers})
        pred = self.baseline.predict(x)
        z = (y - pred) / self.baseline.sigma()
        y_raw, pred_raw = self.baseline.to_raw(y), self.baseline.to_raw(pred)
        names = self.baseline.metrics
        self._grow(len(names))
        half_warm = self.samples_seen >= s.warmup_samples // 2
        novel = half_warm and self._novel_regime(x)
        warm = half_warm and self.warmup_progress(now) >= 1.0 and not novel
        if not warm:
            candidates = set()
        finite = ~np.isnan(z)
        st = [status.get(n, SensorStatus.OK) for n in names]
        ok = np.array([v is SensorStatus.OK and n not in candidates for n, v in zip(names, st, strict=True)],
                      dtype=bool)
        drifting = np.array([v is SensorStatus.DRIFT for v in st], dtype=bool)
        self._forget_sensor_episodes(names, st)
        valid = finite & ok
        self._update_drift(z, finite & (ok | drifting), now, half_warm and not novel)
        thr_p, thr_d = self._thresholds()
        d_norm = self._drift_sigmas()
        point = _second(np.abs(z[valid]))
        drift = _second(np.abs(d_norm[valid]))
        score = (
            self._machine_score(z / thr_p, d_norm / thr_d, valid, drifting, alert_active=alert_active)
            if warm
            else 0.0
        )
        # The baseline learns during warm-up and, afterwards, only regimes it has not seen: a fault
        # that develops over days would otherwise be learned as the new normal (river-notes.md; the
        # benchmark showed a 50 % flow loss absorbed by a baseline that kept learning).
        warming = not half_warm or self.warmup_progress(now) < 1.0
        learn = (not alert_active and (warming or (novel and not s.learn_healthy_after_warmup))) or (
            s.learn_healthy_after_warmup and not alert_active and score < s.hysteresis
        )
        self.baseline.learn(x, y, valid & learn)
        if warm and score >= s.hysteresis:
            self._vote(z / thr_p, d_norm / thr_d, valid, now)
        if half_warm and not novel and not alert_active and score < s.hysteresis:
            # Thresholds learn from healthy samples only. With margin x quantile above the hysteresis
            # level the truncation sits beyond the quantile, so the estimate neither creeps up with a
            # slowly developing fault nor collapses (docs/detection.md, "thresholds").
            self.q_point.update(point)
            self.q_drift.update(drift)
        if half_warm and learn and not novel:
            self._learn_drift_scale(valid)
        if half_warm:
            r = y_raw - pred_raw
            keep = valid | drifting
            self.trend.add(int(now.timestamp() // 3600), {n: float(r[i]) for i, n in enumerate(names) if keep[i]},
                           numeric)
        if learn:
            self.samples_seen += 1
            if self.samples_seen == s.warmup_samples // 2:
                self.baseline.restart_scale()
        self._y, self._pred, self._z, self._valid = y_raw, pred_raw, z, valid
        self.last_score = score
        return Assessment(
            scored=warm,
            warm=warm,
            warmup_progress=self.warmup_progress(now),
            samples_seen=self.samples_seen,
            score=round(score, 4),
            anomalous=warm and score >= 1.0,
            healthy=score < s.hysteresis,
            sensors=status,
        )

    def _track_frost(self, tel: Telemetry, now: datetime) -> None:
        """Follow defrost cycles: running minutes since the last defrost and the last interval.

        Frost builds while the compressor runs and a defrost starts when it is full, so the share of
        the last interval already run estimates the frost load (failure-physics.md A1: at most one
        defrost per 35 min of running).
        """
        last, self._last_ts = self._last_ts, now
        defrost = tel.metrics.get("defrost") is True
        if defrost and not self._in_defrost:
            self._frost_interval_min = max(self._frost_run_min, _MIN_DEFROST_INTERVAL_MIN)
        elif not defrost and self._in_defrost:
            self._frost_run_min = 0.0
        self._in_defrost = defrost
        if last is not None and is_operating(self.kind, tel.metrics):
            self._frost_run_min += min((now - last).total_seconds() / 60, _MAX_GAP_MIN)

    def _frost_load(self) -> float:
        if self._frost_interval_min is None:
            return 0.0
        return min(1.0, self._frost_run_min / self._frost_interval_min)

    def _forget_sensor_episodes(self, names: list[str], st: list[SensorStatus]) -> None:
        """Zero the smoothed residual of a channel whose sensor fault just ended.

        While a channel is faulty its readings are the sensor's, not the machine's; a wrong scale
        (x10) leaves a smoothed residual of hundreds of sigmas that would take days to decay and,
        on a lone-lead channel (seal temperature), open a machine alert after the sensor was fixed.
        """
        faulty = {n for n, v in zip(names, st, strict=True) if v is not SensorStatus.OK}
        for k, n in enumerate(names):
            if n in self._faulty and n not in faulty:
                self._ew[k] = 0.0
        self._faulty = faulty

    def _drift_sigmas(self) -> FloatArray:
        """Smoothed residuals divided by their healthy spread (floored: see _MIN_DRIFT_SD)."""
        sd = np.sqrt(np.maximum(self._ew_var, self.settings.min_drift_sd**2))
        out: FloatArray = self._ew / sd
        return out

    def _novel_regime(self, x: FloatArray) -> bool:
        """True when the regression would extrapolate: the regime lies outside what it has learned.

        The statistical leverage ``x' P x`` of recursive least squares is about 1/n for a regime
        seen n times and large for one never seen (the first night of a cold spell, a start at
        -25 °C, a new production rate). Such samples are learned, when no alert is active, but not
        scored: a new regime is not an anomaly. As they are learned the leverage falls and scoring
        resumes (issue: "a cold spell or a production change is not an anomaly").
        """
        return self.baseline.leverage(x) > _MAX_LEVERAGE

    def _vote(self, point_ev: FloatArray, drift_ev: FloatArray, valid: npt.NDArray[np.bool_], now: datetime) -> None:
        """Accumulate fault probabilities over the anomalous samples, so the diagnosis is steady."""
        evidence = {
            n: float(drift_ev[i] if abs(drift_ev[i]) >= abs(point_ev[i]) else point_ev[i])
            for i, n in enumerate(self.baseline.metrics)
            if valid[i]
        }
        probs = probabilities(self.kind, evidence)
        last, self._vote_at = self._vote_at, now
        keep = 1.0
        if last is not None:
            keep = math.exp(-math.log(2) * (now - last).total_seconds() / 3600 / _VOTE_HALFLIFE_H)
        for code in self._votes.keys() | probs.keys():
            self._votes[code] = keep * self._votes.get(code, 0.0) + probs.get(code, 0.0)

    def _idle(self, now: datetime) -> Assessment:
        return Assessment(
            scored=False,
            warm=self.warmup_progress(now) >= 1.0,
            warmup_progress=self.warmup_progress(now),
            samples_seen=self.samples_seen,
            score=self.last_score,
            anomalous=False,
            healthy=self.last_score < self.settings.hysteresis,
            sensors=self.watch.statuses(now),
        )

    def _grow(self, k: int) -> None:
        n = len(self._ew)
        if k > n:
            self._ew = np.append(self._ew, np.zeros(k - n))
            self._ew_var = np.append(self._ew_var, np.zeros(k - n))

    def _update_drift(self, z: FloatArray, mask: npt.NDArray[np.bool_], now: datetime, half_warm: bool) -> None:
        last, self._last_scored = self._last_scored, now
        if not half_warm or last is None:
            return
        dt_h = max((now - last).total_seconds(), 0.0) / 3600
        alpha = 1.0 - math.exp(-math.log(2) * dt_h / self.settings.drift_halflife_h)
        self._ew[mask] = (1.0 - alpha) * self._ew[mask] + alpha * z[mask]

    def _learn_drift_scale(self, valid: npt.NDArray[np.bool_]) -> None:
        self._ew_n += 1
        a = max(1.0 / self._ew_n, 1.0 - math.exp(-math.log(2) / _SCALE_HALFLIFE_SAMPLES))
        self._ew_var[valid] = (1.0 - a) * self._ew_var[valid] + a * self._ew[valid] ** 2

    def _machine_score(
        self,
        point_ev: FloatArray,
        drift_ev: FloatArray,
        valid: npt.NDArray[np.bool_],
        drifting: npt.NDArray[np.bool_],
        *,
        alert_active: bool,
    ) -> float:
        """Score of the machine, 1 at the threshold.

        A machine fault moves several coupled channels, a broken sensor one (failure-physics.md A3).
        When the second strongest channel moves at least ``sensor_drift_ratio`` as much as the
        strongest, the strongest channel's evidence is the score. When one channel moves alone, the
        score is the second channel's evidence (one channel alone is not a machine alarm), with two
        exceptions: a channel that is a fault's
        lone early sign (``signatures.LONE_LEADS``) moving that fault's way, and a *step* (not a
        ramp) of the channel that leads a fault's signature. A channel that moves alone, clearly
        (``sensor_drift_min``) and for ``debounce_m`` samples in a row is reported as drifting and
        leaves the score. Evidence is a channel's point or drift deviation in threshold units.
        """
        s = self.settings
        names = self.baseline.metrics
        ev = np.maximum(np.abs(point_ev), np.abs(drift_ev))
        for k in np.flatnonzero(drifting):
            if ev[k] < s.hysteresis:
                self.watch.set_drift(names[k], False)
        idx = np.flatnonzero(valid)
        if len(idx) == 0:
            return 0.0
        order = idx[np.argsort(ev[idx])[::-1]]
        i = int(order[0])
        top = float(ev[i])
        second = float(ev[order[1]]) if len(order) > 1 else 0.0
        if top < s.hysteresis:
            self._drift_candidate = None
            return second
        signed = drift_ev[i] if abs(drift_ev[i]) >= abs(point_ev[i]) else point_ev[i]
        if is_lone_lead(self.kind, names[i], signed) or (
            leads_a_signature(self.kind, names[i], signed) and self.trend.step_share(names[i]) >= _STEP_SHARE
        ):
            self._drift_candidate = None
            return top
        if second >= s.sensor_drift_ratio * top:
            # Coupled channels move together: the machine (failure-physics.md A3).
            self._drift_candidate = None
            return top
        if top >= s.sensor_drift_min and not alert_active:
            prev = self._drift_candidate
            count = prev[1] + 1 if prev is not None and prev[0] == names[i] else 1
            self._drift_candidate = (names[i], count)
            if count >= s.debounce_m:
                self.watch.set_drift(names[i], True)
        else:
            self._drift_candidate = None
        return second

    def _remember(self, tel: Telemetry, now: datetime) -> None:
        ts_ms = int(now.timestamp() * 1000)
        for name, v in tel.numeric().items():
            buf = self.recent.get(name)
            if buf is None:
                buf = self.recent[name] = deque(maxlen=self.settings.recent_points)
            if not buf or ts_ms - buf[-1][0] >= self._recent_every_s * 1000:
                buf.append((ts_ms, v))

    # --- explanation -----------------------------------------------------------------------------
    def finding(self) -> Finding:
        """Diagnosis, contributors and time to failure from the latest scored sample."""
        thr_p, thr_d = self._thresholds()
        d_norm = self._drift_sigmas()
        evidence: dict[str, float] = {}
        deviations: list[tuple[float, MetricDeviation]] = []
        for i, name in enumerate(self.baseline.metrics):
            if i >= len(self._valid) or not self._valid[i]:
                continue
            point, drift = float(self._z[i]) / thr_p, float(d_norm[i]) / thr_d
            use_drift = abs(drift) >= abs(point)
            ev = drift if use_drift else point
            evidence[name] = ev
            sigmas = float(d_norm[i]) if use_drift else float(self._z[i])
            deviations.append((abs(ev), MetricDeviation(
                name, _finite(self._y[i]), _finite(self._pred[i]), round(sigmas, 2))))
        deviations.sort(key=lambda t: -t[0])
        top = deviations[0][0] if deviations else 0.0
        contributors = tuple(d for mag, d in deviations[:_MAX_CONTRIBUTORS] if mag >= 0.3 * top and mag > 0)
        diagnosis = diagnose(self._votes) if self._votes else classify(self.kind, evidence)
        ttf = None
        if diagnosis is not None:
            ttf = self.trend.estimate(FAILURE_CRITERIA[FaultCode(diagnosis.code)])
        return Finding(diagnosis, contributors, ttf)

    def last_value(self, name: str) -> float | None:
        """The latest scored reading of ``name`` (None if absent)."""
        i = self.baseline.index(name)
        return None if i is None or i >= len(self._y) else _finite(self._y[i])

    def expected(self, name: str) -> float | None:
        """The baseline's expectation for ``name`` at the latest scored sample."""
        i = self.baseline.index(name)
        return None if i is None or i >= len(self._pred) else _finite(self._pred[i])

    def deviation(self, name: str) -> float:
        """Signed deviation of ``name`` in sigmas at the latest scored sample (0 when unknown)."""
        i = self.baseline.index(name)
        if i is None or i >= len(self._z) or math.isnan(self._z[i]):
            return 0.0
        return round(float(self._z[i]), 2)

    def restart_drift(self) -> None:
        """Zero the smoothed residuals after a service visit: the pre-service deviation is history.

        If the fault is still there the residuals build up again and the alert reopens.
        """
        self._ew[:] = 0.0
        self._votes.clear()
        self.last_score = 0.0

    def silence(self) -> None:
        """The asset stopped reporting: every channel counts as dropped out."""
        self.watch.silence()


def plausible_range(kind: AssetKind, spec: MetricSpec) -> tuple[float, float]:
    """Readings outside this range come from a broken sensor, not from the machine.

    >>> from pdm_common.catalog import METRICS
    >>> vibration = next(m for m in METRICS[AssetKind.PUMP] if m.name == "vibration_mm_s")
    >>> tuple(round(x, 2) for x in plausible_range(AssetKind.PUMP, vibration))  # zone D is 4.5
    (-0.65, 9.0)
    """
    half_span = (spec.normal_high - spec.normal_low) / 2
    low, high = spec.normal_low - half_span, spec.normal_high + half_span
    # A failing machine legitimately reaches its failure criterion and goes past it (a bearing in
    # ISO 10816 zone D reads 4.5 mm/s and more, far above the normal range): those readings are the
    # fault, not a broken sensor. Twice the criterion still catches a x10 decimal slip of a normal value.
    for code in FAULTS_BY_KIND.get(kind, ()):
        criterion = FAILURE_CRITERIA[code]
        if criterion.metric != spec.name:
            continue
        if criterion.direction == "above":
            high = max(high, 2.0 * criterion.threshold)
        else:
            low = min(low, criterion.threshold - half_span)
    return low, high


def _second(values: FloatArray) -> float:
    """The second largest value (0 with fewer than two): the statistic the thresholds learn."""
    if values.size < 2:
        return 0.0
    return float(np.partition(values, -2)[-2])


def _finite(v: float) -> float | None:
    return None if math.isnan(v) else round(float(v), 3)
