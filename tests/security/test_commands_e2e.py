"""Commands over the shipped broker into the real ``edge-agent run`` (#14.2, #14.6, #16.6).

An asset of the seeded fleet has an open alert; the cloud bridge's account sends commands to it.
Only the signed, fresh, first-seen, bounded ones are applied; each refusal is dead-lettered with its
reason; every command is in the agent's ``command.audit`` log and the asset's retained state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from pdm_common.contracts import AlertEvent, AlertStatus, AssetState, Command, CommandOutcome, format_ts
from tests.rig import FAST_DETECTION, Sensors, Service, Watcher, agent_config, fleet_messages, metric, new_secret
from tests.rig_fixtures import Rig
from tests.waiting import wait_until

SEED = 20260105

pytestmark = pytest.mark.slow


@dataclass
class Field:
    """The running agent with an open alert, and what is needed to talk to it."""

    rig: Rig
    agent: Service
    watcher: Watcher
    sender: Sensors
    alert: AlertEvent
    state: AssetState

    def send(self, cmd: Command, *, sign_with: str | None = None, key_id: str = "cloud-bridge", msg_id: str,
             at: float | None = None) -> None:
        if sign_with is not None:
            cmd = cmd.signed(key_id=key_id, secret=sign_with, msg_id=msg_id, now_s=int(at or time.time()))
        self.sender.send([(f"pdm/v1/{self.alert.site}/{self.alert.asset}/cmd", cmd.to_json())])

    def letters(self, reason: str) -> list[dict[str, object]]:
        return [d for d in self.watcher.dead_letters() if d["reason"] == reason]


@pytest.fixture(scope="module")
def field(module_rig: Rig) -> Iterator[Field]:
    rig = module_rig
    cfg, port = agent_config(rig.workdir, rig.broker, rig.keys, detection=FAST_DETECTION)
    agent = Service("agent", "edge_agent.cli", cfg, rig.workdir).start()
    watcher = Watcher(rig.broker.settings("svc.ops"), "pdm/v1/oslo-north/#")
    with watcher, Sensors(rig.broker.settings("sensors.oslo-north")) as sensors, \
            Sensors(rig.broker.settings("svc.cloud-bridge")) as sender:
        assert wait_until(lambda: metric(port, "pdm_agent_mqtt_connected") == 1.0, 60), agent.log()[-2000:]
        sensors.send(fleet_messages(rig.workdir, seed=SEED))

        def open_alert() -> AlertEvent | None:
            states = [AssetState.from_json(m.payload, max_bytes=1 << 20) for m in watcher.on("/state")]
            latest = {s.asset: s for s in states}
            live = {a for s in latest.values() for a in s.open_alerts}
            events = [e for e in watcher.alerts() if e.alert_id in live]
            return events[-1] if events else None

        assert wait_until(lambda: open_alert() is not None and metric(port, "pdm_agent_outbox_depth") == 0.0, 60)
        alert = open_alert()
        assert alert is not None
        state = [AssetState.from_json(m.payload, max_bytes=1 << 20) for m in watcher.on("/state")][-1]
        yield Field(rig, agent, watcher, sender, alert, state)
        assert agent.stop() == 0


def _snooze(f: Field, hours: float, **kw: object) -> Command:
    until = (f.alert.last_seen if f.alert.last_seen > f.state.ts else f.state.ts) + timedelta(hours=hours)
    return Command.model_validate({"command": "snooze", "alert_id": f.alert.alert_id, "until": format_ts(until),
                                   "issued_by": "desk:zendesk:agent-4711", **kw})


REFUSALS = [
    ("unsigned", {}, "signature_missing"),
    ("foreign-key", {"sign_with": new_secret()}, "signature_mismatch"),
    ("unknown-key", {"sign_with": "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=", "key_id": "mallory"},
     "signature_unknown_key"),
    ("stale", {"at": time.time() - 3600}, "signature_stale"),
]


@pytest.mark.parametrize(("name", "how", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_unauthenticated_commands_are_refused_with_a_reason(field: Field, name: str, how: dict[str, object],
                                                           reason: str) -> None:
    how = dict(how)
    if name != "unsigned":
        how.setdefault("sign_with", field.rig.keys.commands)
    field.send(_snooze(field, 6), msg_id=f"refuse-{name}", **how)  # type: ignore[arg-type]
    assert wait_until(lambda: len(field.letters(reason)) >= 1, 15), field.agent.log()[-2000:]
    assert field.agent.alive, "a refused command must not stop the agent"


def test_a_replayed_command_is_refused(field: Field) -> None:
    cmd = _snooze(field, 1, note="first")
    signed = cmd.signed(key_id="cloud-bridge", secret=field.rig.keys.commands, msg_id="replay-1",
                        now_s=int(time.time()))
    topic = f"pdm/v1/{field.alert.site}/{field.alert.asset}/cmd"
    field.sender.send([(topic, signed.to_json()), (topic, signed.to_json())])
    assert wait_until(lambda: len(field.letters("signature_replayed")) >= 1, 15)


def test_snooze_until_2099_is_refused(field: Field) -> None:
    cmd = Command.model_validate({"command": "snooze", "alert_id": field.alert.alert_id,
                                  "until": "2099-01-01T00:00:00Z", "issued_by": "ops:mallory"})
    field.send(cmd, sign_with=field.rig.keys.commands, msg_id="snooze-2099")
    assert wait_until(lambda: len(field.letters("snooze_beyond_horizon")) >= 1, 15)


def test_signed_snooze_is_applied_audited_and_names_who(field: Field) -> None:
    field.send(_snooze(field, 6), sign_with=field.rig.keys.commands, msg_id="snooze-ok")

    def snoozed() -> list[AlertEvent]:
        return [e for e in field.watcher.alerts() if e.alert_id == field.alert.alert_id
                and e.status is AlertStatus.SNOOZED]

    assert wait_until(lambda: bool(snoozed()), 15), field.agent.log()[-3000:]
    ev = snoozed()[-1]
    assert ev.snooze is not None and ev.snooze.issued_by == "desk:zendesk:agent-4711"
    assert ev.snooze.key_id == "cloud-bridge"
    assert ev.auth is not None and ev.auth.key_id == "gw-17", "the agent signs every alert it publishes"

    def trail() -> list[tuple[str | None, CommandOutcome, str | None]]:
        states = [AssetState.from_json(m.payload, max_bytes=1 << 20) for m in field.watcher.on("/state")]
        mine = [s for s in states if s.asset == field.alert.asset]
        return [(r.msg_id, r.outcome, r.reason) for r in (mine[-1].commands if mine else [])]

    assert wait_until(lambda: ("snooze-ok", CommandOutcome.ACCEPTED, None) in trail(), 15)
    audit = [json.loads(json.dumps(line)) for line in field.agent.log().splitlines() if "command.audit" in line]
    assert any("snooze-ok" in line and "accepted" in line for line in audit)
    assert any("signature_missing" in line for line in audit), "refusals are audited too"
