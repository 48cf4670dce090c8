"""Backpressure, not loss: over a real Mosquitto, a burst far above every bound is scored exactly once.

The agent's main loop is held back while the burst is published, the worst case of a detector that
cannot keep up: with MQTT 5 flow control the broker hands the agent no more than Receive Maximum
unacknowledged messages and keeps the rest in the session queue, so nothing acknowledged can be
dropped; once the loop runs, every message arrives exactly once. QoS 0 telemetry has no flow
control: what exceeds the bound is dropped and counted, never silently.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_agent.app import EdgeAgent
from edge_agent.config import AgentSettings, MetricsSettings
from pdm_common.contracts import DeadLetter
from simulators.broker import MosquittoBroker
from tests.agent_core.synthetic import HeatPumpStream, wire
from tests.conftest import BrokerInfo
from tests.mqtt_helpers import Recorder, unique_id
from tests.waiting import wait_until

SITE = "site-flow"
T0_MS = 1_768_586_531_250


def _agent(broker: BrokerInfo, state_dir: Path, **over: Any) -> EdgeAgent:
    gateway = unique_id("gw-flow")
    mqtt = broker.settings(client_id=gateway, receive_maximum=over.pop("receive_maximum", 20))
    return EdgeAgent(AgentSettings(gateway=gateway, site=SITE, state_dir=state_dir, clock="telemetry", mqtt=mqtt,
                                   metrics=MetricsSettings(enabled=False), **over))


@contextmanager
def _running(agent: EdgeAgent) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=agent.run, daemon=True)
    try:
        yield thread
    finally:
        agent.request_stop()
        if thread.is_alive():
            thread.join(30)
        else:
            agent.shutdown()


def _burst(n: int, assets: int) -> list[tuple[str, bytes]]:
    out = []
    for k in range(n):
        payload = {"ts": T0_MS + (k // assets) * 60_000, "seq": k // assets, "kind": "pump",
                   "metrics": {"vibration_mm_s": 1.0 + (k % 7) * 0.01, "motor_current_a": 12.0, "running": True}}
        out.append((f"pdm/v1/{SITE}/p-{k % assets}/telemetry", json.dumps(payload).encode()))
    return out


def _publish_all(broker: BrokerInfo, messages: list[tuple[str, bytes]], qos: int) -> None:
    """Publish without waiting message by message; return once the broker has acknowledged all (QoS 1)."""
    from pdm_common.mqtt import MqttClient

    acked: set[int] = set()
    cond = threading.Condition()

    def on_ack(mid: int) -> None:
        with cond:
            acked.add(mid)
            cond.notify_all()

    client = MqttClient(broker.settings(), client_id=unique_id("burst"), on_publish_ack=on_ack)
    client.start()
    try:
        assert client.wait_connected(10)
        mids = {client.publish(topic, payload, qos=qos) for topic, payload in messages}
        if qos == 1:
            with cond:
                assert cond.wait_for(lambda: mids <= acked, 60), f"broker acknowledged {len(acked)}/{len(mids)}"
        else:
            time.sleep(0.5)  # QoS 0 has no acknowledgement: give the broker a moment to pass them on
    finally:
        client.stop()


@pytest.mark.mosquitto
def test_burst_far_above_the_bounds_is_scored_exactly_once(mosquitto_broker: BrokerInfo, tmp_path: Path,
                                                           agent_log: io.StringIO) -> None:
    n = 3000
    agent = _agent(mosquitto_broker, tmp_path, inbound_queue_max=100)
    agent.start()
    with _running(agent) as loop:
        assert agent.mqtt.wait_connected(10)
        _publish_all(mosquitto_broker, _burst(n, 50), qos=1)
        # The main loop has not run: the broker keeps what the agent has not acknowledged.
        assert wait_until(lambda: agent.mqtt.unacknowledged == 20, 5)
        time.sleep(0.3)
        assert agent.mqtt.unacknowledged == 20, "the broker sent more than Receive Maximum unacknowledged"
        assert agent.counters.received == 0
        loop.start()
        assert wait_until(lambda: agent.counters.received >= n and agent.mqtt.unacknowledged == 0, 60), \
            f"handled {agent.counters.received}/{n}"
        time.sleep(0.3)  # anything beyond n would be a duplicate
    assert agent.counters.received == agent.counters.valid == n, "every message scored exactly once"
    count = agent.metrics.registry.get_sample_value("pdm_agent_detector_latency_seconds_count")
    assert count == n
    assert sum(agent.dropped.values()) == 0 and agent.mqtt.connects == 1 and agent.mqtt.redeliveries_skipped == 0
    assert re.search(r"event=agent\.degraded .*condition=backpressure", agent_log.getvalue()), "logged, with the fix"
    assert agent.metrics.registry.get_sample_value("pdm_agent_degraded", {"condition": "backpressure"}) == 1


def test_qos0_beyond_the_bound_is_dropped_and_counted(mqtt_broker: BrokerInfo, tmp_path: Path) -> None:
    agent = _agent(mqtt_broker, tmp_path, inbound_queue_max=100, telemetry_qos=0)
    agent.start()
    with _running(agent) as loop:
        assert agent.mqtt.wait_connected(10)
        _publish_all(mqtt_broker, _burst(400, 10), qos=0)
        assert wait_until(lambda: agent.dropped["queue_full"] >= 300, 10), agent.dropped
        loop.start()
        assert wait_until(lambda: agent.counters.received >= 100, 20)
    assert agent.counters.received == 100 and agent.dropped["queue_full"] == 300
    assert agent.metrics.registry.get_sample_value("pdm_agent_messages_dropped_total", {"reason": "queue_full"}) == 300


def test_a_message_that_breaks_processing_is_dead_lettered_and_the_agent_carries_on(
    mqtt_broker: BrokerInfo, tmp_path: Path
) -> None:
    """Past ingest, anything may raise (here: a clock stepped back a day on a warm asset, issue 16.4)."""
    agent = _agent(mqtt_broker, tmp_path)
    stream = HeatPumpStream(site=SITE, asset="hp-step")
    good = [(tel.ts, wire(tel)[1]) for tel, _ in stream.samples(3)]
    back = [json.dumps({**json.loads(p), "ts": int((ts - timedelta(days=1)).timestamp() * 1000)}).encode()
            for ts, p in good[:60]]
    healthy = _burst(20, 2)
    topic = f"pdm/v1/{SITE}/hp-step/telemetry"
    agent.start()
    with Recorder(mqtt_broker.settings(), f"pdm/v1/{SITE}/+/deadletter") as rec, _running(agent) as loop:
        loop.start()
        assert agent.mqtt.wait_connected(10)
        _publish_all(mqtt_broker, [(topic, p) for _ts, p in good] + [(topic, p) for p in back] + healthy, qos=1)
        total = len(good) + len(back) + len(healthy)
        assert wait_until(lambda: agent.counters.received >= total, 60), f"{agent.counters.received}/{total}"
        assert loop.is_alive(), "one message stopped the agent"
        failures = agent.processing_failures
        assert wait_until(lambda: len(rec.messages) >= failures, 10)
    letters = [DeadLetter.from_json(m.payload, max_bytes=1 << 20) for m in rec.messages]
    assert all(letter.reason == "processing_failed" and letter.topic == topic for letter in letters)
    assert len(letters) == failures
    assert agent.metrics.registry.get_sample_value("pdm_agent_processing_failures_total") == failures
    # The assets behind the failing one were processed as usual.
    assert set(agent.engine.asset_keys()) >= {(SITE, "p-0"), (SITE, "p-1")}


@pytest.mark.mosquitto
def test_refused_publishes_free_the_window_and_are_counted(tmp_path: Path) -> None:
    """A broker ACL that refuses the agent's state topics (MQTT 5 PUBACK 0x87) must not pin the window."""
    if not MosquittoBroker.available():
        pytest.skip("mosquitto is not installed")
    acl = tmp_path / "acl"
    # Anonymous clients (rules before any `user` line): read everything, write telemetry and status only.
    acl.write_text("topic read pdm/v1/#\ntopic write pdm/v1/+/+/telemetry\ntopic write pdm/v1/+/gateway/+/status\n"
                   "topic write pdm/v1/+/+/deadletter\n", encoding="utf-8")
    # `user root`: started as root, Mosquitto would drop to its own user, who cannot read the test's
    # private tmp dir (ignored when not started as root).
    broker = MosquittoBroker(extra_config=f"acl_file {acl}\nuser root\n").start()
    try:
        info = BrokerInfo(host=broker.host, port=broker.port, protocol="5", kind="mosquitto")
        agent = _agent(info, tmp_path / "state", publish_window=5, outbox_max_rows=100)
        agent.start()
        with _running(agent) as loop:
            loop.start()
            assert agent.mqtt.wait_connected(10)
            _publish_all(info, _burst(120, 120), qos=1)  # 120 new assets: 120 retained states to publish
            refused = "pdm_agent_publish_refused_total"
            assert wait_until(lambda: (agent.metrics.registry.get_sample_value(
                refused, {"reason": "Not authorized"}) or 0) >= 100, 15), "the window stayed pinned"
            assert agent.health()["publishing"].startswith("degraded")
            assert len(agent.outbox) == 100, "refused events stay in the outbox for a later retry, bounded"
            # The bound dropped the oldest 20 states, and the counter says so (it used to stay at 0).
            dropped = "pdm_agent_outbox_dropped_total"
            assert wait_until(lambda: agent.metrics.registry.get_sample_value(dropped, {"event": "state"}) == 20, 5)
    finally:
        broker.stop()
