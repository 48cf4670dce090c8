"""Detection core: per-asset streaming detectors behind one protocol (pure, picklable, time passed in).

``AssetDetector`` is the per-asset shell (time, channels, operating state, sensor health, machine
versus sensor, diagnosis, time to failure, plot series); the model inside it is any registered
:class:`~edge_agent.detection.protocol.Detector` (``models.DETECTORS``: the regime-residual detector by
default, a frozen robust z-score, River's HalfSpaceTrees and a River residual model).
"""

from edge_agent.detection.detector import Assessment, AssetDetector, Finding, MetricDeviation
from edge_agent.detection.models import DETECTORS, make_detector
from edge_agent.detection.plan import KindPlan, plan_for
from edge_agent.detection.protocol import Detector, Evidence, Sample, Score
from edge_agent.detection.settings import DetectionSettings
from edge_agent.detection.signatures import Diagnosis, classify

__all__ = [
    "DETECTORS",
    "Assessment",
    "AssetDetector",
    "DetectionSettings",
    "Detector",
    "Diagnosis",
    "Evidence",
    "Finding",
    "KindPlan",
    "MetricDeviation",
    "Sample",
    "Score",
    "classify",
    "make_detector",
    "plan_for",
]
