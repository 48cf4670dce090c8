"""Alerting rules and the fleet dashboard (ops/): ``promtool check rules``, ``promtool test rules``,
every dashboard query parsed by promtool, and every metric they name exported by our code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from cloud_bridge.consumer import ConsumerStats
from cloud_bridge.fleet import FleetCollector, FleetView
from cloud_bridge.metrics import BridgeMetrics
from edge_agent.metrics import AgentMetrics, AssetGauges
from pdm_common.topics import Topics
from tests.deploy.debian import DebianUnavailable, debian_file
from tests.deploy.test_fleet import _message, _state, _status

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "ops" / "prometheus" / "pdm-rules.yml"
RULE_TESTS = REPO / "ops" / "prometheus" / "pdm-rules.test.yml"
DASHBOARDS = sorted((REPO / "ops" / "grafana" / "dashboards").glob("*.json"))

PENDING: dict[str, str] = {}
"""Metrics the rules already use that another lane is adding (name -> who); the test fails once they
exist, so an entry is removed then (a strict expected failure)."""


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool from PATH, else from Debian's prometheus package (extracted, not installed)."""
    found = shutil.which("promtool")
    if found:
        return found
    try:
        return str(debian_file("prometheus", "usr/bin/promtool"))
    except DebianUnavailable as exc:
        pytest.skip(f"promtool is needed to check the rules: {exc}")


def _promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def test_rules_are_valid(promtool: str) -> None:
    result = _promtool(promtool, "check", "rules", str(RULES), cwd=RULES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_pass(promtool: str) -> None:
    result = _promtool(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_or_named_here() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    tested = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for t in case.get("alert_rule_test", [])}
    untested = {"PdmGatewayHealthFailing", "PdmDeskCircuitOpen", "PdmFleetMessagesInvalid", "PdmAgentDeadLetters",
                "PdmAgentOutboxGrowing", "PdmAgentDisconnected"}
    """Single-threshold rules on one gauge or rate; the tested ones cover every construction they use."""
    assert alerts - tested == untested


def _dashboard_queries() -> list[tuple[str, str]]:
    queries = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                queries.append((f"{path.name}: {panel['title']}", target["expr"]))
    return queries


def test_dashboard_queries_parse(promtool: str, tmp_path: Path) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 15
    records = [{"record": f"dashboard:query{i}", "expr": expr.replace("$site", ".*")}
               for i, (_where, expr) in enumerate(queries)]
    rules = {"groups": [{"name": "dashboard", "rules": records}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = _promtool(promtool, "check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_provisioned_with_the_datasource_it_uses() -> None:
    datasource = yaml.safe_load((REPO / "ops/grafana/provisioning/datasources/pdm-edge.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    provider = yaml.safe_load((REPO / "ops/grafana/provisioning/dashboards/pdm-edge.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
        assert uids == {uid}, path.name
        titles = " ".join(p["title"].lower() for p in dashboard["panels"])
        for needed in ("gateways online", "assets by health", "open alerts by severity", "outbox depth",
                       "oldest event age", "delivery failures per desk", "warm-up"):
            assert needed in titles, needed


def _exported() -> set[str]:
    """Every sample name our exporters produce, with fleet data so that each family has samples."""
    names: set[str] = set()
    agent = AgentMetrics()
    agent.assets.publish({("s", "a"): AssetGauges(health_score=1.0, warmup_ratio=0.5, last_seen_s=1.0)})
    agent.dropped.labels(reason="queue_full").inc()
    agent.outbox.dropped.labels(event="updated").inc()
    agent.ingest.dead_lettered.labels(reason="not_json").inc()
    agent.ingest.received.labels(channel="telemetry").inc()
    bridge = BridgeMetrics()
    bridge.watch_intake(ConsumerStats())
    bridge.delivery_latency.labels(desk="d").observe(0.1)
    bridge.delivery_failures.labels(desk="d", reason="timeout").inc()
    bridge.desk_depth.labels(desk="d").set(1)
    bridge.desk_oldest_age.labels(desk="d").set(1)
    bridge.delivery_attempts.labels(desk="d", outcome="delivered").inc()
    bridge.circuit_open.labels(desk="d").set(0)
    view = FleetView(Topics())
    view.observe(_message("pdm/v1/s/gateway/gw/status", _status("gw")))
    view.observe(_message("pdm/v1/s/a/state", _state("s", "a", open_alerts=("s:a:x:y",))))
    fleet = CollectorRegistry()
    fleet.register(FleetCollector(view))
    for registry in (agent.registry, bridge.registry, fleet):
        names |= {sample.name for family in registry.collect() for sample in family.samples}
    return names


def _referenced() -> set[str]:
    texts = [RULES.read_text()] + [expr for _where, expr in _dashboard_queries()]
    return {name for text in texts for name in re.findall(r"\b(pdm_[a-z_]*[a-z])\b", text)}


def test_rules_and_dashboard_name_only_exported_metrics() -> None:
    exported = _exported()
    missing = _referenced() - exported
    assert missing == set(PENDING), f"not exported by any service: {sorted(missing - set(PENDING))}"
    assert not set(PENDING) & exported, f"now exported, remove from PENDING: {sorted(set(PENDING) & exported)}"


OPERATIONS = REPO / "docs" / "operations.md"
_METRIC = re.compile(r"\b(pdm_[a-z0-9_]*[a-z0-9])\b(?![.(])")
"""A metric name in prose or a table; not a module path (``pdm_common.systemd``) or a call."""


def _exported_families() -> set[str]:
    """Every metric family our exporters define, named as a query names it (a counter with ``_total``)."""
    agent, bridge = AgentMetrics(), BridgeMetrics()
    bridge.watch_intake(ConsumerStats())
    view = FleetView(Topics())
    view.observe(_message("pdm/v1/s/gateway/gw/status", _status("gw")))
    view.observe(_message("pdm/v1/s/a/state", _state("s", "a", open_alerts=("s:a:x:y",))))
    fleet = CollectorRegistry()
    fleet.register(FleetCollector(view))
    return {f"{family.name}_total" if family.type == "counter" else family.name
            for registry in (agent.registry, bridge.registry, fleet) for family in registry.collect()}


def test_operations_page_documents_exactly_the_exported_metrics() -> None:
    documented = set(_METRIC.findall(OPERATIONS.read_text()))
    exported = _exported_families()
    assert not documented - exported, f"docs/operations.md names metrics no service exports: " \
                                      f"{sorted(documented - exported)}"
    assert not exported - documented, f"exported but not in docs/operations.md: {sorted(exported - documented)}"
