"""Linear building blocks of the vectorised models: first-order lags and autocorrelated disturbances.

Both are first-order recursive filters, run by :func:`scipy.signal.lfilter` (C speed; scipy comes with
River). A Python loop over 40 k samples took ~3 ms per call and was most of a fleet's generation time.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

__all__ = ["ar1", "first_order_lag", "hourly_ar1"]

FloatArray = npt.NDArray[np.float64]


def first_order_lag(x: FloatArray, dt_s: float, tau_s: float, initial: float | None = None) -> FloatArray:
    """Response of a first-order lag with time constant ``tau_s`` to the input series ``x``.

    Exact for an input held constant over each step (zero-order hold); starts at ``initial`` (default:
    the first input, i.e. in equilibrium).

    >>> first_order_lag(np.array([0.0, 1.0, 1.0]), 1.0, 1e-9).tolist()
    [0.0, 1.0, 1.0]
    >>> [round(v, 3) for v in first_order_lag(np.array([0.0, 1.0, 1.0]), 1.0, 1.0).tolist()]
    [0.0, 0.632, 0.865]
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    a = math.exp(-dt_s / tau_s)
    y0 = float(x[0]) if initial is None else initial
    out, _ = lfilter([1.0 - a], [1.0, -a], x, zi=[a * y0])
    return np.asarray(out, dtype=np.float64)


def ar1(rng: np.random.Generator, n: int, tau_steps: float, sigma: float) -> FloatArray:
    """A stationary AR(1) (discrete Ornstein-Uhlenbeck) series: correlation time ``tau_steps``, std ``sigma``.

    >>> x = ar1(np.random.default_rng(0), 200_000, 50.0, 2.0)
    >>> round(float(x.std()), 1), round(float(np.corrcoef(x[:-50], x[50:])[0, 1]), 2)
    (2.0, 0.38)
    """
    a = math.exp(-1.0 / tau_steps)
    shocks = rng.standard_normal(n) * sigma * math.sqrt(1.0 - a * a)
    start = rng.standard_normal() * sigma
    out, _ = lfilter([1.0], [1.0, -a], shocks, zi=[a * start])
    return np.asarray(out, dtype=np.float64)


def hourly_ar1(
    t_s: FloatArray, rng: np.random.Generator, sigma: float, tau_h: float, step_s: float = 3600.0
) -> FloatArray:
    """An AR(1) disturbance drawn on a coarse grid (default hourly) and interpolated to the times ``t_s``.

    Cheap for slow processes (weather, occupancy, process demand): a month costs 720 draws, not 43 200.
    """
    span = float(t_s[-1] - t_s[0]) if t_s.size else 0.0
    n = int(np.ceil(span / step_s)) + 2
    series = ar1(rng, n, tau_h * 3600.0 / step_s, sigma)
    grid = float(t_s[0]) + step_s * np.arange(n) if t_s.size else np.zeros(n)
    return np.asarray(np.interp(t_s, grid, series), dtype=np.float64)
