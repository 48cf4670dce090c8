"""The regime-residual detector's own rules, on the declared rig of the detector contract suite."""

from __future__ import annotations

import numpy as np

from edge_agent.detection.models import make_detector
from edge_agent.detection.protocol import Sample
from edge_agent.detection.regime import RegimeDetector
from tests.agent_core.test_detector_contract import PLAN, SETTINGS, rig

HOUR = 3600.0


def _step(model: RegimeDetector, x: dict[str, float | bool | None], t: float) -> tuple[bool, float]:
    """Score then learn one sample; (scored, strongest drift evidence) — the protocol's order."""
    values = {k: float(v) for k, v in x.items() if isinstance(v, float | int) and not isinstance(v, bool)}
    sample = Sample(t=t, values=values)
    score = model.score_one(sample)
    model.learn_one(sample, score, allowed=True)
    drift = 0.0 if score.evidence is None else float(np.max(np.abs(score.evidence.drift)))
    return score.scored, drift


def _after(far: dict[str, float | bool | None] | None) -> list[float]:
    """Drift evidence of a day of healthy hourly samples after a warm-up, with ``far`` in between."""
    model = make_detector("regime", PLAN, SETTINGS, seed=1)
    assert isinstance(model, RegimeDetector)
    # One sample an hour (as the engines of C-MAPSS, fed one flight cycle an hour): the drift window's
    # four-hour half-life holds only a few samples, so one wild residual would weigh a lot.
    hourly = list(rig(96.0))[::6]
    for x, t in hourly[:72]:
        _step(model, x, t)
    assert model.warm
    if far is not None:
        scored, _ = _step(model, far, hourly[72][1] - HOUR / 2)
        assert not scored, "a regime never seen is learned, not judged"
    return [_step(model, x, t)[1] for x, t in hourly[72:]]


def test_a_never_seen_regime_is_learned_without_carrying_its_residual_into_the_next_samples() -> None:
    # Far outside the load range of the warm-up, with readings the model cannot extrapolate to.
    far: dict[str, float | bool | None] = {"load_pct": 400.0, **{f"ch{k}_c": 500.0 for k in range(4)}}
    plain, after_far = _after(None), _after(far)
    # What the model got wrong out there is not the machine's drift here: the healthy samples that
    # follow read as they would have without it (before the fix: up to +0.21 of the threshold, decaying).
    assert max(abs(a - b) for a, b in zip(plain, after_far, strict=True)) < 0.08
