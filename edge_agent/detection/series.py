"""Recent readings of one asset for the ticket plot, in compact arrays.

One ring of ``points`` rows holds a timestamp (epoch ms) and every channel's reading as float32, one
row every ``window_h / points``; a channel absent at a row is NaN. At 10 channels and 180 points that
is about 8.6 KiB per asset, where a deque of (ts, value) tuples per channel took 129 KiB (issue 13).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["RecentSeries"]


class RecentSeries:
    """Ring of recent readings, one row per ``every_s``.

    Args:
        points: rows kept.
        window_s: time the rows cover.
        max_channels: channels kept (new names beyond are not plotted).
    """

    def __init__(self, *, points: int, window_s: float, max_channels: int) -> None:
        self.points = points
        self.every_s = window_s / points
        self.max_channels = max_channels
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        self._ts = np.zeros(points, dtype=np.int64)
        self._vals = np.full((points, 0), np.nan, dtype=np.float32)
        self._row = 0
        self._count = 0
        self._last_s: float | None = None

    def add(self, t: float, values: Mapping[str, float]) -> None:
        """Record ``values`` at ``t`` if a row is due (the first sample, then every ``every_s``)."""
        if self._last_s is not None and t - self._last_s < self.every_s and t >= self._last_s:
            return
        self._last_s = t
        new = [n for n in values if n not in self._index]
        if new:
            room = self.max_channels - len(self.names)
            new = new[: max(room, 0)]
            for n in new:
                self._index[n] = len(self.names)
                self.names.append(n)
            if new:
                self._vals = np.hstack([self._vals, np.full((self.points, len(new)), np.nan, dtype=np.float32)])
        row = self._vals[self._row]
        row[:] = np.nan
        for n, v in values.items():
            i = self._index.get(n)
            if i is not None:
                row[i] = v
        self._ts[self._row] = round(t * 1000)
        self._row = (self._row + 1) % self.points
        self._count = min(self._count + 1, self.points)

    def series(self, name: str) -> list[tuple[int, float]]:
        """``(epoch_ms, value)`` of ``name``, oldest first (empty for an unknown channel)."""
        i = self._index.get(name)
        if i is None or self._count == 0:
            return []
        start = (self._row - self._count) % self.points
        order = (np.arange(self._count) + start) % self.points
        vals = self._vals[order, i]
        keep = ~np.isnan(vals)
        # float32 keeps 7 significant digits; print them, not the binary tail (20.1, not 20.100000381).
        return [(ts, float(f"{v:.7g}")) for ts, v in zip(self._ts[order][keep].tolist(), vals[keep].tolist(),
                                                         strict=True)]

    def reset(self) -> None:
        """Forget the rows (the channels stay known)."""
        self._vals[:] = np.nan
        self._row = self._count = 0
        self._last_s = None
