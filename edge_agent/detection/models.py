"""The registry of detectors: name -> class, imported only when an asset uses it.

River's anomaly, preprocessing and drift modules import ``scipy.stats`` (river-notes.md: about 1.3 s
and 110 MB on their own), so a detector built on them lives in its own module and is imported the
first time a kind or an asset is configured to use it; the default regime detector needs numpy only.
Costs measured per detector: ``docs/detection.md`` ("What each detector costs").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from edge_agent.detection.plan import KindPlan
from edge_agent.detection.protocol import Detector
from edge_agent.detection.settings import DETECTOR_NAMES, DetectionSettings

__all__ = ["DETECTORS", "make_detector"]

DETECTORS: dict[str, str] = {
    "regime": "edge_agent.detection.regime:RegimeDetector",
    "zscore": "edge_agent.detection.zscore:RobustZScore",
    "hst": "edge_agent.detection.river_models:HalfSpaceTreesDetector",
    "river_linear": "edge_agent.detection.river_models:RiverResidualDetector",
}
"""Every detector by its configuration name; the contract suite runs over all of them."""

assert tuple(DETECTORS) == DETECTOR_NAMES, "settings.DETECTOR_NAMES must list the registry"

DetectorFactory = Callable[..., Detector]


def detector_class(name: str) -> DetectorFactory:
    """The class registered as ``name`` (imports its module on first use).

    Raises:
        KeyError: no detector of that name.
    """
    module, _, attr = DETECTORS[name].partition(":")
    return cast(DetectorFactory, getattr(importlib.import_module(module), attr))


def make_detector(name: str, plan: KindPlan, settings: DetectionSettings, *, seed: int) -> Detector:
    """A new detector ``name`` for an asset of ``plan``'s kind.

    Raises:
        KeyError: no detector of that name.
    """
    return detector_class(name)(plan, settings, seed=seed)
