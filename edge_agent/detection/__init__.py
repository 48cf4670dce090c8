"""Detection core: per-asset streaming detectors (pure, picklable, time passed in)."""

from edge_agent.detection.detector import Assessment, AssetDetector, Finding, MetricDeviation
from edge_agent.detection.settings import DetectionSettings
from edge_agent.detection.signatures import SIGNATURES, Diagnosis, classify

__all__ = [
    "SIGNATURES",
    "Assessment",
    "AssetDetector",
    "DetectionSettings",
    "Diagnosis",
    "Finding",
    "MetricDeviation",
    "classify",
]
