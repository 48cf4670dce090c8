"""Promise tracking: when a ticket's SLA deadline nears without acknowledgement, say so. Pure.

Deadlines are set when a ticket is opened (``cloud_bridge.ticket.sla_deadline``); an ``updated``
event with status ``snoozed`` or ``verifying`` means someone took the alert in hand and acknowledges
the promise; ``resolved`` ends it; a reopen starts a new one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["SlaWarning", "TicketRow", "due_warnings"]


@dataclass(frozen=True, slots=True)
class TicketRow:
    """The bridge's memory of one alert's ticket, for promise tracking (the outbox stores it)."""

    alert_id: str
    desk: str
    ticket_ref: str | None
    priority: str | None
    opened_at: float | None
    sla_deadline: float | None
    acknowledged: bool
    warned: bool
    resolved_at: float | None


@dataclass(frozen=True, slots=True)
class SlaWarning:
    """A ticket whose promised response is close and not yet acknowledged."""

    alert_id: str
    desk: str
    ticket_ref: str | None
    priority: str | None
    deadline: float
    remaining_s: float


def due_warnings(rows: Iterable[TicketRow], *, now: float, warn_fraction: float) -> list[SlaWarning]:
    """Tickets past ``warn_fraction`` of their SLA window, unacknowledged, unresolved and not yet warned.

    >>> row = TicketRow("a", "main", "WH-1", "P2", 0.0, 100.0, False, False, None)
    >>> [w.remaining_s for w in due_warnings([row], now=80.0, warn_fraction=0.75)]
    [20.0]
    >>> due_warnings([row], now=70.0, warn_fraction=0.75)
    []
    """
    out: list[SlaWarning] = []
    for r in rows:
        if r.acknowledged or r.warned or r.resolved_at is not None or r.sla_deadline is None or r.opened_at is None:
            continue
        warn_at = r.opened_at + warn_fraction * (r.sla_deadline - r.opened_at)
        if now >= warn_at:
            out.append(SlaWarning(r.alert_id, r.desk, r.ticket_ref, r.priority, r.sla_deadline, r.sla_deadline - now))
    return out
