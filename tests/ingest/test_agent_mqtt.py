"""The agent's ingest slice against a real broker: dead letters, status birth/will, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.app import EdgeAgent
from edge_agent.config import AgentSettings, MetricsSettings
from pdm_common.contracts import DeadLetter, GatewayStatus
from tests.conftest import BrokerInfo
from tests.mqtt_helpers import Publisher, Recorder, unique_id

GOOD = b'{"ts": 1768586531250, "seq": 1, "kind": "heat_pump", "metrics": {"flow_temp_c": 41.0, "defrost": false}}'


@pytest.fixture
def agent(mqtt_broker: BrokerInfo, tmp_path: Path) -> Iterator[EdgeAgent]:
    gateway = unique_id("gw")
    settings = AgentSettings(gateway=gateway, site="site-a", state_dir=tmp_path,
                             mqtt=mqtt_broker.settings(client_id=gateway), metrics=MetricsSettings(enabled=False))
    agent = EdgeAgent(settings)
    agent.start()
    assert agent.mqtt.wait_connected(10)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.request_stop()
        thread.join(10)


def test_bad_payloads_are_dead_lettered_with_reasons(mqtt_broker: BrokerInfo, agent: EdgeAgent) -> None:
    cases = {
        "pdm/v1/site-a/hp-1/telemetry": (b"{not json", "not_json"),
        "pdm/v1/site-a/hp-2/telemetry": (b'{"ts": NaN, "seq": 1, "kind": "heat_pump", "metrics": {"a": 1}}',
                                         "non_finite"),
        "pdm/v1/site-a/hp-3/telemetry": (b'{"ts": 1768586531250, "seq": "x", "kind": "heat_pump", "metrics": {}}',
                                         "invalid_field"),
        "pdm/v1/site-a/hp-4/telemetry": (b"\xff\x00\x01", "not_utf8"),
        "pdm/v1/site-a/hp-5/telemetry": (b"[" + b"1," * 9000 + b"1]", "oversize"),
        "pdm/v1/site-a/hp-6/cmd": (b'{"command": "snooze"}', "invalid_field"),
    }
    settings = mqtt_broker.settings()
    with Recorder(settings, "pdm/v1/+/+/deadletter") as rec, Publisher(settings) as pub:
        pub.send("pdm/v1/site-a/hp-0/telemetry", GOOD)
        for topic, (payload, _reason) in cases.items():
            pub.send(topic, payload)
        assert rec.wait_for(lambda msgs: len(msgs) >= len(cases))
        for topic, (_payload, reason) in cases.items():
            letters = rec.on(topic.rsplit("/", 1)[0] + "/deadletter")
            assert len(letters) == 1, topic
            letter = DeadLetter.from_json(letters[0].payload, max_bytes=1 << 20)
            assert letter.reason == reason
            assert letter.topic == topic
    assert agent.counters.valid == 1
    assert agent.counters.dead_lettered == len(cases)
    assert agent.counters.received == len(cases) + 1


def test_status_birth_is_retained_online(mqtt_broker: BrokerInfo, agent: EdgeAgent) -> None:
    topic = agent.topics.gateway_status("site-a", agent.settings.gateway)
    with Recorder(mqtt_broker.settings(), topic) as rec:  # subscribes after the birth: retained copy
        # The agent also refreshes its status live; the broker's retained copy is the one that counts.
        assert rec.wait_for(lambda msgs: any(m.retain for m in msgs))
        msg = next(m for m in rec.messages if m.retain)
        status = GatewayStatus.from_json(msg.payload, max_bytes=4096)
        assert status.status == "online"
        assert status.gateway == agent.settings.gateway
        assert status.config_hash


def _spawn_agent(mqtt_broker: BrokerInfo, gateway: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'gateway = "{gateway}"\nsite = "site-b"\nstate_dir = "{tmp_path}"\n'
        f'[mqtt]\nhost = "{mqtt_broker.host}"\nport = {mqtt_broker.port}\nprotocol = "{mqtt_broker.protocol}"\n'
        'keepalive_s = 5\n[metrics]\nenabled = false\n',
        encoding="utf-8",
    )
    env = {**os.environ, "PDM_CONFIG": str(config)}
    return subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _statuses(rec: Recorder, topic: str) -> list[str]:
    return [GatewayStatus.from_json(m.payload, max_bytes=4096).status for m in rec.on(topic)]


def test_sigterm_shuts_down_cleanly_and_says_offline(mqtt_broker: BrokerInfo, tmp_path: Path) -> None:
    gateway = unique_id("gw-term")
    topic = f"pdm/v1/site-b/gateway/{gateway}/status"
    with Recorder(mqtt_broker.settings(), topic) as rec:
        proc = _spawn_agent(mqtt_broker, gateway, tmp_path)
        try:
            assert rec.wait_for(lambda _m: "online" in _statuses(rec, topic), 20)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            proc.kill()
            _, err = proc.communicate()
        assert rec.wait_for(lambda _m: _statuses(rec, topic)[-1:] == ["offline"], 10), err.decode()[-2000:]


def test_kill_9_publishes_the_last_will(mqtt_broker: BrokerInfo, tmp_path: Path) -> None:
    gateway = unique_id("gw-kill")
    topic = f"pdm/v1/site-b/gateway/{gateway}/status"
    with Recorder(mqtt_broker.settings(), topic) as rec:
        proc = _spawn_agent(mqtt_broker, gateway, tmp_path)
        try:
            assert rec.wait_for(lambda _m: "online" in _statuses(rec, topic), 20)
            proc.kill()
            proc.wait(10)
        finally:
            proc.kill()
            proc.communicate()
        assert rec.wait_for(lambda _m: _statuses(rec, topic)[-1:] == ["offline"], 20)


def test_fallback_broker_path_dead_letters_too(embedded_broker: BrokerInfo, tmp_path: Path) -> None:
    """The embedded amqtt broker (MQTT 3.1.1) is what `make demo` uses on a machine without Mosquitto."""
    settings = AgentSettings(gateway="gw-fallback", site="site-c", state_dir=tmp_path,
                             mqtt=embedded_broker.settings(client_id="gw-fallback"),
                             metrics=MetricsSettings(enabled=False))
    agent = EdgeAgent(settings)
    agent.start()
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        assert agent.mqtt.wait_connected(10)
        with Recorder(embedded_broker.settings(), "pdm/v1/+/+/deadletter") as rec, \
                Publisher(embedded_broker.settings()) as pub:
            pub.send("pdm/v1/site-c/hp-9/telemetry", b"garbage")
            pub.send("pdm/v1/site-c/hp-9/telemetry", GOOD)
            assert rec.wait_for(lambda msgs: len(msgs) >= 1)
            assert json.loads(rec.messages[0].payload)["reason"] == "not_json"
    finally:
        agent.request_stop()
        thread.join(10)
    assert agent.counters.valid == 1
