"""Time, gaps and silence in the detection core: never a crash, never a sensor fault, never negative.

Issue 10 item 6 and issue 16 items 3-4: a timestamp that goes backwards crashed the agent and poisoned
its checkpoint; a 40-minute gap at night and each restart opened dozens of false dropout tickets.
"""

from __future__ import annotations

import pickle
from datetime import timedelta

from edge_agent.detection import AssetDetector, DetectionSettings, plan_for
from edge_agent.engine import DetectionEngine
from pdm_common.contracts import AlertEvent, SensorStatus, Telemetry
from pdm_common.profiles import ProfileRegistry
from tests.agent_core.conftest import alerts, feed, new_engine
from tests.agent_core.synthetic import T0, HeatPumpStream
from tests.agent_core.test_detector_contract import PLAN, SETTINGS, rig

HEAT_PUMP = plan_for(ProfileRegistry.builtin().require("heat_pump"))


def test_backwards_repeated_and_jumping_timestamps_are_counted_and_skipped() -> None:
    engine = new_engine(warmup_h=2.0, warmup_samples=60)
    samples = list(HeatPumpStream().samples(6))
    feed(engine, HeatPumpStream(), 4)
    last_tel, _ = samples[4 * 60 - 1]
    # The same sample again, one an hour old, then the stream continues after a two-hour jump.
    assert engine.process(last_tel, last_tel.ts) == []
    old, _ = samples[3 * 60]
    assert engine.process(old, old.ts) == []
    assert engine.counters.skipped == {"duplicate": 1, "stale": 1}
    later = [(t.model_copy(update={"ts": t.ts + timedelta(hours=2)}), n + timedelta(hours=2))
             for t, n in samples[4 * 60 : 5 * 60]]
    for tel, now in later:
        engine.process(tel, now)
    assert engine.counters.gaps == 1
    state = engine.asset_states()[0]
    assert 0.0 <= state.warmup_progress <= 1.0
    clone: DetectionEngine = pickle.loads(pickle.dumps(engine))
    assert clone.validate() == {}


def test_a_clock_stepped_back_for_good_is_a_new_timeline() -> None:
    # The NAB machine file steps back 55 minutes once; NTP correcting a PLC does the same for good.
    det = AssetDetector(PLAN, SETTINGS, seed=1)
    stream = list(rig(30))
    for x, t in stream:
        det.observe(x, t, alert_active=False)
    back = [(x, t - 3 * 3600) for x, t in rig(4, start_h=30)]
    verdicts = [det.observe(x, t, alert_active=False) for x, t in back]
    skipped = [v.skipped for v in verdicts]
    assert skipped[:9] == ["stale"] * 9 and verdicts[9].clock_step and not any(skipped[10:])
    assert det.problems() == [] and 0.0 <= det.warmup_progress(back[-1][1]) <= 1.0


def test_a_replay_of_samples_already_seen_is_skipped_however_long() -> None:
    # A broker restarted from its persistence file redelivered ~400 samples per asset that the agent
    # had processed: taken for a clock step, they were learned again and moved alert openings.
    det = AssetDetector(PLAN, SETTINGS, seed=1)
    stream = list(rig(30))
    for n, (x, t) in enumerate(stream):
        det.observe(x, t, alert_active=False, seq=n)
    replay = [det.observe(x, t, alert_active=False, seq=n) for n, (x, t) in enumerate(stream[-400:], len(stream) - 400)]
    assert {v.skipped for v in replay} == {"stale", "duplicate"} and not any(v.clock_step for v in replay)
    # The same old times with the counter running on: the asset's clock stepped back, a new timeline.
    stepped = [det.observe(x, t, alert_active=False, seq=len(stream) + n)
               for n, (x, t) in enumerate(stream[-20:])]
    assert [v.skipped for v in stepped[:9]] == ["stale"] * 9 and stepped[9].clock_step


def test_silence_gaps_and_restarts_are_not_sensor_faults() -> None:
    engine = new_engine()
    stream = HeatPumpStream()
    events = feed(engine, stream, 30)
    # 40 minutes of silence at night, then the stream resumes (the agent's tick marks the asset silent).
    last = T0 + timedelta(hours=30)
    events += engine.tick(last + timedelta(minutes=20))
    events += feed(engine, stream, 4, start_h=30 + 40 / 60)
    # A restart: the engine is restored from its checkpoint and the stream resumes after 10 minutes.
    engine = pickle.loads(pickle.dumps(engine))
    events += feed(engine, stream, 4, start_h=34 + 50 / 60)
    assert alerts(events) == []
    assert engine.counters.gaps >= 1
    assert {s.status for s in engine.asset_states()[0].sensor_health} == {SensorStatus.OK}


def test_a_dropout_needs_the_other_channels_to_keep_arriving() -> None:
    det = AssetDetector(HEAT_PUMP, DetectionSettings(warmup_h=1.0, warmup_samples=30), seed=1)
    for tel, now in HeatPumpStream(defrost=False).samples(3):
        det.observe(tel.metrics, now.timestamp(), alert_active=False)
    t = (T0 + timedelta(hours=3)).timestamp()
    # A sample that carries only the compressor's state: the frame was partial, no sensor died.
    for i in range(30):
        det.observe({"compressor_hz": 50.0, **dict.fromkeys(("fan_rpm", "flow_lpm"), None)}, t + 60 * i,
                    alert_active=False)
    assert SensorStatus.DROPOUT not in det.sensors.values()


def test_an_impulse_channel_is_never_a_spiking_sensor() -> None:
    pump = ProfileRegistry.builtin().require("pump")
    engine = DetectionEngine(DetectionSettings(warmup_h=1.0, warmup_samples=60), gateway="gw", agent_version="0.3.0")
    events: list[AlertEvent] = []
    for i in range(24 * 60):
        ts = T0 + timedelta(minutes=i)
        # Impacts: kurtosis and envelope jump on single samples (the bearing's impacts, B2).
        impact = i % 37 == 0 and i > 200
        metrics: dict[str, float | bool | None] = {
            "speed_rpm": 1480.0 + (i % 3), "running": True,
            "vibration_kurtosis": 3.0 + (0.01 * (i % 7)) + (9.0 if impact else 0.0),
            "vibration_envelope_g": 0.2 + 0.001 * (i % 5) + (1.5 if impact else 0.0),
            **{n: (c.normal_low or 0) + 1 + 0.01 * (i % 11) for n, c in pump.channels.items()
               if n not in ("speed_rpm", "running", "vibration_kurtosis", "vibration_envelope_g")},
        }
        tel = Telemetry(site="s", asset="p1", ts=ts, seq=i, kind="pump", metrics=metrics)
        events += alerts(engine.process(tel, ts))
    assert [e for e in events if e.probable_fault.code == "sensor_fault"] == []
    assert SensorStatus.SPIKE not in engine._assets[("s", "p1")].detector.sensors.values()


def test_hourly_and_one_hertz_streams_warm_up_by_time() -> None:
    for step_s in (3600.0, 1.0):
        det = AssetDetector(PLAN, DetectionSettings(warmup_h=24.0 if step_s > 1 else 0.5, warmup_samples=10))
        n = 60 if step_s > 1 else 3000
        progress = [det.observe({"load_pct": 50.0 + (i % 10), **{f"ch{k}_c": 20.0 + 0.01 * (i % 13) + k
                                                                  for k in range(4)}},
                                1.7e9 + i * step_s, alert_active=False).warmup_progress for i in range(n)]
        assert progress[-1] == 1.0
        hours = progress.index(1.0) * step_s / 3600
        assert hours >= (24.0 if step_s > 1 else 0.5), (step_s, hours)
