"""The agent's Prometheus endpoint counts what it received, accepted and dead-lettered."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from edge_agent.app import EdgeAgent
from edge_agent.config import AgentSettings, MetricsSettings
from tests.conftest import BrokerInfo
from tests.mqtt_helpers import Publisher, unique_id

GOOD = b'{"ts": 1768586531250, "seq": 1, "kind": "pump", "metrics": {"vibration_mm_s": 1.1, "running": true}}'


def test_metrics_endpoint_counts_ingest(mqtt_broker: BrokerInfo, tmp_path: Path) -> None:
    gateway = unique_id("gw-metrics")
    agent = EdgeAgent(AgentSettings(gateway=gateway, site="s1", state_dir=tmp_path,
                                    mqtt=mqtt_broker.settings(client_id=gateway),
                                    metrics=MetricsSettings(enabled=True, port=0)))
    agent.start()
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        assert agent.mqtt.wait_connected(10)
        with Publisher(mqtt_broker.settings()) as pub:
            pub.send("pdm/v1/s1/p-1/telemetry", GOOD)
            pub.send("pdm/v1/s1/p-1/telemetry", b"garbage")
        deadline = time.monotonic() + 10
        while agent.counters.received < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.metrics_url is not None
        text = httpx.get(agent.metrics_url, timeout=5).text
    finally:
        agent.request_stop()
        thread.join(10)
    assert not thread.is_alive()
    with pytest.raises(httpx.ConnectError):  # the endpoint is closed with the agent: its port is free again
        httpx.get(agent.metrics_url, timeout=5)
    assert 'pdm_agent_messages_valid_total{channel="telemetry"} 1.0' in text
    assert 'pdm_agent_messages_dead_lettered_total{reason="not_json"} 1.0' in text
    assert "pdm_agent_detector_latency_seconds_count 1.0" in text
    assert 'pdm_agent_open_alerts{severity="critical"} 0.0' in text
