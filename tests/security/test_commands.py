"""Commands on the agent: signed by a configured sender, fresh, once; bounded; every one audited (#14.2, #16.6).

The policy in-process (:class:`edge_agent.commands.CommandGate` over a real engine with an open
alert); ``test_commands_e2e.py`` drives the same over MQTT into the real ``edge-agent run``.
"""

from __future__ import annotations

import json
import pickle
from datetime import timedelta
from pathlib import Path

import pytest

from edge_agent.command_ledger import COMMAND_LEDGER, DurableReplayGuard
from edge_agent.commands import AlertSigner, CommandGate
from edge_agent.config import AgentSettings
from edge_agent.engine import DetectionEngine
from edge_agent.ingest import CommandReceived, Rejected, ingest
from edge_agent.keyfiles import alert_signer, command_gate
from pdm_common.contracts import (
    MAX_COMMAND_RECORDS,
    AlertEvent,
    AlertStatus,
    AssetState,
    Command,
    CommandOutcome,
    EventType,
    format_ts,
)
from pdm_common.errors import ConfigError
from pdm_common.signing import ReplayGuard, SignatureError
from pdm_common.topics import Topics
from tests.agent_core.conftest import alerts, feed, new_engine
from tests.agent_core.synthetic import T0, HeatPumpStream, leak

DESK_KEY = "whsec_" + "ZGVzay1rZXktZm9yLXRlc3RzLW9ubHktMzItYnl0ZXM="
OTHER_KEY = "whsec_" + "b3RoZXIta2V5LWZvci10ZXN0cy1vbmx5LTMyLWJ5dGVz"
TOPICS = Topics("pdm/v1")
TOPIC = "pdm/v1/site-a/hp-0001/cmd"
NOW = T0 + timedelta(hours=24 * 4)
WALL_S = 1_770_000_000.0


@pytest.fixture(scope="module")
def leaking() -> tuple[bytes, AlertEvent]:
    """A pickled engine with an open leak alert (so each test starts from a copy) and its opened event."""
    engine = new_engine()
    opened = alerts(feed(engine, HeatPumpStream(injections=[leak(48, 3.0)]), 24 * 4))[0]
    assert opened.event is EventType.OPENED
    return pickle.dumps(engine), opened


def _engine(leaking: tuple[bytes, AlertEvent]) -> DetectionEngine:
    engine: DetectionEngine = pickle.loads(leaking[0])
    return engine


def _gate(**kw: object) -> CommandGate:
    args: dict[str, object] = {"keys": {"bridge": DESK_KEY}, "replay": ReplayGuard()}
    args.update(kw)
    return CommandGate(TOPICS, **args)  # type: ignore[arg-type]


def _cmd(msg_id: str = "m-1", *, key: str = DESK_KEY, key_id: str = "bridge", ts: float = WALL_S,
         sign: bool = True, fields: dict[str, object] | None = None, **more: str) -> CommandReceived:
    body: dict[str, object] = {"command": "snooze", "site": "site-a", "asset": "hp-0001",
                               "until": format_ts(NOW + timedelta(hours=6)), "issued_by": "desk:zendesk:agent-4711"}
    body.update(fields or {})
    body.update(more)
    cmd = Command.model_validate(body)
    if sign:
        cmd = cmd.signed(key_id=key_id, secret=key, msg_id=msg_id, now_s=int(ts))
    received = ingest(TOPICS, TOPIC, cmd.to_json(), NOW)
    assert isinstance(received, CommandReceived)
    return received


def _state(events: list[AlertEvent | AssetState]) -> AssetState:
    state = events[-1]
    assert isinstance(state, AssetState)
    return state


def test_signed_snooze_is_applied_and_says_who_and_until(leaking: tuple[bytes, AlertEvent]) -> None:
    engine = _engine(leaking)
    result = _gate().apply(_cmd(), engine, now=NOW, wall_s=WALL_S)
    assert result.rejected is None and result.record.outcome is CommandOutcome.ACCEPTED
    (snoozed,) = alerts(result.events)
    assert snoozed.status is AlertStatus.SNOOZED and snoozed.alert_id == leaking[1].alert_id
    assert snoozed.snooze is not None
    assert (snoozed.snooze.until, snoozed.snooze.issued_by, snoozed.snooze.key_id) == (
        NOW + timedelta(hours=6), "desk:zendesk:agent-4711", "bridge")
    assert "desk:zendesk:agent-4711" in (snoozed.note or "")
    trail = _state(result.events).commands
    assert [(r.command.value, r.outcome, r.key_id, r.issued_by, r.msg_id) for r in trail] == [
        ("snooze", CommandOutcome.ACCEPTED, "bridge", "desk:zendesk:agent-4711", "m-1")]
    # The event round-trips the wire with who and until.
    again = AlertEvent.from_json(snoozed.to_json(), max_bytes=1 << 20)
    assert again.snooze == snoozed.snooze


@pytest.mark.parametrize(
    ("received", "reason"),
    [
        (lambda: _cmd(sign=False), "signature_missing"),
        (lambda: _cmd(key=OTHER_KEY), "signature_mismatch"),
        (lambda: _cmd(key_id="mallory"), "signature_unknown_key"),
        (lambda: _cmd(ts=WALL_S - 301), "signature_stale"),
        (lambda: _cmd(ts=WALL_S + 301), "signature_stale"),
    ],
    ids=["unsigned", "wrong-key", "unknown-key", "stale", "from-the-future"],
)
def test_unauthenticated_commands_are_refused_dead_lettered_and_audited(
    leaking: tuple[bytes, AlertEvent], received: object, reason: str
) -> None:
    engine = _engine(leaking)
    assert callable(received)
    result = _gate().apply(received(), engine, now=NOW, wall_s=WALL_S)
    assert result.events == [] and result.rejected is not None
    assert result.rejected.letter.reason == reason
    assert result.rejected.topic == "pdm/v1/site-a/hp-0001/deadletter"
    assert result.record.outcome is CommandOutcome.REFUSED and result.record.reason == reason
    state = engine.asset_states()[0]
    assert [(r.outcome, r.reason) for r in state.commands] == [(CommandOutcome.REFUSED, reason)]
    assert engine.open_alerts()[0].status is AlertStatus.OPEN, "a refused snooze must not silence the alert"


def test_a_replayed_command_is_refused(leaking: tuple[bytes, AlertEvent]) -> None:
    engine, gate = _engine(leaking), _gate()
    first = _cmd("m-replay", command="serviced")
    assert gate.apply(first, engine, now=NOW, wall_s=WALL_S).rejected is None
    again = gate.apply(first, engine, now=NOW, wall_s=WALL_S + 10)
    assert again.rejected is not None and again.rejected.letter.reason == "signature_replayed"


def test_a_command_accepted_before_a_restart_is_refused_after_it(leaking: tuple[bytes, AlertEvent],
                                                                  tmp_path: Path) -> None:
    ledger = tmp_path / COMMAND_LEDGER
    first = _cmd("m-restart", command="serviced")
    before = _gate(replay=DurableReplayGuard(ledger, window_s=600, now_s=WALL_S))
    assert before.apply(first, _engine(leaking), now=NOW, wall_s=WALL_S).rejected is None
    # The agent restarts (a new gate reads the ledger) and the same signed bytes come again, fresh.
    after = _gate(replay=DurableReplayGuard(ledger, window_s=600, now_s=WALL_S + 120))
    again = after.apply(first, _engine(leaking), now=NOW, wall_s=WALL_S + 120)
    assert again.rejected is not None and again.rejected.letter.reason == "signature_replayed"
    # Ids past the window are forgotten at load (their timestamps are stale by then anyway).
    later = DurableReplayGuard(ledger, window_s=600, now_s=WALL_S + 601)
    assert len(later) == 0 and later.accept("m-restart", WALL_S + 601)


def test_an_unwritable_ledger_still_refuses_replays_in_memory(leaking: tuple[bytes, AlertEvent],
                                                              tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the state directory should be")
    gate = _gate(replay=DurableReplayGuard(tmp_path / "state" / COMMAND_LEDGER, window_s=600, now_s=WALL_S))
    first = _cmd("m-mem", command="serviced")
    engine = _engine(leaking)
    assert gate.apply(first, engine, now=NOW, wall_s=WALL_S).rejected is None
    again = gate.apply(first, engine, now=NOW, wall_s=WALL_S + 1)
    assert again.rejected is not None and again.rejected.letter.reason == "signature_replayed"


@pytest.mark.parametrize("target", [{"asset": "hp-0002"}, {"site": "site-b"}], ids=["other-asset", "other-site"])
def test_a_command_signed_for_another_target_is_refused(leaking: tuple[bytes, AlertEvent],
                                                       target: dict[str, str]) -> None:
    # A genuine signed command for hp-0002 (or another site's hp-0001), replayed on hp-0001's topic.
    engine = _engine(leaking)
    result = _gate().apply(_cmd("m-target", fields={"command": "serviced", **target}), engine, now=NOW, wall_s=WALL_S)
    assert result.rejected is not None and result.rejected.letter.reason == "target_mismatch"
    assert result.events == [] and engine.asset_states()[0].commands[-1].reason == "target_mismatch"


def test_a_command_without_its_target_is_refused_at_ingest() -> None:
    payload = json.dumps({"command": "serviced", "issued_by": "ops:alice"}).encode()
    refused = ingest(TOPICS, TOPIC, payload, NOW)
    assert isinstance(refused, Rejected) and "site" in refused.letter.detail


def test_unsigned_commands_only_where_the_operator_said_so(leaking: tuple[bytes, AlertEvent]) -> None:
    engine = _engine(leaking)
    open_gate = _gate(require_signature=False)
    assert open_gate.apply(_cmd(sign=False), engine, now=NOW, wall_s=WALL_S).rejected is None
    # A signature that is present must still verify, even on a closed network.
    forged = open_gate.apply(_cmd(key=OTHER_KEY, msg_id="m-2"), engine, now=NOW, wall_s=WALL_S)
    assert forged.rejected is not None and forged.rejected.letter.reason == "signature_mismatch"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"until": "2099-01-01T00:00:00Z"}, "snooze_beyond_horizon"),
        ({"until": format_ts(NOW + timedelta(days=14, minutes=1))}, "snooze_beyond_horizon"),
        ({"until": format_ts(NOW - timedelta(minutes=1))}, "snooze_in_past"),
        ({"alert_id": "site-b:hp-0001:2026-01-07T00:00:00Z:refrigerant_leak"}, "alert_id_mismatch"),
        ({"alert_id": "site-a:hp-0001:2026-01-07T00:00:00Z:no_such"}, "unknown_alert"),
    ],
    ids=["until-2099", "15-days", "past", "other-site-alert", "unknown-alert"],
)
def test_snooze_is_bounded(leaking: tuple[bytes, AlertEvent], fields: dict[str, object], reason: str) -> None:
    engine = _engine(leaking)
    result = _gate().apply(_cmd(fields=fields), engine, now=NOW, wall_s=WALL_S)
    assert result.rejected is not None and result.rejected.letter.reason == reason
    assert engine.asset_states()[0].commands[-1].reason == reason


def test_snooze_at_the_horizon_is_accepted(leaking: tuple[bytes, AlertEvent]) -> None:
    engine = _engine(leaking)
    until = NOW + timedelta(days=14)
    result = _gate().apply(_cmd(until=format_ts(until)), engine, now=NOW, wall_s=WALL_S)
    assert result.rejected is None
    short = _gate(max_snooze=timedelta(hours=2)).apply(_cmd("m-9"), _engine(leaking), now=NOW, wall_s=WALL_S)
    assert short.rejected is not None and short.rejected.letter.reason == "snooze_beyond_horizon"


def test_snooze_needs_an_active_alert() -> None:
    engine = new_engine()
    feed(engine, HeatPumpStream(), 2)
    result = _gate().apply(_cmd(), engine, now=T0 + timedelta(hours=2), wall_s=WALL_S)
    assert result.rejected is not None and result.rejected.letter.reason == "no_active_alert"


def test_unknown_asset_is_refused() -> None:
    result = _gate().apply(_cmd(), new_engine(), now=NOW, wall_s=WALL_S)
    assert result.rejected is not None and result.rejected.letter.reason == "unknown_asset"


def test_a_flood_of_forged_commands_cannot_push_accepted_ones_out_of_the_trail(
    leaking: tuple[bytes, AlertEvent],
) -> None:
    engine, gate = _engine(leaking), _gate()
    for i in range(5):
        assert gate.apply(_cmd(f"ok-{i}", command="serviced"), engine, now=NOW, wall_s=WALL_S).rejected is None
    for i in range(60):
        gate.apply(_cmd(f"forged-{i}", key=OTHER_KEY), engine, now=NOW, wall_s=WALL_S)
    trail = engine.asset_states()[0].commands
    assert len(trail) == MAX_COMMAND_RECORDS
    assert [r.msg_id for r in trail if r.outcome is CommandOutcome.ACCEPTED] == [f"ok-{i}" for i in range(5)]
    assert trail[-1].msg_id == "forged-59"


def test_the_trail_survives_a_checkpoint(leaking: tuple[bytes, AlertEvent]) -> None:
    engine = _engine(leaking)
    _gate().apply(_cmd(), engine, now=NOW, wall_s=WALL_S)
    restored: DetectionEngine = pickle.loads(pickle.dumps(engine))
    assert [r.msg_id for r in restored.asset_states()[0].commands] == ["m-1"]


def test_alerts_are_signed_with_the_gateway_key(leaking: tuple[bytes, AlertEvent]) -> None:
    opened = leaking[1]
    signer = AlertSigner(key_id="gw-17", secret=DESK_KEY)
    signed = signer.sign(opened, 1_770_000_000)
    assert "whsec" not in repr(signer)
    wire = AlertEvent.from_json(signed.to_json(), max_bytes=1 << 20)
    assert wire.verify_auth({"gw-17": DESK_KEY}, now_s=1_990_000_000, tolerance_s=None) == "gw-17"
    with pytest.raises(SignatureError) as err:
        wire.verify_auth({"gw-17": OTHER_KEY}, now_s=1_770_000_000, tolerance_s=None)
    assert err.value.reason == "mismatch"
    tampered = wire.model_copy(update={"site": "bergen-1"})
    with pytest.raises(SignatureError):
        tampered.verify_auth({"gw-17": DESK_KEY}, now_s=1_770_000_000, tolerance_s=None)
    # The same event signed again (a re-send) carries the same message id.
    assert signer.sign(opened, 1_770_000_500).auth.msg_id == signed.auth.msg_id  # type: ignore[union-attr]


def test_key_files_are_read_at_start_and_missing_ones_named(tmp_path: Path) -> None:
    key = tmp_path / "bridge.key"
    key.write_text(DESK_KEY + "\n")
    settings = AgentSettings(gateway="gw-17", state_dir=tmp_path / "state", commands={"keys": {"bridge": key}},
                             signing={"secret_file": key})
    assert command_gate(settings).require_signature
    assert (tmp_path / "state" / COMMAND_LEDGER).exists(), "the replay ledger lives in the state directory"
    signer = alert_signer(settings)
    assert signer is not None and signer.key_id == "gw-17"
    missing = AgentSettings(commands={"keys": {"bridge": tmp_path / "nope.key"}})
    with pytest.raises(ConfigError, match=r"commands\.keys\.bridge") as err:
        command_gate(missing)
    assert "nope.key" in str(err.value)
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"signing\.secret_file"):
        alert_signer(AgentSettings(signing={"secret_file": empty}))
    assert alert_signer(AgentSettings()) is None
