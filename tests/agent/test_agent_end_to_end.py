"""The agent end to end over a real broker: simulated faulty asset → opened alert; restarts.

The fleet simulator's demo scenario gives one heat pump (hp-0004) a clogging water circuit that trips its
flow switch in the second half of the run (when is the simulation's to say: the ground truth records it);
its one-minute samples are published over MQTT exactly as sensors would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.app import EdgeAgent
from edge_agent.config import AgentSettings, MetricsSettings
from pdm_common.contracts import AlertEvent, AssetState, EventType
from pdm_common.mqtt import MqttClient, MqttSettings
from simulators.fleet.runner import FleetRun, generate
from simulators.fleet.scenario import load_scenario
from tests.conftest import BrokerInfo
from tests.mqtt_helpers import Recorder, unique_id

DEMO = Path(__file__).resolve().parents[2] / "simulators" / "scenarios" / "demo.toml"
ASSET = "hp-0004"


@pytest.fixture(scope="module")
def demo_run() -> FleetRun:
    return generate(load_scenario(DEMO), 7)


@pytest.fixture(scope="module")
def failure_ms(demo_run: FleetRun) -> int:
    """When the unit's low water flow tripped it (ground truth)."""
    failure = demo_run.truth.asset(ASSET).machine_faults[0].failure
    assert failure is not None, "the demo's low-flow fault must fail inside the run"
    return int(failure.timestamp() * 1000)


@pytest.fixture(scope="module")
def fault_records(demo_run: FleetRun) -> list[tuple[str, bytes, int]]:
    """(topic, payload, epoch ms) of the unit's twelve days, in time order."""
    out = []
    for rec in demo_run.iter_records():
        if rec["asset"] != ASSET:
            continue
        payload = json.dumps({k: rec[k] for k in ("ts", "seq", "kind", "metrics")}).encode()
        out.append((f"pdm/v1/{rec['site']}/{rec['asset']}/telemetry", payload, int(rec["ts"])))
    return out


def _publish(settings: MqttSettings, records: list[tuple[str, bytes, int]]) -> None:
    acked: set[int] = set()
    cond = threading.Condition()

    def on_ack(mid: int) -> None:
        with cond:
            acked.add(mid)
            cond.notify_all()

    client = MqttClient(settings, client_id=unique_id("sensors"), on_publish_ack=on_ack)
    client.start()
    try:
        assert client.wait_connected(10)
        mids = {client.publish(topic, payload, qos=1) for topic, payload, _ in records}
        with cond:
            assert cond.wait_for(lambda: mids <= acked, 120), "broker did not acknowledge the telemetry"
    finally:
        client.stop()


class RunningAgent:
    """An agent on its own thread, with the settings a test needs."""

    def __init__(self, broker: BrokerInfo, state_dir: Path, gateway: str, **over: Any) -> None:
        settings = AgentSettings(
            gateway=gateway, site="oslo-north", state_dir=state_dir, clock="telemetry",
            mqtt=broker.settings(client_id=gateway), inbound_queue_max=100_000,
            metrics=MetricsSettings(enabled=False), **over,
        )
        self.agent = EdgeAgent(settings)
        self._thread = threading.Thread(target=self.agent.run, daemon=True)

    def __enter__(self) -> EdgeAgent:
        self.agent.start()
        assert self.agent.mqtt.wait_connected(10)
        self._thread.start()
        return self.agent

    def __exit__(self, *_exc: object) -> None:
        self.agent.request_stop()
        self._thread.join(30)

    @staticmethod
    def wait_done(agent: EdgeAgent, valid: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while agent.counters.valid < valid or not agent.idle():
            assert time.monotonic() < deadline, f"agent handled {agent.counters.valid}/{valid}"
            time.sleep(0.1)


def _alerts(rec: Recorder) -> list[AlertEvent]:
    return [AlertEvent.from_json(m.payload, max_bytes=1 << 20) for m in rec.messages if m.topic.endswith("/alert")]


def _states(rec: Recorder) -> list[AssetState]:
    return [AssetState.from_json(m.payload, max_bytes=1 << 20) for m in rec.messages if m.topic.endswith("/state")]


@pytest.fixture
def recorder(mqtt_broker: BrokerInfo) -> Iterator[Recorder]:
    with Recorder(mqtt_broker.settings(), f"pdm/v1/+/{ASSET}/alert", f"pdm/v1/+/{ASSET}/state") as rec:
        yield rec


def test_faulty_asset_opens_an_explained_alert_before_failure(
    mqtt_broker: BrokerInfo, tmp_path: Path, fault_records: list[tuple[str, bytes, int]], recorder: Recorder,
    failure_ms: int,
) -> None:
    with RunningAgent(mqtt_broker, tmp_path, unique_id("gw-e2e")) as agent:
        _publish(mqtt_broker.settings(), fault_records)
        RunningAgent.wait_done(agent, len(fault_records))
    opened = [a for a in _alerts(recorder) if a.event is EventType.OPENED and not a.is_sensor_fault]
    assert opened, "no machine alert was opened for a clogging water circuit"
    first = opened[0]
    assert first.asset == ASSET and first.event_seq == 1
    assert first.first_seen.timestamp() * 1000 < failure_ms
    assert first.contributors, "an alert must say which sensors are off"
    assert first.agent.gateway == agent.settings.gateway
    assert _states(recorder)[-1].samples_seen > 0


def test_restart_mid_stream_loses_nothing_duplicates_nothing_and_stays_warm(
    mqtt_broker: BrokerInfo, tmp_path: Path, fault_records: list[tuple[str, bytes, int]], recorder: Recorder
) -> None:
    gateway = unique_id("gw-restart")
    half = len(fault_records) * 2 // 3  # past warm-up and past the fault's onset
    with RunningAgent(mqtt_broker, tmp_path, gateway) as first:
        _publish(mqtt_broker.settings(), fault_records[:half])
        RunningAgent.wait_done(first, half)
    seen_before = _states(recorder)[-1].samples_seen
    states_before = len(_states(recorder))
    with RunningAgent(mqtt_broker, tmp_path, gateway) as second:
        _publish(mqtt_broker.settings(), fault_records[half:])
        RunningAgent.wait_done(second, len(fault_records) - half)
    after = _states(recorder)[states_before:]
    assert after, "the restarted agent published no state"
    assert after[0].warmup_progress == 1.0, "the restarted agent re-warmed instead of using its checkpoint"
    # Learning is frozen while the fault's alert is open, so samples_seen may stand still; it must not drop.
    assert after[0].samples_seen >= seen_before, "the restarted agent forgot what it had learned"
    by_alert: dict[str, dict[int, AlertEvent]] = {}
    for ev in _alerts(recorder):
        seqs = by_alert.setdefault(ev.alert_id, {})
        if ev.event_seq in seqs:
            before, now = seqs[ev.event_seq].model_dump(), ev.model_dump()
            differ = {k: (before[k], now[k]) for k in before if before[k] != now[k]}
            assert not differ, f"two different events with seq {ev.event_seq} for {ev.alert_id}: {differ}"
        seqs[ev.event_seq] = ev
    assert by_alert, "no alert at all"
    for alert_id, seqs in by_alert.items():
        assert sorted(seqs) == list(range(1, max(seqs) + 1)), f"{alert_id} lost events: {sorted(seqs)}"


def _spawn(broker: BrokerInfo, state_dir: Path, gateway: str) -> subprocess.Popen[bytes]:
    config = state_dir / "agent.toml"
    config.write_text(
        f'gateway = "{gateway}"\nsite = "oslo-north"\nstate_dir = "{state_dir}"\nclock = "telemetry"\n'
        "checkpoint_interval_s = 5.0\ninbound_queue_max = 100000\n"
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nprotocol = "{broker.protocol}"\n'
        'reconnect_min_s = 0.2\nreconnect_max_s = 2.0\n[metrics]\nenabled = false\n[log]\nlevel = "warning"\n',
        encoding="utf-8",
    )
    return subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "--config", str(config), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_kill_9_mid_stream_then_restart_keeps_alerts_consistent(
    mqtt_broker: BrokerInfo, tmp_path: Path, fault_records: list[tuple[str, bytes, int]], recorder: Recorder
) -> None:
    gateway = unique_id("gw-kill9")
    cut = len(fault_records) * 5 // 6  # day 10: the fault is alerted by then
    status = f"pdm/v1/oslo-north/gateway/{gateway}/status"
    with Recorder(mqtt_broker.settings(), status) as online:
        proc = _spawn(mqtt_broker, tmp_path, gateway)
        # Publish only once the agent has subscribed: from then on its persistent session holds
        # telemetry for it, across the crash too.
        assert online.wait_for(lambda msgs: any(b'"online"' in m.payload for m in msgs), 30)
    try:
        _publish(mqtt_broker.settings(), fault_records[:cut])
        assert recorder.wait_for(lambda _m: any(a.event is EventType.OPENED for a in _alerts(recorder)), 120)
        proc.kill()  # SIGKILL while it is still working through the stream
        _, err = proc.communicate(timeout=10)
        assert b"Traceback" not in err, err.decode()[-3000:]
        proc = _spawn(mqtt_broker, tmp_path, gateway)
        _publish(mqtt_broker.settings(), fault_records[cut:])
        last_ts = fault_records[-1][2]
        assert recorder.wait_for(
            lambda _m: any(s.ts.timestamp() * 1000 >= last_ts - 3_600_000 for s in _states(recorder)), 120
        ), "the restarted agent did not work through the rest of the stream"
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert b"Traceback" not in err, err.decode()[-3000:]
    by_alert: dict[str, dict[int, AlertEvent]] = {}
    for ev in _alerts(recorder):
        by_alert.setdefault(ev.alert_id, {})[ev.event_seq] = ev
    machine = [a for a, seqs in by_alert.items() if not seqs[min(seqs)].is_sensor_fault]
    assert len(machine) == 1, f"the fault must stay one alert across the crash, got {sorted(by_alert)}"
    for alert_id, seqs in by_alert.items():
        assert sorted(seqs) == list(range(1, max(seqs) + 1)), f"{alert_id} lost events: {sorted(seqs)}"
