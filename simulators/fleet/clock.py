"""Calendar arithmetic on the simulator's sample grid, vectorised (seconds since the Unix epoch in, arrays out)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["SECONDS_PER_DAY", "day_of_year", "local_hour", "local_weekday"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
SECONDS_PER_DAY = 86_400.0
_EPOCH_WEEKDAY = 3
"""1970-01-01 was a Thursday; with Monday = 0 that is weekday 3."""


def local_hour(epoch_s: FloatArray, utc_offset_h: float) -> FloatArray:
    """Hour of the local day in [0, 24)."""
    return np.asarray(np.mod(epoch_s / 3600.0 + utc_offset_h, 24.0), dtype=np.float64)


def local_weekday(epoch_s: FloatArray, utc_offset_h: float) -> IntArray:
    """Local weekday, Monday = 0 … Sunday = 6."""
    days = np.floor((epoch_s + utc_offset_h * 3600.0) / SECONDS_PER_DAY).astype(np.int64)
    return np.asarray((days + _EPOCH_WEEKDAY) % 7, dtype=np.int64)


def day_of_year(epoch_s: FloatArray) -> FloatArray:
    """Fractional day of the year, 0 at 1 January 00:00 UTC (365.25-day years; enough for a climate cosine)."""
    days = epoch_s / SECONDS_PER_DAY
    return np.asarray(np.mod(days, 365.25), dtype=np.float64)
