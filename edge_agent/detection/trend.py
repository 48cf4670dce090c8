"""Hourly trend of residuals and the time-to-failure estimate it gives.

Residuals (reading minus the regime baseline) are averaged per hour, which removes sensor noise and
the minute-scale regime wobble; a least-squares line through the last ``fit_h`` hours gives the
degradation rate and its standard error. The time to failure is the gap between the worst recent
hourly level (the coldest night is when a heat pump trips) and the fault's failure criterion, divided
by the rate. p10 uses the rate's upper 90 % bound (+1.2816 standard errors, one-sided normal), so it
is the pessimistic end.

Linear projection is optimistic for faults with a knee (failure-physics.md D: refrigerant loss,
bearing wear "flat, then exponential"); fitting only the last two days follows the acceleration.

The hours live in fixed-size numpy arrays (one row per hour, one column per channel), so memory is
``window_h x channels`` floats whatever the sample rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_agent.detection.plan import CriterionPlan
from edge_agent.detection.protocol import BoolArray, FloatArray

__all__ = ["MAX_TTF_H", "TrendTracker", "TtfEstimate"]

_Z90 = 1.2816
"""One-sided 90 % quantile of the normal distribution, for the p10 (pessimistic) time to failure."""

_MIN_POINTS = 6
"""Fewer hourly points than this give no slope worth a promise to a customer."""

MAX_TTF_H = 24.0 * 90
"""Beyond 90 days a linear projection says nothing; report the cap."""


@dataclass(frozen=True, slots=True)
class TtfEstimate:
    """Hours to the failure criterion at the current trend (p10 <= p50)."""

    p50_h: float
    p10_h: float
    criterion: str


class TrendTracker:
    """Hourly mean residuals and readings per channel for the last ``window_h`` hours.

    Args:
        window_h: hours kept.
        fit_h: hours used for the slope.
        level_h: hours over which the worst level is taken.
    """

    def __init__(self, *, window_h: int = 72, fit_h: int = 48, level_h: int = 24) -> None:
        self.window_h, self.fit_h, self.level_h = window_h, fit_h, level_h
        self.reset()

    def reset(self) -> None:
        """Forget the history (after ``reset_baseline``)."""
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        self._hours = np.full(self.window_h, -1, dtype=np.int64)
        self._res: FloatArray = np.full((self.window_h, 0), np.nan)
        self._val: FloatArray = np.full((self.window_h, 0), np.nan)
        self._row = 0
        self._hour: int | None = None
        self._acc: FloatArray = np.zeros((3, 0))

    def _columns(self, names: Sequence[str]) -> None:
        if list(names[: len(self.names)]) != self.names:
            # The columns must be the detector's channels in its order (one that restarted learning
            # with other channels): the history of the old columns no longer lines up.
            self.reset()
        new = list(names[len(self.names):])
        for n in new:
            self._index[n] = len(self.names)
            self.names.append(n)
        k = len(new)
        if k:
            self._res = np.hstack([self._res, np.full((self.window_h, k), np.nan)])
            self._val = np.hstack([self._val, np.full((self.window_h, k), np.nan)])
            self._acc = np.hstack([self._acc, np.zeros((3, k))])

    def add(self, hour: int, names: Sequence[str], residuals: FloatArray, readings: FloatArray,
            mask: BoolArray) -> None:
        """Accumulate one sample at absolute hour ``hour`` (epoch hours); arrays aligned with ``names``.

        ``names`` may only grow by appending (a detector's channel list does), so column ``i`` is
        ``names[i]``; a list that is not an extension of the columns starts the history afresh.
        """
        if len(names) != len(self.names) or names[-1:] != self.names[-1:]:
            self._columns(names)
        if self._hour is not None and hour != self._hour:
            self._close()
        self._hour = hour
        # In-place masked adds: a third of the cost of gathering the columns first (issue 13).
        acc = self._acc
        np.add(acc[0], residuals, out=acc[0], where=mask)
        np.add(acc[1], readings, out=acc[1], where=mask)
        np.add(acc[2], mask, out=acc[2])

    def _close(self) -> None:
        n = self._acc[2]
        if self._hour is None or not (n > 0).any():
            return
        with np.errstate(invalid="ignore", divide="ignore"):
            self._res[self._row] = np.where(n > 0, self._acc[0] / n, np.nan)
            self._val[self._row] = np.where(n > 0, self._acc[1] / n, np.nan)
        self._hours[self._row] = self._hour
        self._row = (self._row + 1) % self.window_h
        self._acc[:] = 0.0

    def _series(self, name: str) -> tuple[np.ndarray, FloatArray, FloatArray]:
        i = self._index.get(name)
        if i is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
        order = np.argsort(self._hours)
        hours, res, val = self._hours[order], self._res[order, i], self._val[order, i]
        keep = (hours >= 0) & ~np.isnan(res)
        return hours[keep], res[keep], val[keep]

    def estimate(self, criterion: CriterionPlan) -> TtfEstimate | None:
        """Hours until ``criterion`` is crossed at the current rate, or None without a trend towards it."""
        hours, res, val = self._series(criterion.metric)
        if len(hours) < _MIN_POINTS:
            return None
        latest = int(hours[-1])
        fit = latest - hours < self.fit_h
        x, y = (hours[fit] - latest).astype(np.float64), res[fit]
        n = len(x)
        if n < _MIN_POINTS:
            return None
        mx, my = float(x.mean()), float(y.mean())
        sxx = float(((x - mx) ** 2).sum())
        if sxx == 0.0:
            return None
        slope = float(((x - mx) * (y - my)).sum()) / sxx
        sse = float(((y - my - slope * (x - mx)) ** 2).sum())
        se = math.sqrt(sse / max(n - 2, 1) / sxx)
        levels = val[latest - hours < self.level_h]
        sign = 1.0 if criterion.direction == "above" else -1.0
        rate = sign * slope
        if rate <= 0.0:
            return None
        level = float(levels.max()) if sign > 0 else float(levels.min())
        gap = sign * (criterion.threshold - level)
        if gap <= 0.0:
            return TtfEstimate(0.0, 0.0, criterion.description)
        p50 = min(gap / rate, MAX_TTF_H)
        p10 = min(gap / (rate + _Z90 * se), p50)
        return TtfEstimate(round(p50, 1), round(p10, 1), criterion.description)

    def step_share(self, metric: str, *, hours: int = 24) -> float:
        """How much of the metric's residual shift over the last ``hours`` came in one hour, 0..1.

        A sensor drift ramps (failure-physics.md A3: y = x + r (t - t0)), so each hour adds a small
        share; a stuck valve or a seized part steps, so one hour carries most of the shift. The
        current, unfinished hour counts as the latest point.
        """
        _, res, _ = self._series(metric)
        series = list(res[-hours:])
        i = self._index.get(metric)
        if i is not None and self._acc[2, i] > 0:
            series.append(float(self._acc[0, i] / self._acc[2, i]))
        if len(series) < 2:
            return 1.0
        shift = series[-1] - series[0]
        if shift == 0.0:
            return 0.0
        jumps = np.diff(np.asarray(series)) / shift
        return max(0.0, min(1.0, float(jumps.max())))

    def problems(self) -> list[str]:
        """Inconsistencies of a restored state (empty when sound)."""
        m = len(self.names)
        if self._res.shape != (self.window_h, m) or self._acc.shape != (3, m):
            return [f"trend arrays have shapes {self._res.shape}/{self._acc.shape} for {m} channels"]
        if not 0 <= self._row < self.window_h:
            return [f"trend row {self._row} outside its window"]
        return []
