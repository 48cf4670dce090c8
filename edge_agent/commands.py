"""Command policy and alert signing of the agent. Pure: keys, clocks and the engine are passed in.

Who may command an asset (DESIGN.md §2, "who may speak for what"): a command is applied only when

1. it carries a Standard Webhooks signature (:class:`pdm_common.contracts.Auth`) under one of the
   sender keys configured in ``[commands] keys`` — unless the operator turned
   ``require_signature`` off for a closed network, and even then a signature that is present must
   verify;
2. it is fresh: its ``auth.ts`` within ``tolerance_s`` (300 s, the Standard Webhooks default) of the
   gateway's wall clock, and its ``msg_id`` not seen before in that window (:class:`ReplayGuard`;
   the agent's is :class:`edge_agent.command_ledger.DurableReplayGuard`, which survives restarts);
3. it is for this asset: the ``site`` and ``asset`` inside the signed body are the topic's, so a
   signed command cannot be replayed to another asset or to another gateway trusting the same key;
4. the engine accepts it (:meth:`edge_agent.engine.DetectionEngine.command`): the asset is known, an
   ``alert_id`` names one of its alerts, a snooze targets an *active* alert and ends within
   ``max_snooze_h`` (14 days by default).

Every command is audited, accepted or refused: one ``command.audit`` log event (who: ``key_id`` and
``issued_by``; what; outcome and reason), an entry in the asset's retained state
(``AssetState.commands``, the last :data:`~pdm_common.contracts.MAX_COMMAND_RECORDS`), and a refused
one goes to the dead-letter topic with its reason.

Alerts are signed here too (:class:`AlertSigner`): the gateway's key signs every AlertEvent before
it is written to the outbox, so the bridge can refuse an event from a gateway that does not own the
site. Alerts carry no freshness window (they may wait in an outbox for days; order is ``event_seq``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from edge_agent.errors import CommandRefused
from edge_agent.ingest import CommandReceived, Rejected
from pdm_common.contracts import (
    NAME_PATTERN,
    AlertEvent,
    AssetState,
    Command,
    CommandRecord,
    DeadLetter,
)
from pdm_common.logs import get_logger
from pdm_common.signing import DEFAULT_TOLERANCE_S, ReplayGuard, SignatureError
from pdm_common.topics import Topics

if TYPE_CHECKING:  # the engine pulls in numpy; the settings here must load without it (check-config)
    from edge_agent.engine import DetectionEngine

__all__ = [
    "DEFAULT_MAX_SNOOZE_H",
    "AlertSigner",
    "CommandGate",
    "CommandSettings",
    "GateResult",
    "SigningSettings",
    "alert_msg_id",
]

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]

DEFAULT_MAX_SNOOZE_H = 14 * 24.0
"""Longest snooze by default: long enough to wait for a scheduled visit or a part, short enough that a
forgotten snooze cannot silence a developing fault for a season (issue #16: a snooze until 2099
silenced an expansion-valve fault completely)."""

_log = get_logger(__name__)


class CommandSettings(BaseModel):
    """``[commands]``: who may send commands to this agent, and the bounds of what they may ask."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keys: dict[Name, Path] = Field(
        default_factory=dict,
        description="sender key_id -> file holding its secret (whsec_… or a passphrase); e.g. the bridge's key",
    )
    require_signature: bool = Field(
        True, description="refuse unsigned commands; set false only on a closed network where the broker ACL suffices"
    )
    tolerance_s: float = Field(
        float(DEFAULT_TOLERANCE_S), ge=1.0, le=3600.0,
        description="largest |gateway clock - command timestamp| accepted, seconds (replays are refused within it)",
    )
    max_snooze_h: float = Field(
        DEFAULT_MAX_SNOOZE_H, gt=0.0, le=24.0 * 366, description="longest snooze accepted, hours from now"
    )


class SigningSettings(BaseModel):
    """``[signing]``: the gateway's key that signs every alert event it publishes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: Name | None = Field(None, description="key name the bridge knows this gateway by; default: gateway")
    secret_file: Path | None = Field(
        None, description="file holding the gateway's alert-signing secret; unset = alerts go out unsigned"
    )


def alert_msg_id(event: AlertEvent) -> str:
    """The signature's message id of an alert event: stable per ``(alert_id, event_seq)``.

    Stable, so a copy re-sent after a reconnect is byte-identical and the bridge can recognise it.
    """
    digest = hashlib.sha256(f"{event.alert_id}#{event.event_seq}".encode()).hexdigest()
    return f"alert-{digest[:40]}"


@dataclass(frozen=True)
class AlertSigner:
    """Signs alert events with the gateway's key (``[signing]``).

    Args:
        key_id: the name the bridge's ``[gateways.<key_id>]`` table knows this gateway by.
        secret: the shared secret.
    """

    key_id: str
    secret: str = field(repr=False)

    def sign(self, event: AlertEvent, now_s: int) -> AlertEvent:
        """A copy of ``event`` carrying the gateway's signature made at ``now_s`` (epoch seconds)."""
        return event.signed(key_id=self.key_id, secret=self.secret, msg_id=alert_msg_id(event), now_s=now_s)


def sign_alert(event: AlertEvent, signer: AlertSigner | None, now_s: int) -> AlertEvent:
    """``event`` signed by ``signer``, or unchanged when the gateway has no signing key configured."""
    return event if signer is None else signer.sign(event, now_s)


@dataclass(frozen=True)
class GateResult:
    """What one command led to.

    Attributes:
        events: alert events and the asset's new state to store and publish (empty when refused).
        record: the audit entry.
        rejected: the dead letter of a refused command, else None.
    """

    events: list[AlertEvent | AssetState]
    record: CommandRecord
    rejected: Rejected | None = None


class CommandGate:
    """Authenticates, bounds, applies and audits commands (see the module docstring).

    Args:
        topics: for the dead-letter topic of a refused command.
        keys: sender key_id -> secret.
        require_signature: refuse commands without ``auth``.
        tolerance_s: freshness window, seconds.
        max_snooze: longest snooze accepted.
        replay: message ids already accepted (a fresh guard over twice the window by default).
    """

    def __init__(
        self,
        topics: Topics,
        *,
        keys: Mapping[str, str],
        require_signature: bool = True,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        max_snooze: timedelta = timedelta(hours=DEFAULT_MAX_SNOOZE_H),
        replay: ReplayGuard | None = None,
    ) -> None:
        self._topics = topics
        self._keys = dict(keys)
        self.require_signature = require_signature
        self.tolerance_s = tolerance_s
        self.max_snooze = max_snooze
        # Not `replay or …`: an empty guard has len() 0 and would be swapped for a fresh in-memory one.
        self._replay = replay if replay is not None else ReplayGuard(window_s=2 * tolerance_s)

    def apply(self, received: CommandReceived, engine: DetectionEngine, *, now: datetime, wall_s: float) -> GateResult:
        """Authenticate ``received`` and apply it to ``engine``.

        Args:
            received: the parsed command with its topic and raw payload.
            engine: the detection engine that owns the asset.
            now: the agent's clock (lifecycle time: snooze bounds are measured from it).
            wall_s: the gateway's wall clock in epoch seconds (signature freshness).
        """
        cmd = received.command
        key_id: str | None = None
        try:
            key_id = self._authenticate(cmd, wall_s)
        except SignatureError as exc:
            return self._refuse_here(received, engine, CommandRefused(f"signature_{exc.reason}", exc.detail),
                                     key_id=None, now=now)
        if (cmd.site, cmd.asset) != (received.site, received.asset):
            mismatch = CommandRefused("target_mismatch", f"the command names {cmd.site}/{cmd.asset}, its topic "
                                      f"{received.site}/{received.asset}")
            return self._refuse_here(received, engine, mismatch, key_id=key_id, now=now)
        try:
            events = engine.command(received.site, received.asset, cmd, now, key_id=key_id,
                                    max_snooze=self.max_snooze)
        except CommandRefused as refusal:
            # The engine has put its refusal in the asset's trail already.
            record = CommandRecord.of(cmd, at=now, key_id=key_id, reason=refusal.reason)
            return self._refuse(received, record, refusal, now)
        record = CommandRecord.of(cmd, at=now, key_id=key_id, reason=None)
        _log.info("command.audit", outcome=record.outcome.value, site=received.site, asset=received.asset,
                  command=cmd.command.value, alert_id=cmd.alert_id, until=record.until, key_id=key_id,
                  issued_by=cmd.issued_by, msg_id=record.msg_id, events=len(events))
        return GateResult(events=events, record=record)

    def _refuse_here(self, received: CommandReceived, engine: DetectionEngine, refusal: CommandRefused, *,
                     key_id: str | None, now: datetime) -> GateResult:
        """Refuse before the engine saw the command: the refusal goes into the topic asset's trail here."""
        record = CommandRecord.of(received.command, at=now, key_id=key_id, reason=refusal.reason)
        engine.record_command(received.site, received.asset, record)
        return self._refuse(received, record, refusal, now)

    def _authenticate(self, cmd: Command, wall_s: float) -> str | None:
        if cmd.auth is None and not self.require_signature:
            return None
        return cmd.verify_auth(self._keys, now_s=wall_s, tolerance_s=self.tolerance_s, replay=self._replay)

    def _refuse(self, received: CommandReceived, record: CommandRecord, refusal: CommandRefused,
                now: datetime) -> GateResult:
        cmd = received.command
        _log.warning("command.audit", outcome=record.outcome.value, reason=refusal.reason, detail=refusal.detail[:200],
                     site=received.site, asset=received.asset, command=cmd.command.value, alert_id=cmd.alert_id,
                     until=record.until, key_id=record.key_id, issued_by=cmd.issued_by, msg_id=record.msg_id,
                     action="sign commands with a key listed in [commands] keys, fresh (<= tolerance_s) and once")
        letter = DeadLetter.build(reason=refusal.reason, detail=refusal.detail, topic=received.topic,
                                  payload=received.payload, received_at=now)
        return GateResult(events=[], record=record,
                          rejected=Rejected(topic=self._topics.deadletter_for(received.topic), letter=letter))
