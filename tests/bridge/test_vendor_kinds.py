"""A vendor's machine kind declared once (``kinds_path``), from telemetry through the real agent to a ticket.

The shipped ``config/kinds.example.toml`` declares an air compressor. The agent and the bridge read
that one file; the agent learns the compressor's normal behaviour and alerts on a change no declared
fault explains, and the bridge's ticket on the desk simulator names the compressor, its channels and
their units as declared, and the diagnosis honestly as unclassified. The mapping tests below cover
declared faults (their names, parts and checks) and what the configuration refuses.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.app import BridgeApp
from cloud_bridge.config import BridgeSettings
from edge_agent.app import EdgeAgent
from edge_agent.config import AgentSettings, MetricsSettings
from pdm_common.contracts import AlertEvent, Contributor, ProbableFault
from pdm_common.errors import ConfigError
from pdm_common.settings import load_settings
from simulators.desk.server import DeskSimulator
from tests.bridge.conftest import bridge_settings
from tests.bridge.samples import GATEWAY, GATEWAY_SECRET, REPO, alert, context, record
from tests.conftest import BrokerInfo
from tests.mqtt_helpers import Publisher, unique_id
from tests.waiting import wait_until

KINDS_EXAMPLE = REPO / "config" / "kinds.example.toml"
SITE, ASSET = "oslo-north", "ac-0007"
REGISTRY = """
[[asset]]
site = "oslo-north"
asset = "ac-0007"
kind = "air_compressor"
customer = "Bryggeriet Nord AS"
address = "Industriveien 4, 0581 Oslo"
contact = { name = "Per Olsen", phone = "+47 400 00 007", email = "per.olsen@example.no" }
language = "en"
production_critical = true
model = "Kaeser SK 22"
serial = "SK22-2022-0711"
install_date = 2022-03-01
"""


def _telemetry(n_normal: int, n_fault: int, *, period_s: int = 300, seed: int = 11) -> list[tuple[str, bytes]]:
    """Five-minute samples of a compressor that follows load and room temperature, then changes.

    The change — element temperature 8 K lower, net pressure 0.8 bar higher and motor current 4 A
    lower than the regime says — points the way of neither declared fault (a fouled cooler heats the
    element, a clogged separator drops the pressure and raises the current), so the honest diagnosis is
    ``unclassified``.
    """
    rng = random.Random(seed)
    start = datetime(2026, 3, 2, tzinfo=UTC)
    out = []
    for i in range(n_normal + n_fault):
        t = start + timedelta(seconds=i * period_s)
        hour = t.hour + t.minute / 60
        load = max(5.0, 55 + 35 * math.sin(2 * math.pi * (hour - 6) / 24) + rng.gauss(0, 6))
        room = 18 + 5 * math.sin(2 * math.pi * (hour - 9) / 24) + rng.gauss(0, 0.1)
        shift = i >= n_normal
        metrics = {
            "load_pct": round(load, 1),
            "ambient_temp_c": round(room, 1),
            "oil_temp_c": round(62 + 0.25 * load + 0.6 * room + rng.gauss(0, 0.2) - (8.0 if shift else 0.0), 2),
            "discharge_pressure_bar": round(7.5 - 0.004 * load + rng.gauss(0, 0.02) + (0.8 if shift else 0.0), 3),
            "motor_current_a": round(8 + 0.33 * load + rng.gauss(0, 0.2) - (4.0 if shift else 0.0), 2),
        }
        payload = {"ts": t.isoformat().replace("+00:00", "Z"), "seq": i, "kind": "air_compressor",
                   "metrics": metrics}
        out.append((f"pdm/v1/{SITE}/{ASSET}/telemetry", json.dumps(payload).encode()))
    return out


@pytest.mark.slow
def test_a_vendor_kind_declared_once_reaches_the_ticket_in_its_own_words(
    tmp_path: Path, desk_sim: DeskSimulator, mqtt_broker: BrokerInfo
) -> None:
    kinds = tmp_path / "kinds.toml"  # /etc/pdm-edge/kinds.toml on the gateway and on the bridge's host
    shutil.copy(KINDS_EXAMPLE, kinds)
    key = tmp_path / "gw-17.key"
    key.write_text(GATEWAY_SECRET)
    registry = tmp_path / "assets.toml"
    registry.write_text(REGISTRY)
    desk_sim.reset()
    agent = EdgeAgent(AgentSettings(
        gateway=GATEWAY, site=SITE, state_dir=tmp_path / "agent", clock="telemetry",
        mqtt=mqtt_broker.settings(client_id=unique_id("gw-kinds")), metrics=MetricsSettings(enabled=False),
        kinds_path=kinds, signing={"secret_file": key},
        detection={"warmup_samples": 150, "warmup_h": 12.0, "debounce_n": 4, "debounce_m": 6},
    ))
    group = "" if mqtt_broker.kind == "amqtt" else unique_id("kinds")
    bridge = BridgeApp(bridge_settings(tmp_path, "webhook", desk_sim.url, mqtt_broker.settings(session_expiry_s=0),
                                       kinds_path=kinds, registry_path=registry, share_group=group,
                                       replica_id=unique_id("r")))
    runner = threading.Thread(target=agent.run, daemon=True)
    records = _telemetry(n_normal=320, n_fault=40)
    try:
        bridge.start()
        agent.start()
        assert bridge.mqtt.wait_connected(10) and agent.mqtt.wait_connected(10)
        runner.start()
        time.sleep(0.3)  # the bridge's subscription is in place before the agent can alert
        with Publisher(mqtt_broker.settings()) as sensors:
            for topic, payload in records:
                sensors.send(topic, payload)

        def opened() -> dict[str, Any] | None:
            """The body the bridge opened the compressor's ticket with (the simulator keeps it verbatim)."""
            return next((t["fields"] for t in desk_sim.tickets("webhook") if t["fields"]["asset"] == ASSET), None)

        assert wait_until(lambda: opened() is not None, 60.0), (
            f"no ticket; agent valid={agent.counters.valid} dead-lettered={agent.counters.dead_lettered}")
    finally:
        agent.request_stop()
        runner.join(30)
        bridge.stop()
    ticket = opened()
    assert ticket is not None
    assert ticket["asset"] == ASSET and ticket["diagnosis"]["probable_fault"] == "unclassified"
    assert ticket["title"].startswith("ac-0007 (Kaeser SK 22 air compressor): unclassified abnormal operation")
    note = ticket["internal_note"]
    lines = {line.split(":")[0] for line in note.splitlines() if line.startswith("- ")}
    assert {"- element outlet temperature", "- net pressure", "- motor current"} & lines, note
    for unit in (" °C", " bar", " A"):
        assert any(unit in line for line in note.splitlines() if line.startswith("- ") and "expected" in line), unit
    assert "oil_temp_c" not in note and "discharge_pressure_bar" not in note, "codes, not words, in the brief"
    assert ticket["checks"][0].startswith("Read the unit's own fault log"), "the unclassified checks"
    assert "your Kaeser SK 22 air compressor does not run as it normally does" in ticket["customer_message"]
    assert "no known fault signature fits the readings" in note and "% confidence" not in note


def _vendor_alert(code: str, **over: Any) -> AlertEvent:
    return alert(1, alert_id=f"{ASSET}:2026-03-03T10:00:00Z:{code}", asset=ASSET, kind="air_compressor",
                 probable_fault=ProbableFault(code=code, confidence=0.7), **over)


def test_declared_faults_give_their_words_parts_and_checks_and_the_table_still_rules_known_codes() -> None:
    from cloud_bridge.ticket import map_alert
    from cloud_bridge.vocabulary import Vocabulary

    declared = load_settings(BridgeSettings, None, kinds_path=KINDS_EXAMPLE,
                             desks={"main": {"kind": "webhook", "base_url": "http://127.0.0.1:9"}},
                             require_signed_alerts=False).declared_kinds()
    ctx = replace(context(), vocabulary=Vocabulary(declared))
    fouled = map_alert(_vendor_alert("oil_cooler_fouling", contributors=[
        Contributor(metric="oil_temp_c", value=101.5, expected=84.0, deviation=9.0)]),
        None, now=datetime(2026, 3, 3, 10, tzinfo=UTC), ctx=ctx)
    assert fouled.fault_name == "fouled oil cooler" and fouled.parts[0].startswith("cooler cleaning kit")
    assert "- element outlet temperature: 102 °C (expected 84 °C: +17.5 °C, +21%)" in fouled.internal_note
    assert "(high element temperature shutdown [E]: element outlet temperature above 110 °C)" in fouled.internal_note
    # A code the profile does not know, and the table's own codes, stay the table's.
    assert map_alert(_vendor_alert("refrigerant_leak"), None, now=datetime(2026, 3, 3, tzinfo=UTC),
                     ctx=ctx).fault_name == "refrigerant leak"
    unknown = map_alert(_vendor_alert("bearing_noise"), None, now=datetime(2026, 3, 3, tzinfo=UTC), ctx=ctx)
    assert unknown.fault_name.startswith("unclassified abnormal operation")
    # Without the declarations the same alert is still a ticket, in derived words.
    plain = map_alert(_vendor_alert("oil_cooler_fouling", contributors=[
        Contributor(metric="oil_temp_c", value=101.5, expected=84.0, deviation=9.0)]),
        None, now=datetime(2026, 3, 3, tzinfo=UTC), ctx=context())
    assert plain.fault_name.startswith("unclassified abnormal operation")
    assert "- oil temp: 102 °C" in plain.internal_note


def test_a_kind_is_declared_once_and_a_broken_kinds_file_names_the_field(tmp_path: Path) -> None:
    desks = {"main": {"kind": "webhook", "base_url": "http://127.0.0.1:9"}}
    inline = {"air_compressor": {"words": {"en": "compressor"}}}
    with pytest.raises(ConfigError, match=r"declared both in kinds_path .* declare each kind once"):
        load_settings(BridgeSettings, None, desks=desks, kinds_path=KINDS_EXAMPLE, kinds=inline)
    with pytest.raises(ConfigError, match=r"declared both in kinds_path"):
        load_settings(AgentSettings, None, kinds_path=KINDS_EXAMPLE, kinds=inline)
    broken = tmp_path / "kinds.toml"
    broken.write_text(KINDS_EXAMPLE.read_text().replace('role = "driver"', 'role = "sensorish"', 1))
    with pytest.raises(ConfigError, match=r"kinds_path = .*kinds\.air_compressor\.channels\.load_pct\.role"):
        load_settings(BridgeSettings, None, desks=desks, kinds_path=broken)
    broken.write_text('[mqtt]\nhost = "x"\n')
    with pytest.raises(ConfigError, match=r"may hold only \[kinds.<name>\] tables"):
        load_settings(AgentSettings, None, kinds_path=broken)
    with pytest.raises(ConfigError, match=r"cannot read the kinds file .*missing.toml"):
        load_settings(AgentSettings, None, kinds_path=tmp_path / "missing.toml")


def test_an_unclassified_alert_tells_the_customer_the_cause_is_not_known_yet() -> None:
    from cloud_bridge.ticket import map_alert

    event = alert(1, probable_fault=ProbableFault(code="unclassified", confidence=0.0))
    norwegian = map_alert(event, record(), now=datetime(2026, 1, 14, 4, tzinfo=UTC), ctx=context())
    assert norwegian.public_message is not None
    assert "varmepumpen ikke går som normalt. Målingene viser ikke årsaken ennå" in norwegian.public_message
    reopened = map_alert(alert(5, event="updated", status="reopened", note="fix not confirmed",
                               probable_fault=ProbableFault(code="unclassified", confidence=0.0)),
                         record(language="en"), now=datetime(2026, 1, 16, tzinfo=UTC), ctx=context())
    assert reopened.public_message is not None
    assert "your NordAir 8 kW heat pump still does not run as it normally does" in reopened.public_message


def test_the_bridge_rereads_the_kinds_file_on_reload(tmp_path: Path, bridge: Any) -> None:
    kinds = tmp_path / "kinds.toml"
    shutil.copy(KINDS_EXAMPLE, kinds)
    app = bridge(kinds_path=kinds)
    event = _vendor_alert("separator_clogging")
    assert app.to_ticket(event).fault_name == "clogged air/oil separator"
    kinds.write_text(KINDS_EXAMPLE.read_text().replace('"clogged air/oil separator"', '"blocked separator"'))
    plan = app.reload(app.settings.model_copy(update={"kinds_path": BridgeSettings.model_validate(
        {"desks": {"main": {"kind": "webhook", "base_url": "http://x"}}, "kinds_path": kinds}).kinds_path}))
    assert plan.apply == {"kinds_path"} and not plan.restart_needed
    assert app.to_ticket(event).fault_name == "blocked separator"
