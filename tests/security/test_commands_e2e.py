"""Commands over the shipped broker into the real ``edge-agent run`` (#14.2, #14.6, #16.6).

An asset of the seeded fleet has an open alert; the cloud bridge's account sends commands to it.
Only the signed, fresh, first-seen, bounded ones are applied; each refusal is dead-lettered with its
reason; every command is in the agent's ``command.audit`` log and the asset's retained state.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from pdm_common.contracts import AlertEvent, AlertStatus, AssetState, Command, CommandOutcome, format_ts
from tests.rig import new_secret
from tests.security.conftest import Field
from tests.waiting import wait_until

SEED = 20260105

pytestmark = pytest.mark.slow


@pytest.fixture
def field(live_field: Field) -> Field:
    """The shared running field (tests/security/conftest.py), its agent serving."""
    assert live_field.agent.alive, live_field.agent.log()[-3000:]
    return live_field


def _snooze(f: Field, hours: float, **kw: object) -> Command:
    until = (f.alert.last_seen if f.alert.last_seen > f.state.ts else f.state.ts) + timedelta(hours=hours)
    return Command.model_validate({"command": "snooze", "site": f.alert.site, "asset": f.alert.asset,
                                   "alert_id": f.alert.alert_id, "until": format_ts(until),
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
    field.sender.send([(field.cmd_topic, signed.to_json()), (field.cmd_topic, signed.to_json())])
    assert wait_until(lambda: len(field.letters("signature_replayed")) >= 1, 15)


def test_a_command_for_another_asset_is_refused_on_this_ones_topic(field: Field) -> None:
    # A genuine command for hp-0003, captured and published on the alert's asset's topic.
    other = Command.model_validate({"command": "reset_baseline", "site": field.alert.site, "asset": "hp-0003",
                                    "issued_by": "ops:alice"})
    field.send(other, sign_with=field.rig.keys.commands, msg_id="other-target")
    assert wait_until(lambda: len(field.letters("target_mismatch")) >= 1, 15), field.agent.current_log()[-2000:]


def test_snooze_until_2099_is_refused(field: Field) -> None:
    cmd = Command.model_validate({"command": "snooze", "site": field.alert.site, "asset": field.alert.asset,
                                  "alert_id": field.alert.alert_id, "until": "2099-01-01T00:00:00Z",
                                  "issued_by": "ops:mallory"})
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


def test_a_command_replayed_after_a_restart_is_refused(field: Field) -> None:
    # Accepted, then the agent restarts (kill -9: nothing flushed on the way out), then the same
    # signed bytes come again within their five minutes.
    before = len(field.letters("signature_replayed"))
    payload = field.send(Command.model_validate({"command": "serviced", "site": field.alert.site,
                                                  "asset": field.alert.asset, "issued_by": "ops:alice"}),
                         sign_with=field.rig.keys.commands, msg_id="replay-across-restart")
    assert wait_until(lambda: "msg_id=replay-across-restart" in field.agent.current_log(), 15)
    field.agent.kill9()
    field.agent.start().wait_ready()
    field.sender.send([(field.cmd_topic, payload)])
    assert wait_until(lambda: len(field.letters("signature_replayed")) > before, 15), field.agent.current_log()[-2000:]
    assert json.loads(str(field.letters("signature_replayed")[-1]["payload"]))["auth"]["msg_id"] == \
        "replay-across-restart"


def test_after_a_restart_commands_are_judged_in_telemetry_time(field: Field) -> None:
    # Runs after the restart above (file order): no telemetry has arrived since.
    restarted_log = field.agent.current_log()
    field.send(_snooze(field, 6), sign_with=field.rig.keys.commands, msg_id="snooze-after-restart")
    assert wait_until(lambda: "msg_id=snooze-after-restart" in field.agent.current_log(), 15)
    assert "outcome=accepted" in next(line for line in field.agent.current_log().splitlines()
                                  if "msg_id=snooze-after-restart" in line)
    assert "event=asset.silent" not in restarted_log
