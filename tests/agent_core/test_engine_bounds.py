"""Bounds and refusals of the engine: unknown kinds, declared kinds, asset and channel limits, bad state.

Issue 14 item 5: 200 fresh metric names on one asset took the agent from 78 to 362 MB; 3,000 random
asset ids filled ``max_assets`` and locked a genuine new asset out.
"""

from __future__ import annotations

import pickle
from datetime import timedelta

import numpy as np

from edge_agent.engine import DetectionEngine
from pdm_common.contracts import AlertEvent, EventType, Telemetry
from pdm_common.profiles import ProfileRegistry
from tests.agent_core.conftest import feed, new_engine
from tests.agent_core.synthetic import T0, HeatPumpStream
from tests.agent_core.test_detector_contract import RIG, rig

FAST = {"warmup_h": 2.0, "warmup_samples": 60}


def tel_at(asset: str, minute: int, *, kind: str = "heat_pump",
           metrics: dict[str, float | bool | None] | None = None) -> Telemetry:
    ts = T0 + timedelta(minutes=minute)
    return Telemetry(site="site-a", asset=asset, ts=ts, seq=minute, kind=kind, metrics=metrics or {"x_c": 1.0})


def test_an_unknown_kind_is_refused_with_a_reason_never_scored_as_another() -> None:
    engine = new_engine()
    assert engine.process(tel_at("b-1", 0, kind="boiler"), T0) == []
    assert engine.last_refusal is not None and engine.last_refusal.reason == "unknown_kind"
    assert "[kinds.boiler]" in engine.last_refusal.detail
    assert engine.counters.refused["unknown_kind"] == 1 and engine.asset_states() == []


def test_a_declared_generic_kind_works_end_to_end_and_says_unclassified() -> None:
    profiles = ProfileRegistry.with_declared({"rig": RIG.model_dump(mode="json", exclude={"name"})})
    engine = DetectionEngine(new_engine(warmup_h=8.0, warmup_samples=40).settings, gateway="gw", agent_version="0.3.0",
                             profiles=profiles)
    events: list[AlertEvent] = []

    def step_two(h: float, x: dict[str, float | bool | None]) -> None:
        if h >= 30:
            for n in ("ch1_c", "ch2_c"):
                v = x[n]
                assert isinstance(v, float)
                x[n] = v + 30.0

    for i, (x, t) in enumerate(rig(40, fault=step_two)):
        ts = T0 + timedelta(seconds=t - 1.7e9)
        out = engine.process(Telemetry(site="plant", asset="rig-1", ts=ts, seq=i, kind="rig", metrics=x), ts)
        events += [e for e in out if isinstance(e, AlertEvent)]
    opened = [e for e in events if e.event is EventType.OPENED]
    assert opened and opened[0].kind == "rig"
    assert opened[0].probable_fault.code == "unclassified" and opened[0].probable_fault.confidence == 0.0
    assert {c.metric for c in opened[0].contributors} >= {"ch1_c", "ch2_c"}


def test_made_up_asset_ids_cannot_lock_out_a_genuine_asset() -> None:
    engine = new_engine(max_assets=5, **FAST)
    feed(engine, HeatPumpStream(asset="hp-0001"), 3)  # warm, reporting: keeps its place
    for i in range(50):  # a flood of random ids, one sample each
        engine.process(tel_at(f"junk-{i}", 180 + i), T0 + timedelta(minutes=180 + i))
    genuine = HeatPumpStream(asset="hp-0002")
    feed(engine, genuine, 0.5, start_h=3.5)
    assert {"hp-0001", "hp-0002"} <= {s.asset for s in engine.asset_states()}
    assert engine.counters.evicted["never_warm"] >= 45 and len(engine.asset_states()) <= 5


def test_a_full_table_of_warm_reporting_assets_refuses_the_newcomer() -> None:
    engine = new_engine(max_assets=1, **FAST)
    feed(engine, HeatPumpStream(asset="hp-0001"), 3)
    assert feed(engine, HeatPumpStream(asset="hp-0002"), 0.1, start_h=3) == []
    assert engine.last_refusal is not None and engine.last_refusal.reason == "asset_limit"
    # After a week of silence the old asset makes room.
    later = HeatPumpStream(asset="hp-0003")
    assert feed(engine, later, 0.1, start_h=3 + 24 * 8)
    assert engine.counters.evicted["silent"] == 1


def test_fresh_metric_names_are_capped_per_asset() -> None:
    engine = new_engine(max_channels=20)
    for i in range(300):
        metrics: dict[str, float | bool | None] = {"compressor_hz": 50.0, **{f"junk_{i}_{k}_c": 1.0 for k in range(5)}}
        engine.process(tel_at("hp-9", i, metrics=metrics), T0 + timedelta(minutes=i))
    det = engine._assets[("site-a", "hp-9")].detector
    assert len(det.channels) == 20
    assert engine.counters.channels_refused["channel_limit"] == 300 * 5 + 1 - 20
    size = len(pickle.dumps(engine))
    assert size < 200_000, size


def test_an_asset_with_invalid_restored_state_rewarms_alone() -> None:
    engine = new_engine(**FAST)
    feed(engine, HeatPumpStream(asset="hp-0001"), 3)
    feed(engine, HeatPumpStream(asset="hp-0002"), 3)
    restored: DetectionEngine = pickle.loads(pickle.dumps(engine))
    broken = restored._assets[("site-a", "hp-0002")].detector.model
    broken._theta[:] = np.nan  # type: ignore[attr-defined]  # a torn or tampered state
    bad = restored.validate()
    assert list(bad) == [("site-a", "hp-0002")] and bad[("site-a", "hp-0002")]
    states = {s.asset: s.warmup_progress for s in restored.asset_states()}
    assert states == {"hp-0001": 1.0, "hp-0002": 0.0}
    assert restored.counters.rewarmed["invalid_state"] == 1
