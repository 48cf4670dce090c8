"""One asset's detector: the shell around a model that does everything that does not depend on it.

Per sample (time passed in, epoch seconds):

1. **time**: a sample at or before the asset's last is counted and skipped (never a crash); ten in a
   row that move forward among themselves are a clock stepped back, accepted as a new timeline; a
   jump beyond ``silence_s`` (or five typical intervals) is a gap, after which smoothing windows,
   sensor runs and start-up settling begin afresh;
2. **channels**: at most ``max_channels`` names per asset, new ones beyond are refused and counted;
3. **operating**: the kind's operating condition; ``settle_min`` after a start, a defrost or a gap
   are skipped (transients);
4. **sensors**: stuck, dropout, spike and implausible checks on the declared physical sensors
   (:class:`~edge_agent.detection.sensors.SensorWatch`); statuses are computed once per sample; a
   faulty channel leaves score and learning, a faulty regime driver holds the score;
5. **model**: the configured :class:`~edge_agent.detection.protocol.Detector` scores, then learns;
6. **machine or sensor**: with per-channel evidence, a machine fault moves several coupled channels
   and a broken sensor one (failure-physics.md A3), see :meth:`AssetDetector._machine_score`;
7. **explanation**: fault votes from the kind's signatures, hourly trend for the time to failure, and
   the recent readings for the ticket plot.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edge_agent.detection.models import make_detector
from edge_agent.detection.plan import KindPlan
from edge_agent.detection.protocol import BoolArray, Detector, Evidence, FloatArray, Sample
from edge_agent.detection.sensors import SensorTuning, SensorWatch
from edge_agent.detection.series import RecentSeries
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
from edge_agent.detection.warmup import WarmupClock
from pdm_common.contracts import SensorStatus

__all__ = ["Assessment", "AssetDetector", "Finding", "MetricDeviation"]

MetricValue = float | bool | None

_MAX_CONTRIBUTORS = 5

_STEP_SHARE = 0.5
"""Half or more of a day's residual shift inside one hour is a step, not a sensor's ramp."""

_MIN_DEFROST_INTERVAL_S = 35 * 60.0
"""failure-physics.md A1: typical minimum interval of 35 min of compressor run between defrosts."""

_VOTE_HALFLIFE_S = 12 * 3600.0
"""Fault probabilities are averaged with a 12 h memory: the diagnosis follows the fault, not the noise."""

_REANCHOR_SAMPLES = 10
"""Samples in a row older than the asset's last, moving forward among themselves, that mean the
asset's clock was stepped back (NTP correcting a PLC): the new timeline is accepted. Fewer are a
duplicate or a short replay and are skipped. A sample whose ``seq`` is not past the newest one's is
a replay whatever its length (a broker restarted from its persistence file redelivers hundreds per
asset): it never counts towards a step, since a stepped clock leaves the asset's counter running."""

_COUPLED_MIN = 3
"""With fewer measured channels than this there is no "one channel alone" to tell a sensor from the machine."""

_OK = SensorStatus.OK


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
    """The detector's verdict on one sample.

    ``skipped`` names why a sample was not used (``stale``: older than the asset's last;
    ``duplicate``: the same time again); such a sample changes nothing.
    """

    scored: bool
    warm: bool
    warmup_progress: float
    samples_seen: int
    score: float
    anomalous: bool
    healthy: bool
    sensors: dict[str, SensorStatus]
    skipped: str | None = None
    gap: bool = False
    clock_step: bool = False
    refused_channels: int = 0


@dataclass(frozen=True, slots=True)
class _Tuning:
    settle_s: float
    hysteresis: float
    drift_ratio: float
    drift_min: float
    debounce_m: int
    silence_s: float
    max_channels: int

    @classmethod
    def of(cls, s: DetectionSettings) -> _Tuning:
        return cls(s.settle_min * 60.0, s.hysteresis, s.sensor_drift_ratio, s.sensor_drift_min, s.debounce_m,
                   s.silence_s, s.max_channels)


class AssetDetector:
    """Streaming detector of one asset; pure (time comes with the sample) and picklable.

    Args:
        plan: the asset's kind (channels, operating condition, faults).
        settings: detection settings.
        detector: name of the model (``edge_agent.detection.models.DETECTORS``).
        seed: the model's seed (same seed, same scores).
    """

    _last_seq: int | None = None  # class default: detectors pickled before it existed have none

    def __init__(self, plan: KindPlan, settings: DetectionSettings, *, detector: str = "regime", seed: int = 0) -> None:
        self.plan = plan
        self.detector_name = detector
        self.seed = seed
        self.tuning = _Tuning.of(settings)
        self.watch = SensorWatch(plan, _sensor_tuning(settings))
        self.series = RecentSeries(points=settings.recent_points, window_s=settings.recent_h * 3600.0,
                                   max_channels=settings.max_channels)
        self.trend = TrendTracker()
        self.model: Detector = make_detector(detector, plan, settings, seed=seed)
        # Kept as plain data (a pydantic model in a checkpoint would widen the loader's allowlist).
        self._settings = _plain(settings)
        self.reset()

    # --- configuration ------------------------------------------------------------------------------
    def retune(self, settings: DetectionSettings, plan: KindPlan | None = None) -> bool:
        """Apply new settings (and the kind's new plan) keeping what was learned.

        Returns:
            False when the new plan does not fit what the model learned (other regime drivers): the
            asset was reset and re-warms.
        """
        self.tuning = _Tuning.of(settings)
        self._settings = _plain(settings)
        if plan is not None:
            self.plan = plan
        self.watch.retune(self.plan, _sensor_tuning(settings))
        if not self.model.retune(settings, plan):
            self.reset()
            return False
        return True

    def reset(self) -> None:
        """Start learning from scratch (``reset_baseline``): the asset re-warms."""
        self.model = make_detector(self.detector_name, self.plan, DetectionSettings.model_validate(self._settings),
                                   seed=self.seed)
        self.watch.reset()
        self.trend.reset()
        self.series.reset()
        self.clock = WarmupClock()
        self.channels: set[str] = set()
        self.samples_seen = 0
        self.last_score = 0.0
        self.context: dict[str, float] = {}
        self.sensors: dict[str, SensorStatus] = {}
        self._last_t: float | None = None
        self._last_seq: int | None = None
        self._back_run = 0
        self._back_last: float | None = None
        self._gap_pending = False
        self._run_start: float | None = None
        self._frost_run_s = 0.0
        self._frost_interval_s: float | None = None
        self._in_defrost = False
        self._faulty: frozenset[str] = frozenset()
        self._drift_candidate: tuple[str, int] | None = None
        self._votes: dict[str, float] = {}
        self._vote_at: float | None = None
        self._last_ev: Evidence | None = None

    # --- per sample ----------------------------------------------------------------------------------
    def observe(self, metrics: Mapping[str, MetricValue], t: float, *, alert_active: bool,
                seq: int | None = None) -> Assessment:
        """Judge one sample and learn from it if it looks healthy.

        Args:
            metrics: the sample's metrics (numbers, operating flags, None for an absent sensor).
            t: the sample's time, epoch seconds; the detector never reads a clock.
            alert_active: a machine alert is suspect or open, so learning stays frozen.
            seq: the asset's sample counter (``Telemetry.seq``), when it has one: tells a replay
                of samples already seen from a clock that stepped back.
        """
        gap, clock_step = self._gap_pending, False
        last = self._last_t
        if last is not None:
            if t <= last:
                if seq is not None and self._last_seq is not None and seq <= self._last_seq:
                    return self._skip("duplicate" if t == last else "stale")
                step = self._stepped_back(t)
                if step is None:
                    return self._skip("duplicate" if t == last else "stale")
                gap = clock_step = True
            else:
                self._back_run, self._back_last = 0, None
                if t - last > self.gap_after_s():
                    gap = True
        self._gap_pending = False
        self._last_t, self._last_seq = t, seq
        dt = self.clock.tick(t, gap=gap)
        readings, refused = self._admit(metrics)
        numeric = {k: v for k, v in readings.items() if v is not None}
        self.series.add(t, numeric)
        operating = self.plan.operating(metrics)
        self._track_frost(metrics, dt, operating=operating)
        if gap:
            self._run_start = None
        if not operating:
            self._run_start = None
            return self._idle(t, gap=gap, clock_step=clock_step, refused=refused)
        if self._run_start is None:
            self._run_start = t
        if t - self._run_start < self.tuning.settle_s:
            return self._idle(t, gap=gap, clock_step=clock_step, refused=refused)
        hysteresis = self.tuning.hysteresis
        candidates = self.watch.observe(readings, t, learning=not alert_active and self.last_score < hysteresis,
                                        gap=gap)
        status = self.sensors = self.watch.statuses(t)
        drivers = self.plan.drivers
        self.context = {d: numeric[d] for d in drivers if d in numeric}
        faulty = frozenset(n for n, st in status.items() if st is not _OK)
        if any(d in candidates or d in faulty for d in drivers):
            # Without a trustworthy regime there is no baseline to compare with: hold the machine score
            # (and learning) until the driver is back; the sensor track reports the driver.
            return self._idle(t, gap=gap, clock_step=clock_step, refused=refused)
        warm = self.model.warmup_progress(t) >= 1.0
        excluded = faulty | candidates if warm else faulty
        fresh, self._faulty = self._faulty - faulty, faulty
        sample = Sample(t=t, values=numeric, excluded=excluded, run_s=t - self._run_start,
                        frost=self._frost_load(), gap=gap, fresh=fresh)
        scored = self.model.score_one(sample)
        ev = scored.evidence
        score = 0.0
        if scored.scored and warm:
            score = (self._machine_score(ev, alert_active=alert_active) if ev is not None else scored.value)
        self.model.learn_one(sample, scored, allowed=not alert_active)
        self.samples_seen += 1
        if ev is not None:
            self._last_ev = ev
            if warm:
                self.trend.add(int(t // 3600), ev.names, ev.residual(), ev.value, ev.valid)
                if score >= hysteresis:
                    self._vote(ev, t)
        self.last_score = score
        return Assessment(
            scored=scored.scored and warm,
            warm=warm,
            warmup_progress=self.model.warmup_progress(t),
            samples_seen=self.samples_seen,
            score=round(score, 4),
            anomalous=scored.scored and warm and score >= 1.0,
            healthy=score < hysteresis,
            sensors=status,
            gap=gap,
            clock_step=clock_step,
            refused_channels=refused,
        )

    def gap_after_s(self) -> float:
        """Silence longer than this is a gap: ``silence_s``, or five typical intervals for a slow stream."""
        return self.clock.gap_after_s(self.tuning.silence_s)

    def _stepped_back(self, t: float) -> float | None:
        """Count a sample at or before the last; returns ``t`` once the clock evidently stepped back."""
        if self._back_last is not None and t > self._back_last:
            self._back_run += 1
        else:
            self._back_run = 1
        self._back_last = t
        if self._back_run < _REANCHOR_SAMPLES:
            return None
        self._back_run, self._back_last = 0, None
        return t

    def _skip(self, reason: str) -> Assessment:
        return Assessment(
            scored=False, warm=self.model.warmup_progress(self._last_t or 0.0) >= 1.0,
            warmup_progress=self.model.warmup_progress(self._last_t or 0.0), samples_seen=self.samples_seen,
            score=self.last_score, anomalous=False, healthy=self.last_score < self.tuning.hysteresis,
            sensors=self.sensors, skipped=reason,
        )

    def _admit(self, metrics: Mapping[str, MetricValue]) -> tuple[dict[str, float | None], int]:
        """Numeric and absent channels of the sample, refusing new names beyond ``max_channels``."""
        out: dict[str, float | None] = {}
        refused = 0
        known = self.channels
        for name, v in metrics.items():
            if isinstance(v, bool):
                continue
            if name not in known:
                if len(known) >= self.tuning.max_channels:
                    refused += 1
                    continue
                known.add(name)
            out[name] = v
        return out, refused

    def _idle(self, t: float, *, gap: bool, clock_step: bool, refused: int) -> Assessment:
        progress = self.model.warmup_progress(t)
        return Assessment(
            scored=False, warm=progress >= 1.0, warmup_progress=progress, samples_seen=self.samples_seen,
            score=self.last_score, anomalous=False, healthy=self.last_score < self.tuning.hysteresis,
            sensors=self.sensors, gap=gap, clock_step=clock_step, refused_channels=refused,
        )

    def _track_frost(self, metrics: Mapping[str, MetricValue], dt: float, *, operating: bool) -> None:
        """Follow defrost cycles: running time since the last defrost and the last interval.

        Frost builds while the compressor runs and a defrost starts when it is full, so the share of
        the last interval already run estimates the frost load (failure-physics.md A1: at most one
        defrost per 35 min of running).
        """
        if not self.plan.frost:
            return
        defrost = metrics.get("defrost") is True
        if defrost and not self._in_defrost:
            self._frost_interval_s = max(self._frost_run_s, _MIN_DEFROST_INTERVAL_S)
        elif not defrost and self._in_defrost:
            self._frost_run_s = 0.0
        self._in_defrost = defrost
        if operating:
            self._frost_run_s += dt

    def _frost_load(self) -> float:
        if self._frost_interval_s is None:
            return 0.0
        return min(1.0, self._frost_run_s / self._frost_interval_s)

    def _vote(self, ev: Evidence, t: float) -> None:
        """Accumulate fault probabilities over the anomalous samples, so the diagnosis is steady."""
        probs = probabilities(self.plan, _signed(ev))
        last, self._vote_at = self._vote_at, t
        keep = 1.0 if last is None else math.exp(-math.log(2) * max(t - last, 0.0) / _VOTE_HALFLIFE_S)
        for code in self._votes.keys() | probs.keys():
            self._votes[code] = keep * self._votes.get(code, 0.0) + probs.get(code, 0.0)

    def _machine_score(self, ev: Evidence, *, alert_active: bool) -> float:
        """Score of the machine, 1 at the threshold.

        A machine fault moves several coupled channels, a broken sensor one (failure-physics.md A3).
        When the second strongest channel moves at least ``sensor_drift_ratio`` as much as the
        strongest, the strongest channel's evidence is the score. When one channel moves alone, the
        score is the second channel's evidence (one channel alone is not a machine alarm), with two
        exceptions: a channel that is a fault's lone early sign (``Profile.lone_leads``) moving that
        fault's way, and a *step* (not a ramp) of the channel that leads a fault's signature. A
        physical sensor that moves alone, clearly (``sensor_drift_min``) and for ``debounce_m``
        samples in a row is reported as drifting and leaves the score. With fewer than three
        channels there is no such comparison: the strongest channel is the score.
        """
        s = self.tuning
        names = ev.names
        mag = np.maximum(np.abs(ev.point), np.abs(ev.drift))
        for name, st in self.sensors.items():
            if st is SensorStatus.DRIFT and name in ev.names:
                k = names.index(name)
                if mag[k] < s.hysteresis:
                    self.watch.set_drift(name, False)
        idx = np.flatnonzero(ev.valid)
        if len(idx) == 0:
            return 0.0
        order = idx[np.argsort(mag[idx])[::-1]]
        i = int(order[0])
        top = float(mag[i])
        if len(idx) < _COUPLED_MIN:
            return top
        second = float(mag[order[1]])
        if top < s.hysteresis:
            self._drift_candidate = None
            return second
        name = names[i]
        signed = float(ev.drift[i] if abs(ev.drift[i]) >= abs(ev.point[i]) else ev.point[i])
        if is_lone_lead(self.plan, name, signed) or (
            leads_a_signature(self.plan, name, signed) and self.trend.step_share(name) >= _STEP_SHARE
        ):
            self._drift_candidate = None
            return top
        if second >= s.drift_ratio * top:
            # Coupled channels move together: the machine (failure-physics.md A3).
            self._drift_candidate = None
            return top
        if top >= s.drift_min and not alert_active and self.watch.watched(name):
            prev = self._drift_candidate
            count = prev[1] + 1 if prev is not None and prev[0] == name else 1
            self._drift_candidate = (name, count)
            if count >= s.debounce_m:
                self.watch.set_drift(name, True)
        else:
            self._drift_candidate = None
        return second

    # --- explanation ---------------------------------------------------------------------------------
    def finding(self) -> Finding:
        """Diagnosis, contributors and time to failure from the latest scored sample."""
        ev = self._last_ev
        if ev is None:
            return Finding(None, (), None)
        signed = _signed(ev)
        sigmas = ev.sigmas()
        deviations: list[tuple[float, MetricDeviation]] = []
        for i, name in enumerate(ev.names):
            if name not in signed:
                continue
            deviations.append((abs(signed[name]), MetricDeviation(
                name, _finite(ev.value[i]), _finite(ev.expected[i]), round(float(sigmas[i]), 2))))
        deviations.sort(key=lambda d: -d[0])
        top = deviations[0][0] if deviations else 0.0
        contributors = tuple(d for mag, d in deviations[:_MAX_CONTRIBUTORS] if mag >= 0.3 * top and mag > 0)
        diagnosis = diagnose(self._votes) if self._votes else classify(self.plan, signed)
        ttf = None
        if diagnosis is not None and diagnosis.code in self.plan.criteria:
            ttf = self.trend.estimate(self.plan.criteria[diagnosis.code])
        return Finding(diagnosis, contributors, ttf)

    def _at(self, name: str) -> int | None:
        ev = self._last_ev
        if ev is None or name not in ev.names:
            return None
        return list(ev.names).index(name)

    def last_value(self, name: str) -> float | None:
        """The latest scored reading of ``name`` (None if absent)."""
        i = self._at(name)
        return None if i is None or self._last_ev is None else _finite(self._last_ev.value[i])

    def expected(self, name: str) -> float | None:
        """The model's expectation for ``name`` at the latest scored sample."""
        i = self._at(name)
        return None if i is None or self._last_ev is None else _finite(self._last_ev.expected[i])

    def deviation(self, name: str) -> float:
        """Signed deviation of ``name`` in sigmas at the latest scored sample (0 when unknown)."""
        i = self._at(name)
        if i is None or self._last_ev is None:
            return 0.0
        v = float(self._last_ev.sigmas()[i])
        return round(v, 2) if math.isfinite(v) else 0.0

    def recent(self, name: str) -> list[tuple[int, float]]:
        """Recent ``(epoch_ms, value)`` of ``name`` for the ticket plot."""
        return self.series.series(name)

    def warmup_progress(self, t: float) -> float:
        """Share of the warm-up done, 0..1."""
        return self.model.warmup_progress(t)

    def warmup_note(self) -> str | None:
        """Why the asset is not scored yet (for health), or None once warm."""
        return self.model.warmup_note()

    # --- commands and lifecycle --------------------------------------------------------------------
    def restart_drift(self) -> None:
        """Zero the accumulated deviation after a service visit: the pre-service deviation is history.

        If the fault is still there the residuals build up again and the alert reopens.
        """
        self.model.restart()
        self._votes.clear()
        self.last_score = 0.0

    def silence(self) -> None:
        """The asset stopped reporting: the next sample starts every run and window afresh.

        Silence is not a sensor fault (connectivity is the gateway status's job): no channel is
        marked dropped out for it.
        """
        self.watch.restart()
        self._gap_pending = True

    def problems(self) -> list[str]:
        """What is wrong with a restored state (empty when sound); the caller re-warms the asset."""
        out = self.model.problems() + self.watch.problems() + self.trend.problems() + self.clock.problems()
        if self._last_t is not None and not math.isfinite(self._last_t):
            out.append("last sample time is not finite")
        if not (self.samples_seen >= 0 and math.isfinite(self.last_score)):
            out.append("sample count or last score invalid")
        if not 0.0 <= self.model.warmup_progress(self._last_t or 0.0) <= 1.0:
            out.append("warm-up progress outside 0..1")
        return out


@functools.lru_cache(maxsize=4)
def _plain(settings: DetectionSettings) -> dict[str, object]:
    """``settings`` as plain data, one dict shared (read-only) by every detector with equal settings.

    A copy per asset was about 1.7 KiB of each restored asset's memory (issue 13). Four entries: the
    running settings and those of a reload or two; settings are frozen, so equal ones share a dict.
    """
    return settings.model_dump()


def _sensor_tuning(s: DetectionSettings) -> SensorTuning:
    return SensorTuning(stuck_samples=s.stuck_samples, dropout_samples=s.dropout_samples, spike_z=s.spike_z,
                        spike_count=s.spike_count, spike_window_s=s.spike_window_h * 3600.0)


def _signed(ev: Evidence) -> dict[str, float]:
    """Per valid channel, the stronger of point and drift evidence with its sign."""
    pick: FloatArray = np.where(np.abs(ev.drift) >= np.abs(ev.point), ev.drift, ev.point)
    valid: BoolArray = ev.valid
    return {n: float(pick[i]) for i, n in enumerate(ev.names) if valid[i]}


def _finite(v: float) -> float | None:
    return None if not math.isfinite(v) else round(float(v), 3)

