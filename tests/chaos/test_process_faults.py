"""Process faults (#14.1): kill -9 of the real agent and the real bridge at seeded random points
during a fleet run with faults, over the shipped Mosquitto (TLS, ACL, persistence) to the desk simulator.

What must hold: every alert event the agent published reaches the desk, each alert as exactly one
ticket carrying its events in order (nothing lost, nothing twice); no ``event_seq`` is reused with
other content after a crash; the models and open alerts survive (no re-warm after a restart); the
services stop cleanly at the end. Against the same fleet without faults, the alert set is the same
(issue #16: kill -9 restarts set off false dropout alerts) — a separate, strict expectation.

Seed and number of kills: ``PDM_CHAOS_SEED`` (default 20260105) and ``PDM_CHAOS_KILLS`` (20 each in CI;
``make soak`` runs 100+). Each kill lands at a seeded random moment 0.2–1.5 s after the process was
ready, while the sensors keep publishing.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pdm_common.contracts import AssetState
from tests.rig import (
    FAST_DETECTION,
    Sensors,
    Service,
    TicketReport,
    Watcher,
    agent_config,
    bridge_config,
    check_tickets,
    conflicting_copies,
    contiguous,
    expected_histories,
    fleet_messages,
    metric,
    reference_alerts,
)
from tests.rig_fixtures import Rig
from tests.waiting import wait_until

SEED = int(os.environ.get("PDM_CHAOS_SEED", "20260105"))
KILLS = int(os.environ.get("PDM_CHAOS_KILLS", "20"))
ROUND_S = 1.9
"""A kill round takes about this long (two kills 0.2-1.5 s apart plus restarts); the rest of the fleet is
paced to spread over all rounds, so every kill lands while telemetry flows."""


@dataclass
class ChaosOutcome:
    """What one faulty run produced (also what docs/reliability.md reports)."""

    report: TicketReport
    published: dict[str, list[int]]
    gaps: dict[str, list[int]]
    conflicts: list[tuple[str, int]]
    agent_kills: int
    bridge_kills: int
    recovery_s: list[float] = field(default_factory=list)
    rewarmed: list[str] = field(default_factory=list)
    restored: list[int] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)
    tracebacks: dict[str, int] = field(default_factory=dict)


def _ready(port: int) -> bool:
    return metric(port, "pdm_agent_mqtt_connected") == 1.0


def _bridge_ready(port: int) -> bool:
    return metric(port, "pdm_bridge_outbox_depth") is not None


def run_with_kills(rig: Rig, *, seed: int, kills: int) -> ChaosOutcome:
    """The fleet through agent and bridge, killing each ``kills`` times at seeded points.

    The first 40 % of the fleet (past warm-up) goes through undisturbed and is checkpointed; the rest
    is published while the kill rounds run, spread over them.
    """
    rng = random.Random(seed)
    messages = fleet_messages(rig.workdir, seed=seed)
    calm = int(len(messages) * 0.4)
    agent_cfg, agent_port = agent_config(rig.workdir, rig.broker, rig.keys, detection=FAST_DETECTION)
    bridge_cfg, bridge_port = bridge_config(rig.workdir, rig.broker, rig.keys, rig.desk.url)
    agent = Service("agent", "edge_agent.cli", agent_cfg, rig.workdir).start()
    bridge = Service("bridge", "cloud_bridge.cli", bridge_cfg, rig.workdir).start()
    recovery: list[float] = []
    checkpoints = rig.workdir / "agent-state" / "checkpoints"
    watcher = Watcher(rig.broker.settings("svc.cloud-bridge"), "pdm/v1/+/+/alert", "pdm/v1/+/+/state")
    with watcher, Sensors(rig.broker.settings("sensors.oslo-north")) as sensors:
        assert wait_until(lambda: _ready(agent_port), 60), agent.log()[-3000:]
        assert wait_until(lambda: _bridge_ready(bridge_port), 60), bridge.log()[-3000:]
        sensors.send(messages[:calm])
        assert wait_until(lambda: _valid(agent_port) >= calm, 60)
        mtime = _newest(checkpoints)
        assert wait_until(lambda: _newest(checkpoints) > mtime, 30), "no checkpoint written after the calm phase"
        done = threading.Event()
        errors: list[BaseException] = []
        rate = (len(messages) - calm) / (kills * ROUND_S)

        def publish() -> None:
            try:
                started = time.monotonic()
                for i, message in enumerate(messages[calm:]):
                    sensors.send([message]) if i % 500 == 499 else sensors.publish(*message)
                    if (delay := started + (i + 1) / rate - time.monotonic()) > 0:
                        time.sleep(delay)
                sensors.flush()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                done.set()

        publisher = threading.Thread(target=publish, name="rig-publisher", daemon=True)
        publisher.start()
        for _ in range(kills):
            # One round: each process killed at its own seeded moment, restarted at once.
            round_start = time.monotonic()
            for at, who in sorted([(rng.uniform(0.2, 1.5), "agent"), (rng.uniform(0.2, 1.5), "bridge")]):
                time.sleep(max(0.0, round_start + at - time.monotonic()))
                service, ready, port = (agent, _ready, agent_port) if who == "agent" else (bridge, _bridge_ready,
                                                                                          bridge_port)
                service.kill9()
                killed = time.monotonic()
                service.start()
                assert wait_until(lambda: ready(port), 60), service.log()[-3000:]  # noqa: B023 (called at once)
                if who == "agent":
                    recovery.append(time.monotonic() - killed)
        assert done.wait(180) and not errors, errors

        assert wait_until(lambda: settled(agent_port), 60), agent.log()[-3000:]
        time.sleep(2.0)  # the last acknowledged alerts travel on to the bridge
        published = expected_histories(watcher.alerts())
        wait_until(lambda: check_tickets(rig.desk.tickets("webhook"), published).ok, 60)
        report = check_tickets(rig.desk.tickets("webhook"), published)
        latest = _latest_states(watcher)
        exit_codes = {"agent": agent.stop(), "bridge": bridge.stop()}
    restored = [int(n) for n in re.findall(r"agent\.starting.*?assets_(?:restored|checkpointed)=(\d+)", agent.log())]
    return ChaosOutcome(
        report=report, published=published, gaps=contiguous(published), conflicts=conflicting_copies(watcher.alerts()),
        agent_kills=kills, bridge_kills=kills, recovery_s=recovery,
        rewarmed=sorted(a for a, s in latest.items() if s.warmup_progress < 1.0), restored=restored[1:],
        exit_codes=exit_codes, tracebacks={"agent": agent.tracebacks(), "bridge": bridge.tracebacks()},
    )


def settled(port: int) -> bool:
    """The agent's outbox is empty and it received nothing new for a second (its backlog is drained)."""
    before = metric(port, "pdm_agent_messages_received_total", 'channel="telemetry"')
    time.sleep(1.0)
    after = metric(port, "pdm_agent_messages_received_total", 'channel="telemetry"')
    return before == after and metric(port, "pdm_agent_outbox_depth") == 0.0


def _newest(directory: Path) -> float:
    """The newest modification time of any file under ``directory`` (0 when there is none)."""
    return max((p.stat().st_mtime for p in directory.rglob("*") if p.is_file()), default=0.0)


def _valid(port: int) -> float:
    return metric(port, "pdm_agent_messages_valid_total", 'channel="telemetry"') or 0.0


def _latest_states(watcher: Watcher) -> dict[str, AssetState]:
    latest: dict[str, AssetState] = {}
    for m in watcher.on("/state"):
        state = AssetState.from_json(m.payload, max_bytes=1 << 20)
        latest[state.asset] = state
    return latest


@pytest.fixture(scope="module")
def chaos(module_rig: Rig) -> ChaosOutcome:
    """The faulty run the tests of this module look at."""
    return run_with_kills(module_rig, seed=SEED, kills=KILLS)


def per_asset(histories: dict[str, list[int]]) -> Counter[str]:
    """Alerts (tickets) per asset."""
    return Counter(alert_id.split(":")[1] for alert_id in histories)


@pytest.mark.slow
def test_kill_9_of_agent_and_bridge_loses_nothing_and_duplicates_nothing(chaos: ChaosOutcome) -> None:
    r = chaos.report
    assert chaos.agent_kills == KILLS and chaos.bridge_kills == KILLS
    assert chaos.published, "the fleet raised no alert: the run proves nothing"
    assert r.missing == [], f"alerts without a ticket: {r.missing}"
    assert r.duplicates == {}, f"duplicate tickets: {r.duplicates}"
    assert r.wrong_history == {}, f"ticket histories differ from the published events: {r.wrong_history}"
    assert chaos.gaps == {}, f"event_seq gaps (an event lost before it was published): {chaos.gaps}"
    assert chaos.conflicts == [], f"event_seq reused with other content after a crash: {chaos.conflicts}"
    assert chaos.rewarmed == [], f"models re-warmed after a restart: {chaos.rewarmed}"
    assert chaos.restored and set(chaos.restored) == {4}, f"assets restored per restart: {chaos.restored}"
    assert chaos.exit_codes == {"agent": 0, "bridge": 0}
    assert chaos.tracebacks == {"agent": 0, "bridge": 0}


@pytest.mark.slow
def test_kill_9_restarts_add_no_ticket_against_the_run_without_them(chaos: ChaosOutcome, module_rig: Rig) -> None:
    # Issue #16.5: each kill -9 restart set off a burst of false dropout tickets. The reference is the
    # same engine fed the same fleet in process, nothing going wrong.
    reference = reference_alerts(fleet_messages(module_rig.workdir, seed=SEED), FAST_DETECTION)
    faulty, calm = per_asset(chaos.published), per_asset(reference)
    extra = {a: n - calm[a] for a, n in faulty.items() if n > calm[a]}
    missing = {a: n - faulty[a] for a, n in calm.items() if n > faulty[a]}
    assert extra == {} and missing == {}, f"tickets per asset {dict(faulty)} against {dict(calm)} without faults"
