"""Fixtures of this suite: the field rig (tests/rig_fixtures.py), and one running field shared by the
modules that attack a live agent and bridge (commands over MQTT, the secret scan)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pdm_common.contracts import AlertEvent, AssetState, Command
from tests.rig import (
    FAST_DETECTION,
    Sensors,
    Service,
    Watcher,
    agent_config,
    bridge_config,
    fleet_messages,
    metric,
    start_all,
)
from tests.rig_fixtures import Rig, fault_fs, module_rig, open_rig, rig, rig_ca
from tests.waiting import wait_until

__all__ = ["Field", "Rig", "fault_fs", "live_field", "module_rig", "rig", "rig_ca"]

FIELD_SEED = 20260105


@dataclass
class Field:
    """A running agent and bridge after a fleet run, with an open alert to command.

    The agent logs in as oslo-north and serves gw-17; the bridge delivers to the desk simulator;
    ``watcher`` (svc.ops) sees everything under ``pdm/v1/#``; ``sender`` publishes as the bridge's
    account, the one allowed to write commands.
    """

    rig: Rig
    agent: Service
    bridge: Service
    agent_cfg: Path
    bridge_cfg: Path
    agent_port: int
    bridge_port: int
    watcher: Watcher
    sender: Sensors
    alert: AlertEvent
    state: AssetState

    @property
    def cmd_topic(self) -> str:
        return f"pdm/v1/{self.alert.site}/{self.alert.asset}/cmd"

    def send(self, cmd: Command, *, sign_with: str | None = None, key_id: str = "cloud-bridge", msg_id: str,
             at: float | None = None, topic: str | None = None) -> bytes:
        """Publish ``cmd`` (signed when ``sign_with`` is given) on the alert's asset's topic; returns the bytes."""
        if sign_with is not None:
            cmd = cmd.signed(key_id=key_id, secret=sign_with, msg_id=msg_id, now_s=int(at or time.time()))
        payload = cmd.to_json()
        self.sender.send([(topic or self.cmd_topic, payload)])
        return payload

    def letters(self, reason: str) -> list[dict[str, object]]:
        """Dead letters with ``reason``, in arrival order."""
        return [d for d in self.watcher.dead_letters() if d["reason"] == reason]


def _open_alert(watcher: Watcher) -> AlertEvent | None:
    states = [AssetState.from_json(m.payload, max_bytes=1 << 20) for m in watcher.on("/state")]
    latest = {s.asset: s for s in states}
    live = {a for s in latest.values() for a in s.open_alerts}
    events = [e for e in watcher.alerts() if e.alert_id in live]
    return events[-1] if events else None


@pytest.fixture(scope="session")
def live_field(tmp_path_factory: pytest.TempPathFactory, rig_ca: Path) -> Iterator[Field]:
    """One fleet run (seed 20260105) through a real agent and bridge, left running for the attacks.

    Session-scoped (one per xdist worker): the command tests and the secret scan look at the same
    processes, so the scan also covers what the command attacks made them print.
    """
    with open_rig(tmp_path_factory.mktemp("security-field"), rig_ca) as r:
        agent_cfg, agent_port = agent_config(r.workdir, r.broker, r.keys, detection=FAST_DETECTION)
        bridge_cfg, bridge_port = bridge_config(r.workdir, r.broker, r.keys, r.desk.url)
        agent, bridge = Service.agent(agent_cfg, r.workdir), Service.bridge(bridge_cfg, r.workdir)
        watcher = Watcher(r.broker.settings("svc.ops"), "pdm/v1/#")
        with watcher, Sensors(r.broker.settings("sensors.oslo-north")) as sensors, \
                Sensors(r.broker.settings("svc.cloud-bridge")) as sender:
            start_all(agent, bridge)
            messages = fleet_messages(r.workdir, seed=FIELD_SEED)
            sensors.send(messages)
            # The whole run taken in, not only an alert out: the agent's telemetry clock must stand
            # still, or a snooze computed from the last state lies in its past when it arrives (seen
            # once in a full run: the drain's outbox was momentarily empty, the clock hours further on).
            def settled() -> bool:
                taken = metric(agent_port, "pdm_agent_messages_received_total", 'channel="telemetry"') or 0.0
                return (_open_alert(watcher) is not None and taken >= len(messages)
                        and metric(agent_port, "pdm_agent_outbox_depth") == 0.0)

            assert wait_until(settled, 60), agent.log()[-3000:]
            alert = _open_alert(watcher)
            assert alert is not None
            states = [AssetState.from_json(m.payload, max_bytes=1 << 20) for m in watcher.on("/state")]
            state = [s for s in states if s.asset == alert.asset][-1]
            yield Field(r, agent, bridge, agent_cfg, bridge_cfg, agent_port, bridge_port, watcher, sender, alert,
                        state)
