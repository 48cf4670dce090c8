"""PagerDuty Events API v2 (``POST /v2/enqueue``): dedup_key = alert_id; trigger / acknowledge / resolve.

PagerDuty deduplicates by ``dedup_key`` itself: a trigger on an open incident is appended to it,
so open, update and reopen are all ``trigger``. Limits from PagerDuty's docs (desk-specs/SOURCES.md):
summary ≤ 1024 characters, dedup_key ≤ 255, routing key 32 characters.
"""

from __future__ import annotations

from typing import Any

from cloud_bridge.desks.base import Delivery, DeskAdapter
from cloud_bridge.errors import PermanentDeliveryError
from cloud_bridge.ticket import TicketAction
from pdm_common.contracts import format_ts

__all__ = ["PagerDutyAdapter"]

_SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}
_VERB = {
    TicketAction.OPEN: "trigger",
    TicketAction.UPDATE: "trigger",
    TicketAction.REOPEN: "trigger",
    TicketAction.ACKNOWLEDGE: "acknowledge",
    TicketAction.RESOLVE: "resolve",
}
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255


class PagerDutyAdapter(DeskAdapter):
    """Sends Events v2; the token is the integration's routing key."""

    token_is_bearer = False  # the routing key travels in the body, not in a header

    def deliver(self, delivery: Delivery) -> str | None:
        """Enqueue the event and return the dedup key."""
        t = delivery.ticket
        if len(t.dedup_key) > DEDUP_KEY_MAX:
            raise PermanentDeliveryError(self.name, "dedup_key_too_long", f"{len(t.dedup_key)} > {DEDUP_KEY_MAX}")
        verb = _VERB[t.action]
        body: dict[str, Any] = {
            "routing_key": self.settings.resolved_token(),
            "event_action": verb,
            "dedup_key": t.dedup_key,
        }
        if verb == "trigger":
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
        response = self.request("POST", "/v2/enqueue", json=body)
        data = self.json_of(response)
        key = data.get("dedup_key") if isinstance(data, dict) else None
        return str(key) if key else t.dedup_key
