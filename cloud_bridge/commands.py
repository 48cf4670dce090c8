"""What a change a person made in a desk means for the alert on the edge. Pure (time passed in).

Two-way sync (docs/bridge.md) turns each :class:`~cloud_bridge.desks.base.DeskChange` into at most one
:class:`~pdm_common.contracts.Command` for the alert's asset:

* **resolved** (Zendesk *solved*, Jira done category, ServiceNow *Resolved*, PagerDuty *resolved*) →
  ``serviced``: the agent verifies the fix and reopens "fix not confirmed" if it does not hold;
* **acknowledged** (taken in hand, in progress) or **reassigned** → ``snooze`` until now +
  ``sync.acknowledge_snooze_h``: updates wait while someone works on it (no command when 0);
* a **comment** with ``/pdm serviced``, ``/pdm snooze 2d`` (or ``12h``, or ``until 2026-01-20T08:00Z``)
  or ``/pdm reset-baseline`` → that command; any other comment → none (it stays in the desk).

``site`` and ``asset`` (from the ``alert_id``) name the target inside the signed body; ``issued_by`` is
``desk:{desk kind}:{person}``; ``msg_id`` is derived from the desk and the change's own
id, so the same change found twice (an overlapping poll, a re-sent webhook) is the same message and
the agent's replay guard refuses the repeat. The agent bounds snoozes itself (default 14 days).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta

from cloud_bridge.desks.base import ChangeKind, DeskChange
from pdm_common.contracts import Command, CommandName, parse_ts, site_of_alert_id

__all__ = ["DIRECTIVE", "command_for", "message_id"]

DIRECTIVE = re.compile(r"(?:^|\s)/pdm\s+(?P<verb>serviced|snooze|reset-baseline)"
                       r"(?:\s+(?:(?P<n>\d{1,4})(?P<unit>[hd])|until\s+(?P<until>\S+)))?", re.IGNORECASE)
"""A command written in a desk comment, e.g. ``/pdm snooze 2d``."""

MAX_DIRECTIVE_SNOOZE_H = 14 * 24
"""A comment cannot snooze beyond what the agent accepts by default (issue #16.5: 14 days)."""


def message_id(desk: str, change_id: str) -> str:
    """The command's ``msg_id``: stable per change.

    >>> message_id("main", "42:7") == message_id("main", "42:7"), len(message_id("main", "42:7"))
    (True, 41)
    """
    return f"cmd-{desk}-" + hashlib.sha256(f"{desk}\x00{change_id}".encode()).hexdigest()[:32]


def _directive(text: str, now: datetime) -> tuple[CommandName, datetime | None] | None:
    found = DIRECTIVE.search(text)
    if found is None:
        return None
    verb = found.group("verb").lower()
    if verb == "serviced":
        return CommandName.SERVICED, None
    if verb == "reset-baseline":
        return CommandName.RESET_BASELINE, None
    if found.group("until"):
        try:
            return CommandName.SNOOZE, parse_ts(found.group("until"))
        except ValueError:
            return None
    hours = int(found.group("n") or 24) * (24 if (found.group("unit") or "h").lower() == "d" else 1)
    return CommandName.SNOOZE, now + timedelta(hours=min(hours, MAX_DIRECTIVE_SNOOZE_H))


def command_for(change: DeskChange, *, desk: str, desk_kind: str, alert_id: str, now: datetime,
                acknowledge_snooze_h: float) -> Command | None:
    """The command a desk change calls for, unsigned (None when it calls for none)."""
    name: CommandName | None = None
    until: datetime | None = None
    note = f"{change.kind} in {desk_kind} by {change.actor}"
    if change.kind == ChangeKind.RESOLVED:
        name = CommandName.SERVICED
    elif change.kind in (ChangeKind.ACKNOWLEDGED, ChangeKind.REASSIGNED):
        if acknowledge_snooze_h > 0:
            name, until = CommandName.SNOOZE, now + timedelta(hours=acknowledge_snooze_h)
    elif change.kind == ChangeKind.COMMENTED and change.text:
        found = _directive(change.text, now)
        if found is not None:
            name, until = found
            note = f"comment in {desk_kind} by {change.actor}"
    target = site_of_alert_id(alert_id)
    if name is None or target is None:
        return None
    # The target inside the signed body: the agent refuses the command on any other asset's topic.
    return Command(command=name, site=target[0], asset=target[1], ts=now, alert_id=alert_id, until=until,
                   issued_by=f"desk:{desk_kind}:{change.actor}"[:500], note=note[:500])
