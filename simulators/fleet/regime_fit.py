"""How well a regime regression explains a healthy run: the check that the simulator is not the detector.

The regression is the detector's own regime model as it stood when the issue was filed (commit 7459ec8,
``edge_agent/detection/regime.py``): each channel predicted from the kind's drivers (heat pump: outdoor
temperature, compressor speed, flow temperature; pump: shaft speed), scaled by the catalog's range, with
their squares and pairwise products, two start-up exponentials (10 and 40 min since the unit started)
and the frost load estimated from the defrost intervals; pressures in log space; samples only while
operating, skipping ten after a start or a defrost. It is fitted by least squares on training days and
judged on later days it has not seen:

* ``ratio``: RMS of the held-out residual over the channel's sensor noise (catalog sigma). Near 1 means
  the world is the regression plus white noise.
* ``ac1``: lag-1 autocorrelation of hourly mean residuals. Near 0 means nothing slow is left over.

Only numpy and the catalog: it runs on any simulator tree that produces series with ``values``,
``flags``, ``ts_ms`` and ``present`` (used to measure the old simulator for ``docs/faults.md``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pdm_common.catalog import METRICS
from pdm_common.contracts import AssetKind

__all__ = ["DRIVERS", "ChannelFit", "Series", "fit_asset", "held_out_residuals", "summarise"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DRIVERS: dict[str, tuple[str, ...]] = {
    AssetKind.HEAT_PUMP.value: ("outdoor_temp_c", "compressor_hz", "flow_temp_c"),
    AssetKind.PUMP.value: ("speed_rpm",),
}
"""The detector's regime drivers (``DetectionSettings.drivers`` at 7459ec8)."""
SETTLE_SAMPLES = 10
TRANSIENT_TAUS_MIN = (10.0, 40.0)
MIN_DEFROST_INTERVAL_MIN = 35.0
RIDGE = 1e-6
MIN_HOUR_SAMPLES = 20


class Series(Protocol):
    """What the fit needs of one asset's telemetry (``simulators.fleet.runner.AssetSeries`` has it)."""

    @property
    def values(self) -> Mapping[str, FloatArray]: ...

    @property
    def flags(self) -> Mapping[str, BoolArray]: ...

    @property
    def ts_ms(self) -> npt.NDArray[np.int64]: ...


@dataclass(frozen=True, slots=True)
class ChannelFit:
    """Held-out fit of one channel of one asset."""

    metric: str
    ratio: float
    ac1: float
    samples: int


def _operating(kind: str, s: Series) -> BoolArray:
    if kind == AssetKind.PUMP.value:
        return np.asarray(s.flags["running"], dtype=bool)
    return np.asarray((s.values["compressor_hz"] > 0) & ~s.flags["defrost"], dtype=bool)


def _run_minutes_and_frost(kind: str, s: Series, operating: BoolArray) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Minutes since the unit started, the detector's frost-load estimate, and the settled mask."""
    n = operating.size
    dt_min = np.diff(s.ts_ms, prepend=s.ts_ms[0]) / 60_000.0
    run_min, frost = np.zeros(n), np.zeros(n)
    settled = np.zeros(n, dtype=bool)
    defrost = np.asarray(s.flags.get("defrost", np.zeros(n, dtype=bool)), dtype=bool)
    since, elapsed, settle, in_defrost, was_on = 0.0, 0.0, SETTLE_SAMPLES, False, False
    interval: float | None = None
    ops, dts, defs = operating.tolist(), dt_min.tolist(), defrost.tolist()
    for i in range(n):
        # Frost load as the detector estimates it: running minutes since the last defrost over the last
        # interval between defrosts.
        if defs[i] and not in_defrost:
            interval = max(since, MIN_DEFROST_INTERVAL_MIN)
        elif not defs[i] and in_defrost:
            since = 0.0
        in_defrost = defs[i]
        if ops[i]:
            since += min(dts[i], 5.0)
            elapsed = elapsed + dts[i] if was_on else 0.0
            if settle > 0:
                settle -= 1
            else:
                settled[i] = True
        else:
            elapsed, settle = 0.0, SETTLE_SAMPLES
        was_on = ops[i]
        run_min[i] = elapsed
        frost[i] = 0.0 if interval is None else min(1.0, since / interval)
    if kind == AssetKind.PUMP.value:
        frost[:] = 0.0
    return run_min, frost, settled


def _features(kind: str, s: Series, run_min: FloatArray, frost: FloatArray) -> FloatArray:
    specs = {m.name: m for m in METRICS[AssetKind(kind)]}
    cols = [np.ones(run_min.size)]
    xs = []
    for d in DRIVERS[kind]:
        scale = max(abs(specs[d].normal_low), abs(specs[d].normal_high)) or 1.0
        xs.append(np.nan_to_num(np.asarray(s.values[d], dtype=np.float64)) / scale)
    cols += xs
    cols += [xs[i] * xs[j] for i in range(len(xs)) for j in range(i, len(xs))]
    cols += [np.exp(-run_min / tau) for tau in TRANSIENT_TAUS_MIN]
    cols.append(frost)
    return np.column_stack(cols)


def _ac1_hourly(residual: FloatArray, ts_ms: npt.NDArray[np.int64]) -> float:
    hours = ts_ms // 3_600_000
    uniq, inverse, counts = np.unique(hours, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=residual)
    keep = counts >= MIN_HOUR_SAMPLES
    means, hrs = sums[keep] / counts[keep], uniq[keep]
    consecutive = np.diff(hrs) == 1
    if consecutive.sum() < 10:
        return math.nan
    a, b = means[:-1][consecutive], means[1:][consecutive]
    if a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def held_out_residuals(
    kind: str, s: Series, *, train_days: tuple[float, float], test_days: tuple[float, float], start_ms: float
) -> dict[str, tuple[npt.NDArray[np.int64], FloatArray]]:
    """Per non-driver channel: (timestamps, residual) on ``test_days`` of the regression fitted on ``train_days``."""
    operating = _operating(kind, s)
    run_min, frost, settled = _run_minutes_and_frost(kind, s, operating)
    x = _features(kind, s, run_min, frost)
    day = (s.ts_ms - start_ms) / 86_400_000.0
    train = settled & (day >= train_days[0]) & (day < train_days[1])
    test = settled & (day >= test_days[0]) & (day < test_days[1])
    out = {}
    for spec in METRICS[AssetKind(kind)]:
        if spec.name in DRIVERS[kind] or spec.name not in s.values or spec.noise_sigma == 0.0:
            continue
        y = np.asarray(s.values[spec.name], dtype=np.float64)
        log = spec.name.endswith("_bar")
        target = np.log(np.maximum(y, 1e-3)) if log else y
        ok_train, ok_test = train & np.isfinite(target), test & np.isfinite(target)
        if ok_train.sum() < 200 or ok_test.sum() < 200:
            continue
        a = x[ok_train]
        theta = np.linalg.solve(a.T @ a + RIDGE * np.eye(a.shape[1]), a.T @ target[ok_train])
        pred = x[ok_test] @ theta
        out[spec.name] = (s.ts_ms[ok_test], y[ok_test] - (np.exp(pred) if log else pred))
    return out


def fit_asset(kind: str, s: Series, *, train_days: tuple[float, float], test_days: tuple[float, float],
              start_ms: float) -> list[ChannelFit]:
    """Fit every non-driver channel of one asset on ``train_days`` and judge it on ``test_days``."""
    sigma = {m.name: m.noise_sigma for m in METRICS[AssetKind(kind)]}
    residuals = held_out_residuals(kind, s, train_days=train_days, test_days=test_days, start_ms=start_ms)
    return [
        ChannelFit(metric, float(np.sqrt(np.mean(r**2)) / sigma[metric]), _ac1_hourly(r, ts), int(r.size))
        for metric, (ts, r) in residuals.items()
    ]


def summarise(fits: Iterable[ChannelFit]) -> dict[str, dict[str, float]]:
    """Median over assets, per channel: ``ratio``, ``ac1`` and the number of assets."""
    by: dict[str, list[ChannelFit]] = {}
    for f in fits:
        by.setdefault(f.metric, []).append(f)
    return {
        metric: {
            "ratio": float(np.median([f.ratio for f in fs])),
            "ac1": float(np.nanmedian([f.ac1 for f in fs])) if any(np.isfinite(f.ac1) for f in fs) else math.nan,
            "assets": float(len(fs)),
        }
        for metric, fs in sorted(by.items())
    }
