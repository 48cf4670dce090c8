"""The hourly trend behind the time to failure: per-hour means, masks, growing channels, the estimate."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.detection.plan import CriterionPlan
from edge_agent.detection.trend import TrendTracker

CRITERION = CriterionPlan(metric="b", direction="above", threshold=10.0, description="b above 10")


def _add(tr: TrendTracker, hour: int, names: list[str], res: list[float], val: list[float], *,
         mask: list[bool]) -> None:
    tr.add(hour, names, np.array(res), np.array(val), np.array(mask))


def test_an_hour_holds_the_mean_of_its_samples_and_a_masked_channel_counts_nothing() -> None:
    tr = TrendTracker()
    _add(tr, 100, ["a", "b"], [1.0, 2.0], [10.0, 20.0], mask=[True, True])
    _add(tr, 100, ["a", "b"], [3.0, 99.0], [30.0, 99.0], mask=[True, False])
    _add(tr, 101, ["a", "b"], [0.0, 0.0], [0.0, 0.0], mask=[False, False])  # closes hour 100
    hours, res, val = tr._series("a")
    assert hours.tolist() == [100] and res.tolist() == [2.0] and val.tolist() == [20.0]
    hours, res, val = tr._series("b")
    assert hours.tolist() == [100] and res.tolist() == [2.0] and val.tolist() == [20.0]


def test_a_channel_that_appears_later_gets_its_own_column_and_the_old_ones_keep_their_history() -> None:
    tr = TrendTracker()
    _add(tr, 1, ["a"], [1.0], [1.0], mask=[True])
    _add(tr, 2, ["a", "b"], [2.0, 5.0], [2.0, 5.0], mask=[True, True])
    _add(tr, 3, ["a", "b"], [0.0, 0.0], [0.0, 0.0], mask=[False, False])
    assert tr._series("a")[1].tolist() == [1.0, 2.0]
    assert tr._series("b")[0].tolist() == [2] and tr._series("b")[1].tolist() == [5.0]


def test_a_channel_list_that_does_not_extend_the_columns_starts_the_history_afresh() -> None:
    tr = TrendTracker()
    _add(tr, 1, ["a", "b"], [1.0, 1.0], [1.0, 1.0], mask=[True, True])
    _add(tr, 2, ["a", "b"], [1.0, 1.0], [1.0, 1.0], mask=[True, True])
    # Same length, other channels (a detector that restarted with other inputs): no column may
    # receive another channel's values.
    _add(tr, 3, ["c", "a"], [7.0, 8.0], [7.0, 8.0], mask=[True, True])
    _add(tr, 4, ["c", "a"], [0.0, 0.0], [0.0, 0.0], mask=[False, False])
    assert tr.names == ["c", "a"]
    assert tr._series("c")[1].tolist() == [7.0]
    assert tr._series("a")[1].tolist() == [8.0]
    assert tr._series("b")[0].size == 0


def test_a_steady_rise_gives_the_hours_left_to_the_criterion() -> None:
    tr = TrendTracker()
    for h in range(24):  # residual and reading of b rise 0.1 an hour: 5.0 + 0.1 h
        for _ in range(3):
            _add(tr, h, ["a", "b"], [0.0, 0.1 * h], [0.0, 5.0 + 0.1 * h], mask=[True, True])
    est = tr.estimate(CRITERION)
    assert est is not None
    # Worst level of the closed hours is 5.0 + 0.1 * 22 = 7.2; (10 - 7.2) / 0.1 = 28 hours.
    assert est.p50_h == pytest.approx(28.0, abs=0.1)
    assert est.p10_h <= est.p50_h
    assert tr.problems() == []
