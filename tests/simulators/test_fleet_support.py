"""Helpers shared by the fleet-simulator tests (tiny scenario, operating mask, criterion check), and their test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from pdm_common.catalog import FailureCriterion, is_operating
from pdm_common.contracts import AssetKind
from simulators.fleet import generate, load_scenario
from simulators.fleet.runner import AssetSeries

SCENARIOS = Path(__file__).resolve().parents[2] / "simulators" / "scenarios"
TINY = SCENARIOS / "tiny-test.toml"
SEED = 20260105


def operating(series: AssetSeries) -> npt.NDArray[np.bool_]:
    """Samples where failure criteria apply (vectorised :func:`pdm_common.catalog.is_operating`)."""
    if series.ref.kind is AssetKind.PUMP:
        return series.flags["running"].copy()
    return np.asarray((series.values["compressor_hz"] > 0) & ~series.flags["defrost"], dtype=bool)


def crossed(values: npt.NDArray[np.float64], criterion: FailureCriterion) -> npt.NDArray[np.bool_]:
    """Element-wise :meth:`FailureCriterion.crossed` (NaN never crosses)."""
    with np.errstate(invalid="ignore"):
        if criterion.direction == "above":
            return np.asarray(values >= criterion.threshold, dtype=bool)
        return np.asarray(values <= criterion.threshold, dtype=bool)


def test_operating_mask_agrees_with_the_catalog() -> None:
    run = generate(load_scenario(TINY).model_copy(update={"days": 0.5}), SEED)
    masks = {s.ref.name: operating(s) for s in run.series}
    for record in run.iter_records():
        expected = is_operating(AssetKind(record["kind"]), record["metrics"])
        assert bool(masks[record["asset"]][record["seq"]]) is expected
