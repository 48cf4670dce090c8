"""The healthy world is not the detector's regime model plus white noise.

The detector's own regime regression (simulators.fleet.regime_fit), fitted per heat pump on a week and
judged on the next, must leave residuals well above sensor noise and slow (autocorrelated hour to hour)
on most channels. The simulator before issue #15 left 1.0-1.5 sigma on 6 of 7 heat-pump channels and
would fail this (docs/faults.md, "Does the detector's regression fit the healthy world?").
"""

from __future__ import annotations

import numpy as np

from pdm_common.contracts import AssetKind
from simulators.fleet import generate, load_scenario
from simulators.fleet.regime_fit import fit_asset, summarise
from tests.simulators.test_fleet_support import SCENARIOS, SEED


def test_regime_regression_leaves_large_slow_residuals_on_a_healthy_fleet() -> None:
    scenario = load_scenario(SCENARIOS / "healthy-winter.toml").model_copy(
        update={"days": 15.0, "heat_pumps": 10, "pumps": 0}
    )
    run = generate(scenario, SEED)
    start_ms = scenario.start.timestamp() * 1000.0
    fits = [
        f
        for s in run.series
        if s.ref.kind is AssetKind.HEAT_PUMP
        for f in fit_asset(s.ref.kind.value, s, train_days=(1.0, 8.0), test_days=(8.0, 15.0), start_ms=start_ms)
    ]
    summary = summarise(fits)
    assert len(summary) == 8  # every measured, non-driver heat-pump channel was fitted
    ratios = np.array([v["ratio"] for v in summary.values()])
    ac1 = np.array([v["ac1"] for v in summary.values()])
    assert (ratios >= 2.0).sum() >= 5, summary
    assert (ac1 >= 0.5).sum() >= 6, summary
    assert ratios.min() >= 1.0, "a residual below the sensor noise would mean the fit is cheating"
