"""Regime-conditioned baseline: each metric predicted from the asset's operating drivers.

What is normal for a heat pump depends on outdoor temperature and compressor speed
(failure-physics.md A1: "compute everything from T_oa, the flow setpoint and f_comp"); for a pump
on its shaft speed. One recursive-least-squares regression per metric on those drivers turns raw
readings into *residuals*, so a cold spell or a production change moves the prediction, not the
residual. river-notes.md measured that "residuals against related sensors matter more than the
choice of outlier model"; fixed per-sensor z-scores alarmed on half of normal samples.

The regressions are vectorised with numpy (one covariance matrix per metric, stacked), which costs
a few microseconds per sample for ten metrics and keeps ``river.anomaly``'s scipy import (~110 MB,
river-notes.md) off the 1 GB gateway.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["RegimeBaseline"]

FloatArray = npt.NDArray[np.float64]

_P0 = 1e3
"""Initial RLS covariance: large, so the first samples dominate (standard RLS start, Haykin ch. 10)."""

_TRANSIENT_TAUS_MIN = (10.0, 40.0)
"""Start-up transients: water loop and discharge line settle in 4-5 min, pump bearings, windings and seals
warm with 15-40 min time constants (simulators/fleet and failure-physics.md B2) [E]. Two decaying
exponentials of minutes-since-start let the regression learn both."""

_LOG_SUFFIX = "_bar"
"""Pressures are modelled as logarithms: saturation pressure is exponential in temperature
(Clausius-Clapeyron; the R32 table of failure-physics.md A1 is nearly linear in ln p)."""

_LOG_MIN = 1e-3
"""Floor before the logarithm, for a pressure channel that reads zero."""

_RESIDUAL_HALFLIFE_SAMPLES = 10_080.0
"""Residual variance forgets over about a week of one-minute samples: slower than any weather spell."""


class RegimeBaseline:
    """Per-metric online linear regression on the regime drivers, plus residual scale.

    Metrics appear as they are first seen (a new sensor is tolerated) and each metric learns only on
    samples where it is present. Drivers are inputs, not targets: a production change or a cold
    spell is the drivers moving, and must never be an anomaly by itself.

    Args:
        drivers: names of the numeric regime drivers, e.g. ``("outdoor_temp_c", "compressor_hz")``.
        halflife_samples: forgetting of the regression, in learning samples.
        noise_floor: per-metric lower bound on the residual sigma (sensor noise, catalog.METRICS).
        driver_scale: typical magnitude of each driver (catalog normal range), so rpm and °C give
            similarly sized features and RLS stays well conditioned; 1.0 where unknown.
        typical: typical magnitude of each metric, to turn noise floors into log space.
    """

    def __init__(
        self,
        drivers: Sequence[str],
        *,
        halflife_samples: float,
        noise_floor: Mapping[str, float],
        driver_scale: Mapping[str, float],
        typical: Mapping[str, float],
    ) -> None:
        self.drivers = tuple(drivers)
        n = len(self.drivers)
        self._pairs = [(i, j) for i in range(n) for j in range(i, n)]
        self.dim = 1 + n + len(self._pairs) + len(_TRANSIENT_TAUS_MIN) + 1
        self.forget = math.exp(-math.log(2) / halflife_samples)
        self._res_alpha = 1.0 - math.exp(-math.log(2) / _RESIDUAL_HALFLIFE_SAMPLES)
        self._noise_floor = dict(noise_floor)
        self.metrics: list[str] = []
        self._index: dict[str, int] = {}
        dim = self.dim
        self._theta: FloatArray = np.zeros((0, dim))
        self._cov: FloatArray = np.zeros((0, dim, dim))
        self._res_var: FloatArray = np.zeros(0)
        self._res_n: FloatArray = np.zeros(0)
        self._floor: FloatArray = np.zeros(0)
        self._log = np.zeros(0, dtype=bool)
        self._typical = dict(typical)
        self._last_driver = dict.fromkeys(self.drivers, 0.0)
        self._driver_scale = {d: driver_scale.get(d, 1.0) or 1.0 for d in self.drivers}

    def _add_metric(self, name: str) -> None:
        dim = self.dim
        self._index[name] = len(self.metrics)
        self.metrics.append(name)
        self._theta = np.vstack([self._theta, np.zeros((1, dim))])
        self._cov = np.concatenate([self._cov, (np.eye(dim) * _P0)[None]], axis=0)
        self._res_var = np.append(self._res_var, 0.0)
        self._res_n = np.append(self._res_n, 0.0)
        floor = self._noise_floor.get(name, 1e-3)
        is_log = name.endswith(_LOG_SUFFIX)
        self._log = np.append(self._log, is_log)
        # In log space the noise floor is relative: sigma / typical magnitude (catalog scale).
        self._floor = np.append(self._floor, floor / self._typical.get(name, 1.0) if is_log else floor)

    def features(self, values: Mapping[str, float], run_min: float, frost: float = 0.0) -> FloatArray:
        """The regression input: intercept, scaled drivers, their squares and products, start-up terms.

        ``run_min`` is the time since the asset last started operating.

        Squares carry curvature (pump head goes with speed squared, the affinity laws); products carry
        interactions (electrical power goes with compressor speed times lift, heat output with speed
        times outdoor temperature, failure-physics.md A1). A missing driver holds its last value, so
        one dead sensor does not stop scoring. ``frost`` is the estimated frost load of a heat pump's
        outdoor coil (0 after a defrost, 1 when the next is due): it lowers suction pressure by up to
        a few kelvin of evaporating temperature between defrosts (failure-physics.md A1).
        """
        x = np.empty(self.dim)
        x[0] = 1.0
        n = len(self.drivers)
        for i, name in enumerate(self.drivers):
            v = values.get(name)
            if v is not None:
                self._last_driver[name] = v
            x[1 + i] = self._last_driver[name] / self._driver_scale[name]
        for k, (i, j) in enumerate(self._pairs, start=1 + n):
            x[k] = x[1 + i] * x[1 + j]
        for k, tau in enumerate(_TRANSIENT_TAUS_MIN, start=1 + n + len(self._pairs)):
            x[k] = math.exp(-run_min / tau)
        x[-1] = frost
        return x

    def vectorise(self, values: Mapping[str, float]) -> FloatArray:
        """Values in metric order and model space (log for pressures), NaN where absent.

        New metrics are added to the model.
        """
        for name in values:
            if name not in self._index:
                self._add_metric(name)
        y = np.full(len(self.metrics), np.nan)
        for name, v in values.items():
            i = self._index[name]
            y[i] = math.log(max(v, _LOG_MIN)) if self._log[i] else v
        return y

    def to_raw(self, values: FloatArray) -> FloatArray:
        """Model-space values back in the metrics' own units."""
        out: FloatArray = values.copy()
        out[self._log] = np.exp(values[self._log])
        return out

    def predict(self, x: FloatArray) -> FloatArray:
        """Expected value of every metric under regime ``x``."""
        pred: FloatArray = self._theta @ x
        return pred

    def sigma(self) -> FloatArray:
        """Residual standard deviation per metric (never below the sensor noise floor)."""
        return np.sqrt(np.maximum(self._res_var, self._floor**2))

    def learn(self, x: FloatArray, y: FloatArray, learn_mask: npt.NDArray[np.bool_]) -> None:
        """One RLS step for the metrics in ``learn_mask`` (present, healthy sensor, not anomalous)."""
        sel = learn_mask & ~np.isnan(y)
        if not sel.any():
            return
        cov = self._cov[sel]
        px = cov @ x
        denom = self.forget + px @ x
        gain = px / denom[:, None]
        err = y[sel] - self._theta[sel] @ x
        self._theta[sel] += gain * err[:, None]
        self._cov[sel] = (cov - gain[:, :, None] * px[:, None, :]) / self.forget
        # Residual variance from the a-priori error: an honest, out-of-sample spread.
        n = self._res_n[sel] + 1.0
        alpha = np.maximum(1.0 / n, self._res_alpha)
        self._res_var[sel] = (1.0 - alpha) * self._res_var[sel] + alpha * err**2
        self._res_n[sel] = n

    def leverage(self, x: FloatArray) -> float:
        """Median statistical leverage ``x' P x`` over the metrics: ~1/n where n samples are alike.

        The median, so one channel that stopped learning (a dead sensor) cannot hold scoring off.
        """
        if not self.metrics:
            return math.inf
        lev: FloatArray = np.einsum("i,kij,j->k", x, self._cov, x)
        return float(np.median(lev))

    def restart_scale(self) -> None:
        """Forget the residual spread learned so far (the errors of a still-converging regression)."""
        self._res_var[:] = 0.0
        self._res_n[:] = 0.0

    def index(self, name: str) -> int | None:
        """Position of ``name`` in :attr:`metrics`, or None if never seen."""
        return self._index.get(name)
