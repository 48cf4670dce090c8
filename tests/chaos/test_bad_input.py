"""Bad input over real MQTT into the real agent (#14.5): hypothesis builds hostile telemetry, topics and
commands; the shipped broker carries them to ``edge-agent run``. The 400-digit crash was found this way
and not by in-process fuzzing, because the crash was past ingest.

What must hold after every batch: the agent runs; every message is either scored or dead-lettered with
a reason (none vanishes, none crashes); a genuine asset's samples published after the barrage are
still scored (pathological numbers and new names do not poison or lock out models).

``PDM_FUZZ_EXAMPLES`` batches of ``BATCH`` messages (CI: 100 × 12 = 1,200 payloads plus up to 500 commands;
``make soak`` runs 100,000+). Seeded by hypothesis's derandomised mode in CI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.rig import FAST_DETECTION, Sensors, Service, Watcher, agent_config, fleet_messages, metric
from tests.rig_fixtures import Rig
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("PDM_FUZZ_EXAMPLES", "100"))
BATCH = 12

NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([0, -0.0, 1e12, 1e12 + 1, -1e12, 1e308, 5e-324, 2**53 + 1, 2**63, 2**64, -(2**63) - 1]),
)
JSON_LEAF = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20))
JSON = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=6)
METRIC_NAME = st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True), st.text(max_size=70))
TS = st.one_of(st.integers(min_value=946_684_800_000, max_value=4_102_444_800_000),
               st.integers(), st.text(max_size=45), st.sampled_from(["2026-01-16T18:02:11Z", "2026-01-16T18:02:11"]),
               st.floats(allow_nan=False))


@st.composite
def telemetry(draw: st.DrawFn) -> bytes:
    """Mostly well-shaped samples with hostile values, sometimes arbitrary JSON or bytes."""
    shape = draw(st.sampled_from(["sample", "sample", "sample", "json", "bytes"]))
    if shape == "bytes":
        return draw(st.binary(max_size=300))
    if shape == "json":
        return json.dumps(draw(JSON)).encode()
    body: dict[str, Any] = {
        "ts": draw(TS), "seq": draw(st.one_of(st.integers(min_value=-5, max_value=2**64), st.text(max_size=5))),
        "kind": draw(st.sampled_from(["heat_pump", "pump", "Pump", "", "x" * 70, "vendor_kind"])),
        "metrics": draw(st.dictionaries(METRIC_NAME, st.one_of(NUMBERS, st.booleans(), st.none(), JSON),
                                        max_size=12)),
    }
    if draw(st.booleans()):
        body[draw(st.text(max_size=6))] = draw(JSON)
    return json.dumps(body).encode()


# Mosquitto disconnects a client whose topic holds control characters (MQTT 5 §1.5.4 lets it), so the
# hostile names the broker passes on are printable: long, non-ASCII, punctuation, look-alikes.
LEVEL = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=70)
ASSET = st.one_of(st.from_regex(r"fz-[a-z0-9]{1,6}", fullmatch=True), LEVEL)
TOPIC = ASSET.map(lambda a: f"pdm/v1/oslo-north/{a}/telemetry")


@dataclass
class Target:
    rig: Rig
    agent: Service
    port: int
    sensors: Sensors
    commands: Sensors
    watcher: Watcher
    genuine: list[tuple[str, bytes]]
    sent: int = 0


@pytest.fixture(scope="module")
def target(module_rig: Rig) -> Iterator[Target]:
    rig = module_rig
    cfg, port = agent_config(rig.workdir, rig.broker, rig.keys, detection=FAST_DETECTION)
    agent = Service("agent", "edge_agent.cli", cfg, rig.workdir).start()
    with Watcher(rig.broker.settings("svc.ops"), "pdm/v1/+/+/deadletter") as watcher, \
            Sensors(rig.broker.settings("sensors.oslo-north")) as sensors, \
            Sensors(rig.broker.settings("svc.cloud-bridge")) as commands:
        assert wait_until(lambda: metric(port, "pdm_agent_mqtt_connected") == 1.0, 60), agent.log()[-2000:]
        genuine = fleet_messages(rig.workdir, seed=5, days=1.0)
        sensors.send(genuine[: len(genuine) // 2])
        yield Target(rig, agent, port, sensors, commands, watcher, genuine[len(genuine) // 2:])
        # A genuine asset still scores after the barrage: its remaining samples are all valid.
        before = metric(port, "pdm_agent_messages_valid_total", 'channel="telemetry"') or 0.0
        sensors.send(genuine[len(genuine) // 2:])
        assert wait_until(lambda: (metric(port, "pdm_agent_messages_valid_total", 'channel="telemetry"') or 0)
                          >= before + len(genuine) // 2, 60)
        assert agent.alive and agent.stop() == 0
        assert agent.tracebacks() == 0, agent.log()[-3000:]


def _accounted(t: Target) -> float:
    """Messages the agent has scored or refused (valid + dead-lettered, over every channel)."""
    from tests.rig import metrics_text

    total = 0.0
    for line in metrics_text(t.port).splitlines():
        if line.startswith(("pdm_agent_messages_valid_total", "pdm_agent_messages_dead_lettered_total")):
            total += float(line.split()[-1])
    return total


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(st.tuples(TOPIC, telemetry()), min_size=BATCH, max_size=BATCH),
       cmds=st.lists(JSON.map(lambda j: json.dumps(j).encode()), max_size=5))
def test_hostile_telemetry_and_commands_over_mqtt(target: Target, batch: list[tuple[str, bytes]],
                                                  cmds: list[bytes]) -> None:
    before = _accounted(target)
    # Only topics the sensors' account may write: the broker drops (and never passes on) the rest.
    messages = [(topic, payload) for topic, payload in batch if _publishable(topic) and _reaches_agent(topic)]
    target.sensors.send(messages, timeout_s=15)
    target.commands.send([("pdm/v1/oslo-north/hp-0001/cmd", c) for c in cmds], timeout_s=15)
    expected = before + len(messages) + len(cmds)
    assert wait_until(lambda: _accounted(target) >= expected, 15), \
        f"{_accounted(target) - before} of {expected - before} messages accounted for"
    assert target.agent.alive, target.agent.log()[-3000:]


def _publishable(topic: str) -> bool:
    # MQTT itself refuses wildcards and NUL in a PUBLISH topic; the broker never passes those on.
    return bool(topic) and not any(c in topic for c in "+#\0") and len(topic.encode()) < 65_000


def _reaches_agent(topic: str) -> bool:
    # The sensors account may write only pdm/v1/oslo-north/+/telemetry (config/mosquitto/acl); the
    # agent subscribes to pdm/v1/+/+/telemetry, so a topic of another shape never reaches it.
    parts = topic.split("/")
    return len(parts) == 5 and parts[:3] == ["pdm", "v1", "oslo-north"] and parts[4] == "telemetry" and bool(parts[3])
