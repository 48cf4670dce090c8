"""Hourly trend of residuals and the time-to-failure estimate it gives.

Residuals (reading minus the regime baseline) are averaged per hour, which removes sensor noise
and the minute-scale regime wobble; a least-squares line through the last ``fit_h`` hours gives the
degradation rate and its standard error. The time to failure is the gap between the worst recent
hourly level (the coldest night is when a heat pump trips) and the failure threshold of
``pdm_common.catalog.FAILURE_CRITERIA``, divided by the rate. p10 uses the rate's upper 90 %
bound (+1.2816 standard errors, one-sided normal), so it is the pessimistic end.

Linear projection is optimistic for faults with a knee (failure-physics.md D: refrigerant loss,
bearing wear "flat, then exponential"); fitting only the last two days follows the acceleration.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from pdm_common.catalog import FailureCriterion

__all__ = ["TrendTracker", "TtfEstimate"]

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
    """Keeps hourly mean residuals and readings per metric for the last ``window_h`` hours.

    Args:
        window_h: hours kept; bounds memory at ``window_h`` x metrics floats.
        fit_h: hours used for the slope.
        level_h: hours over which the worst level is taken.
    """

    def __init__(self, *, window_h: int = 72, fit_h: int = 48, level_h: int = 24) -> None:
        self.fit_h = fit_h
        self.level_h = level_h
        self._hours: deque[tuple[int, dict[str, tuple[float, float]]]] = deque(maxlen=window_h)
        self._hour: int | None = None
        self._acc: dict[str, list[float]] = {}

    def add(self, hour: int, residuals: Mapping[str, float], readings: Mapping[str, float]) -> None:
        """Accumulate one operating sample at absolute hour index ``hour`` (epoch hours)."""
        if self._hour is not None and hour != self._hour:
            self._close()
        self._hour = hour
        for name, r in residuals.items():
            value = readings.get(name)
            if value is None:
                continue
            acc = self._acc.setdefault(name, [0.0, 0.0, 0.0])
            acc[0] += r
            acc[1] += value
            acc[2] += 1.0

    def _close(self) -> None:
        if self._hour is not None and self._acc:
            means = {n: (a[0] / a[2], a[1] / a[2]) for n, a in self._acc.items() if a[2] > 0}
            self._hours.append((self._hour, means))
        self._acc = {}

    def estimate(self, criterion: FailureCriterion) -> TtfEstimate | None:
        """Hours until ``criterion`` is crossed at the current rate, or None without a trend towards it."""
        pts = [(h, m[criterion.metric]) for h, m in self._hours if criterion.metric in m]
        if len(pts) < _MIN_POINTS:
            return None
        latest = pts[-1][0]
        fit = [(float(h - latest), r) for h, (r, _) in pts if latest - h < self.fit_h]
        if len(fit) < _MIN_POINTS:
            return None
        n = len(fit)
        mx = sum(x for x, _ in fit) / n
        my = sum(y for _, y in fit) / n
        sxx = sum((x - mx) ** 2 for x, _ in fit)
        if sxx == 0.0:
            return None
        slope = sum((x - mx) * (y - my) for x, y in fit) / sxx
        sse = sum((y - my - slope * (x - mx)) ** 2 for x, y in fit)
        se = math.sqrt(sse / max(n - 2, 1) / sxx)
        levels = [v for h, (_, v) in pts if latest - h < self.level_h]
        sign = 1.0 if criterion.direction == "above" else -1.0
        rate = sign * slope
        if rate <= 0.0:
            return None
        level = max(levels) if sign > 0 else min(levels)
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
        series = [m[metric][0] for h, m in self._hours if metric in m][-hours:]
        acc = self._acc.get(metric)
        if acc is not None and acc[2] > 0:
            series.append(acc[0] / acc[2])
        if len(series) < 2:
            return 1.0
        shift = series[-1] - series[0]
        if shift == 0.0:
            return 0.0
        jumps = [(b - a) / shift for a, b in itertools.pairwise(series)]
        return max(0.0, min(1.0, max(jumps)))

    def reset(self) -> None:
        """Forget the history (after ``reset_baseline``)."""
        self._hours.clear()
        self._acc = {}
        self._hour = None
