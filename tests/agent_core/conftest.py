"""Fixtures of the core tests: an engine factory and a stream runner (fake clock: the sample times)."""

from __future__ import annotations

import pytest

from edge_agent.detection import DetectionSettings
from edge_agent.engine import DetectionEngine
from pdm_common.contracts import AlertEvent, AssetState
from tests.agent_core.synthetic import HeatPumpStream

Events = list[AlertEvent | AssetState]


def new_engine(**overrides: object) -> DetectionEngine:
    """An engine with default settings except ``overrides``."""
    return DetectionEngine(DetectionSettings.model_validate(overrides), gateway="gw-test", agent_version="0.3.0")


def feed(engine: DetectionEngine, stream: HeatPumpStream, hours: float, *, start_h: float = 0.0) -> Events:
    """Push ``hours`` of ``stream`` through ``engine``; every event it returned, in order."""
    out: Events = []
    for tel, now in stream.samples(hours, start_h=start_h):
        out += engine.process(tel, now)
    return out


def alerts(events: Events) -> list[AlertEvent]:
    """Only the alert events."""
    return [e for e in events if isinstance(e, AlertEvent)]


@pytest.fixture
def engine() -> DetectionEngine:
    """A fresh engine with default settings."""
    return new_engine()

