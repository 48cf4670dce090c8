"""Operating time and sample count of a detector's warm-up, and the stream's typical interval.

Warm-up progress is the *operating time observed* (each interval capped, a gap counting nothing) and
the samples learned, never "now minus the first sample": a clock step back or a re-anchored stream
cannot make it negative (issue 16: a negative ``warmup_progress`` had poisoned every restart).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["WarmupClock"]

_INTERVAL_MEMORY = 32.0
"""Samples over which the typical interval is averaged (geometric mean, each ratio clipped to 10x)."""

_GAP_INTERVALS = 5.0
"""A pause longer than five typical sample intervals is a gap (the stream was interrupted)."""

_MAX_COUNTED_INTERVALS = 10.0
"""An interval counts for at most ten typical intervals of operation (we do not know what happened)."""


@dataclass(slots=True)
class WarmupClock:
    """Counts operating time and samples; learns the typical sample interval."""

    samples: int = 0
    operating_s: float = 0.0
    interval_s: float = 0.0
    intervals: int = 0
    last_t: float | None = None

    def tick(self, t: float, *, gap: bool) -> float:
        """Advance to sample time ``t``; returns the interval since the previous sample (0 after a gap)."""
        last, self.last_t = self.last_t, t
        if last is None or gap:
            return 0.0
        dt = max(t - last, 0.0)
        if self.interval_s == 0.0:
            self.interval_s = dt
        elif dt > 0.0:
            ratio = min(max(dt / self.interval_s, 0.1), 10.0)
            self.interval_s *= ratio ** (1.0 / min(_INTERVAL_MEMORY, self.intervals + 1.0))
        self.intervals += 1
        counted = min(dt, _MAX_COUNTED_INTERVALS * self.interval_s) if self.interval_s > 0 else dt
        self.operating_s += counted
        return dt

    def gap_after_s(self, floor_s: float) -> float:
        """A pause longer than this is a gap: five typical intervals, at least ``floor_s``.

        Until three intervals are known the rate is not, and nothing counts as a gap.
        """
        if self.intervals < 3:
            return math.inf
        return max(floor_s, _GAP_INTERVALS * self.interval_s)

    def progress(self, *, samples: int, seconds: float) -> float:
        """Share of a warm-up of ``samples`` and ``seconds`` done, 0..1."""
        by_n = self.samples / samples if samples > 0 else 1.0
        by_t = self.operating_s / seconds if seconds > 0 else 1.0
        return max(0.0, min(1.0, by_n, by_t))

    def done(self, *, samples: int, seconds: float) -> bool:
        """Both the samples and the operating time of the warm-up have passed."""
        return self.samples >= samples and self.operating_s >= seconds

    def problems(self) -> list[str]:
        """Inconsistencies of a restored state (empty when sound)."""
        ok = (self.samples >= 0 and math.isfinite(self.operating_s) and self.operating_s >= 0
              and math.isfinite(self.interval_s) and self.interval_s >= 0
              and (self.last_t is None or math.isfinite(self.last_t)))
        return [] if ok else [f"warm-up clock invalid: {self}"]
