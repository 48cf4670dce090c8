"""Two-way sync: a person acknowledges, comments on and resolves the ticket in each desk; the edge receives
signed commands on a real broker (issue #11.4), and the bridge's own writes never echo back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cloud_bridge.app import BridgeApp
from cloud_bridge.commands import command_for
from cloud_bridge.desks import ADAPTERS
from cloud_bridge.desks.base import ChangeKind, DeskChange
from pdm_common.contracts import MAX_COMMAND_BYTES, Command
from pdm_common.signing import ReplayGuard
from simulators.broker import free_port
from simulators.desk.auth import DeskCredentials
from simulators.desk.server import DeskSimulator
from tests.bridge.samples import COMMAND_SECRET, FIRST_SEEN, alert, desk_settings
from tests.mqtt_helpers import Recorder
from tests.waiting import wait_until

PUSHED = {"pagerduty"}
POLLED = [kind.value for kind in ADAPTERS if kind.value not in ("webhook", *PUSHED)]
"""The webhook receiver is the partner's own system: nothing flows back from it."""


def _sync_bridge(bridge: Callable[..., BridgeApp], desk_sim: DeskSimulator, kind: str) -> BridgeApp:
    over: dict[str, Any] = {"sync": {"enabled": True, "poll_s": 0.2, "overlap_s": 5.0, "acknowledge_snooze_h": 4.0}}
    desk = desk_settings(kind, desk_sim.url)
    if kind in PUSHED:
        port = free_port("127.0.0.1")
        over["sync"].update(listen_port=port)
        desk["hmac_secret"] = DeskCredentials().pagerduty_webhook_secret
        desk_sim.set_settings(pagerduty_webhook_url=f"http://127.0.0.1:{port}/webhooks/main")
    return bridge(kind, desks={"main": desk}, **over)


def _commands(recorder: Recorder) -> list[Command]:
    out = []
    for message in recorder.messages:
        command = Command.from_json(message.payload, max_bytes=MAX_COMMAND_BYTES)
        # exactly what the agent checks: the bridge's key, fresh, never replayed
        command.verify_auth({"cloud-bridge": COMMAND_SECRET}, now_s=command.auth.ts if command.auth else 0,
                            tolerance_s=300, replay=ReplayGuard())
        out.append(command)
    return out


@pytest.mark.parametrize("kind", [*POLLED, *PUSHED])
def test_people_in_the_desk_reach_the_edge_as_signed_commands(
    kind: str, bridge: Callable[..., BridgeApp], desk_sim: DeskSimulator, mqtt_broker: Any
) -> None:
    with Recorder(mqtt_broker.settings(), "pdm/v1/+/+/cmd") as recorder:
        app = _sync_bridge(bridge, desk_sim, kind)
        app.consumer.accept(alert(1, emitted_at=FIRST_SEEN))
        assert app.drain(20.0)
        ticket = desk_sim.tickets(kind)[0]["id"]
        desk_sim.act(kind, ticket, "acknowledge", actor="agent-4711")
        assert wait_until(lambda: len(recorder.messages) >= 1, 15.0), "the acknowledgement reached the edge"
        desk_sim.act(kind, ticket, "comment", actor="agent-4711", text="On my way. /pdm snooze 2d")
        assert wait_until(lambda: len(recorder.messages) >= 2, 15.0), "the comment's command reached the edge"
        desk_sim.act(kind, ticket, "resolve", actor="agent-4711")
        assert wait_until(lambda: any(c.command.value == "serviced" for c in _commands(recorder)), 15.0)
        app.sync.poll("main") if kind not in PUSHED else None  # one more poll: nothing new to send
        commands = _commands(recorder)
    assert [m.topic for m in recorder.messages] == ["pdm/v1/oslo-north/hp-0042/cmd"] * len(commands)
    assert [c.command.value for c in commands] == ["snooze", "snooze", "serviced"], commands
    assert all(c.alert_id == alert().alert_id for c in commands)
    issued = {c.issued_by for c in commands}
    assert len(issued) == 1 and str(next(iter(issued))).startswith(f"desk:{kind}:")
    ack, comment, _ = commands
    assert ack.until is not None and comment.until is not None and comment.until > ack.until  # 2 days > 4 h
    row = app.outbox.ticket(alert().alert_id)
    assert row is not None and row.acknowledged  # the SLA promise is kept: no warning for it


def test_a_bridge_write_is_not_taken_for_a_person_s(bridge: Callable[..., BridgeApp], desk_sim: DeskSimulator,
                                                    mqtt_broker: Any) -> None:
    with Recorder(mqtt_broker.settings(), "pdm/v1/+/+/cmd") as recorder:
        app = _sync_bridge(bridge, desk_sim, "zendesk")
        for event in (alert(1), alert(2, status="verifying", note="serviced"),
                      alert(3, event="resolved", status="resolved", note="fix confirmed")):
            app.consumer.accept(event)
            assert app.drain(20.0)
        for _ in range(3):
            app.sync.poll("main")
        assert desk_sim.tickets("zendesk")[0]["status"] == "solved"  # solved by the bridge, not a person
        assert recorder.messages == []


def test_a_command_per_desk_change_is_pure_and_bounded() -> None:
    ack = DeskChange("1", ChangeKind.ACKNOWLEDGED, "agent-1", "c1")
    cmd = command_for(ack, desk="main", desk_kind="zendesk", alert_id="a:b:c", now=FIRST_SEEN, acknowledge_snooze_h=0)
    assert cmd is None  # acknowledgements do not snooze when configured off
    long = DeskChange("1", ChangeKind.COMMENTED, "agent-1", "c2", text="/pdm snooze 400d")
    snooze = command_for(long, desk="main", desk_kind="zendesk", alert_id="a:b:c", now=FIRST_SEEN,
                         acknowledge_snooze_h=4)
    assert snooze is not None and snooze.until is not None and (snooze.until - FIRST_SEEN).days == 14
    chat = DeskChange("1", ChangeKind.COMMENTED, "agent-1", "c3", text="customer called, all fine")
    assert command_for(chat, desk="main", desk_kind="zendesk", alert_id="a:b:c", now=FIRST_SEEN,
                       acknowledge_snooze_h=4) is None


def test_the_sla_warning_is_posted_to_the_desk_once(bridge: Callable[..., BridgeApp], desk_sim: DeskSimulator) -> None:
    app = bridge("zendesk", sla={"check_interval_s": 0.1})
    app.consumer.accept(alert(1))  # first seen in January: its promise is long overdue
    assert app.drain(20.0)

    def sla_notes() -> list[str]:
        comments = desk_sim.tickets("zendesk")[0]["comments"]
        return [c["body"] for c in comments if "[pdm-sla " in c["body"] and not c["public"]]

    assert wait_until(lambda: len(sla_notes()) == 1 and len(app.sla_warnings) == 1, 10.0)
    assert "SLA at risk" in sla_notes()[0] and "overdue by" in sla_notes()[0]
    app.check_promises()
    assert len(sla_notes()) == 1  # warned once
