"""Metrics: per-service registries, the localhost endpoint, and the families each service exports."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry

from cloud_bridge.metrics import BridgeMetrics, DeliveryOutcome
from edge_agent.metrics import AgentMetrics, AssetGauges
from pdm_common.contracts import Severity
from pdm_common.errors import ConfigError
from pdm_common.metrics import start_metrics_server


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_agent_metrics_families() -> None:
    m = AgentMetrics()
    m.ingest.received.labels(channel="telemetry").inc(3)
    m.ingest.valid.labels(channel="telemetry").inc(2)
    m.ingest.dead_lettered.labels(reason="not_json").inc()
    m.detector_latency.observe(0.0004)
    m.set_open_alerts({Severity.MAJOR: 2})
    m.outbox.observe(5, 12.5)
    m.assets.publish({("s1", "hp-0042"): AssetGauges(health_score=0.9, warmup_ratio=0.25, last_seen_s=1.7e9)})
    r = m.registry
    assert _value(r, "pdm_agent_messages_received_total", channel="telemetry") == 3
    assert _value(r, "pdm_agent_messages_valid_total", channel="telemetry") == 2
    assert _value(r, "pdm_agent_messages_dead_lettered_total", reason="not_json") == 1
    assert _value(r, "pdm_agent_detector_latency_seconds_count") == 1
    assert _value(r, "pdm_agent_open_alerts", severity="major") == 2
    assert _value(r, "pdm_agent_open_alerts", severity="critical") == 0
    assert _value(r, "pdm_agent_outbox_depth") == 5
    assert _value(r, "pdm_agent_outbox_oldest_age_seconds") == 12.5
    assert _value(r, "pdm_agent_asset_warmup_ratio", site="s1", asset="hp-0042") == 0.25
    assert _value(r, "pdm_agent_asset_health_score", site="s1", asset="hp-0042") == 0.9
    assert _value(r, "pdm_agent_asset_last_seen_timestamp_seconds", site="s1", asset="hp-0042") == 1.7e9
    m.outbox.observe(0, None)
    assert _value(r, "pdm_agent_outbox_oldest_age_seconds") == 0
    m.assets.publish({})  # the asset left the engine: its series go with it
    assert _value(r, "pdm_agent_asset_warmup_ratio", site="s1", asset="hp-0042") is None


def test_two_instances_do_not_collide() -> None:
    a, b = AgentMetrics(), AgentMetrics()
    a.ingest.received.labels(channel="telemetry").inc()
    assert _value(b.registry, "pdm_agent_messages_received_total", channel="telemetry") == 0  # pre-bound, not shared
    BridgeMetrics()
    BridgeMetrics()


def test_bridge_delivery_metrics() -> None:
    m = BridgeMetrics()
    m.record_delivery(desk="zd", outcome=DeliveryOutcome.DELIVERED, duration_s=0.2)
    m.record_delivery(desk="zd", outcome=DeliveryOutcome.RETRYABLE, duration_s=5.0)
    m.record_delivery(desk="zd", outcome=DeliveryOutcome.PERMANENT, duration_s=0.1)
    r = m.registry
    assert _value(r, "pdm_bridge_delivery_attempts_total", desk="zd", outcome="delivered") == 1
    assert _value(r, "pdm_bridge_delivery_attempts_total", desk="zd", outcome="retryable") == 1
    assert _value(r, "pdm_bridge_delivery_failures_total", desk="zd", reason="retryable") == 1
    assert _value(r, "pdm_bridge_delivery_failures_total", desk="zd", reason="permanent") == 1
    assert _value(r, "pdm_bridge_delivery_latency_seconds_count", desk="zd") == 3


def test_endpoint_serves_on_localhost_only() -> None:
    m = AgentMetrics()
    m.outbox.observe(7, 1.0)
    server = start_metrics_server(m.registry, port=0)
    try:
        assert server.host == "127.0.0.1"
        body = httpx.get(server.url, timeout=5.0).text
        assert "pdm_agent_outbox_depth 7.0" in body
        assert "python_gc" not in body, "a per-service registry carries no process-global collectors"
    finally:
        server.close()


def test_busy_port_is_a_config_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ConfigError, match=r"\[metrics\] port"):
            start_metrics_server(CollectorRegistry(), port=port)
