"""PagerDuty Events API v2 (``POST /v2/enqueue``): trigger / acknowledge / resolve by ``dedup_key``.

Lifecycle (docs/bridge.md): open → trigger (``dedup_key`` = alert_id, incident *triggered*, pages);
update → trigger (appended to the open incident, no new page); snoozed or serviced → acknowledge
(*acknowledged*); **fix not confirmed** → resolve the current incident, then trigger a new one under
``{alert_id}~{event_seq}`` so someone is paged again (a trigger onto an acknowledged incident would
stay acknowledged and page nobody); resolve → resolve. The dedup key in use is the ticket reference
the bridge stores, so later events address the re-alerted incident. A retried reopen resolves the old
key again (ignored by PagerDuty) and triggers the same new key (appended): still one new incident.
After a responder resolved the incident in PagerDuty (webhooks v3, ``cloud_bridge.sync``), updates
are not triggered: a trigger onto a resolved key would open a new incident for a repair in progress.

Limits from PagerDuty's docs (desk-specs/SOURCES.md): summary ≤ 1024 characters, dedup_key ≤ 255,
routing key 32 characters. Events v2 has no read-only call and no notes.
"""

from __future__ import annotations

from typing import Any

from cloud_bridge.desks.base import Delivery, DeskAdapter
from cloud_bridge.errors import PermanentDeliveryError
from cloud_bridge.ticket import Ticket, TicketAction
from pdm_common.contracts import format_ts

__all__ = ["PagerDutyAdapter", "reopen_key"]

_SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255


def reopen_key(alert_id: str, event_seq: int) -> str:
    """The dedup key of the incident a "fix not confirmed" re-alerts under.

    >>> reopen_key("oslo-north:hp-0042:2026-01-14T03:10:00Z:low_flow", 5)
    'oslo-north:hp-0042:2026-01-14T03:10:00Z:low_flow~5'
    """
    return f"{alert_id}~{event_seq}"


class PagerDutyAdapter(DeskAdapter):
    """Sends Events v2; the token is the integration's routing key."""

    token_is_bearer = False  # the routing key travels in the body, not in a header

    def _event(self, action: str, key: str, t: Ticket | None = None) -> None:
        if len(key) > DEDUP_KEY_MAX:
            raise PermanentDeliveryError(self.name, "dedup_key_too_long", f"{len(key)} > {DEDUP_KEY_MAX}")
        body: dict[str, Any] = {"routing_key": self.settings.resolved_token(), "event_action": action,
                                "dedup_key": key}
        if t is not None:
            body["payload"] = {
                "summary": t.title[:SUMMARY_MAX],
                "source": f"{t.site}/{t.asset}",
                "severity": _SEVERITY[t.priority.value],
                "timestamp": format_ts(t.opened_at),
                "component": t.asset,
                "group": t.site,
                "class": t.fault_code,
                "custom_details": t.as_json(),
            }
            body["client"] = "pdm-edge"
            body["client_url"] = t.dashboard_url
            body["links"] = [{"href": t.dashboard_url, "text": "Asset dashboard"}]
        self.request("POST", "/v2/enqueue", json=body)

    def deliver(self, delivery: Delivery) -> str | None:
        """Send the event(s) for this action; return the dedup key now in use."""
        t = delivery.ticket
        key = delivery.ticket_ref or t.dedup_key
        if t.action is TicketAction.OPEN:
            self._event("trigger", key, t)
        elif t.action is TicketAction.UPDATE:
            if not delivery.desk_resolved:
                self._event("trigger", key, t)
        elif t.action in (TicketAction.ACKNOWLEDGE, TicketAction.VERIFY):
            self._event("acknowledge", key)
        elif t.action is TicketAction.REOPEN:
            new_key = reopen_key(t.dedup_key, t.event_seq)
            if key != new_key:
                self._event("resolve", key)
            self._event("trigger", new_key, t)
            key = new_key
        else:
            self._event("resolve", key)
        return key

    def post_note(self, alert_id: str, ticket_ref: str, text: str, marker: str, *, maybe_landed: bool,
                  now: float) -> None:
        """Events v2 cannot annotate an incident; PagerDuty's own escalation policy covers the SLA."""

    def probe(self) -> str:
        """Events v2 has no read-only call; the routing key is checked by the first event."""
        return f"{self.settings.base_url}: Events API v2 has no read-only call (the first event tests the key)"
