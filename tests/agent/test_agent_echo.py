"""The alert echo over a real broker: an alert's earlier events go out again once before a newer one,
not before every newer one (each update re-sent the whole history: O(n²) publishes per alert)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

from edge_agent.app import EdgeAgent
from edge_agent.config import AgentSettings, MetricsSettings
from tests.agent_core.synthetic import HeatPumpStream, leak, wire
from tests.conftest import BrokerInfo
from tests.mqtt_helpers import Publisher, Recorder, unique_id
from tests.waiting import wait_until

SITE = "site-echo"


def test_an_alerts_earlier_events_go_out_again_once_before_newer_ones(mqtt_broker: BrokerInfo,
                                                                       tmp_path: Path) -> None:
    gateway = unique_id("gw-echo")
    # The timed echo (alert_echo_s after the ack) does not fall due within the test: what is counted
    # is the original and the copies sent before newer events.
    agent = EdgeAgent(AgentSettings(gateway=gateway, site=SITE, state_dir=tmp_path, clock="telemetry",
                                    mqtt=mqtt_broker.settings(client_id=gateway), alert_echo_s=3600.0,
                                    metrics=MetricsSettings(enabled=False)))
    stream = HeatPumpStream(site=SITE, asset="hp-echo", injections=[leak(24 * 2, 3.0)])
    samples = [wire(tel) for tel, _ in stream.samples(24 * 5)]
    agent.start()
    loop = threading.Thread(target=agent.run, daemon=True)
    with Recorder(mqtt_broker.settings(), f"pdm/v1/{SITE}/+/alert") as rec:
        loop.start()
        try:
            assert agent.mqtt.wait_connected(10)
            with Publisher(mqtt_broker.settings()) as pub:
                for topic, payload in samples:
                    pub.send(topic, payload)
            # Idle: every sample processed and every event acknowledged by the broker.
            assert wait_until(lambda: agent.counters.received >= len(samples) and agent.idle(), 60)
        finally:
            agent.request_stop()
            loop.join(30)
        published = agent.engine.open_alerts()  # the loop has ended: the engine is ours to read
        assert published and published[0].event_seq >= 5, "the leak must give an alert with several events"
        last = published[0].event_seq
        assert rec.wait_for(lambda ms: any(json.loads(m.payload)["event_seq"] == last for m in ms), 10)
    seqs = [int(json.loads(m.payload)["event_seq"]) for m in rec.messages]
    copies = Counter(seqs)
    assert set(copies) == set(range(1, last + 1))
    assert max(copies.values()) <= 2, f"publishes per event_seq: {dict(sorted(copies.items()))}"
    # The first arrival of each event is in order.
    assert list(dict.fromkeys(seqs)) == sorted(copies)
