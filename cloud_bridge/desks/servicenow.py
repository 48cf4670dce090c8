"""ServiceNow Table API: look up by ``correlation_id`` = alert_id, then create (POST) or patch.

The lookup before every create is what makes a retried create safe after a timeout whose request
did reach the instance. Priority is set through urgency and impact (ServiceNow derives priority from
the pair with its default matrix: 1/1 → P1, 1/2 → P2, 2/2 → P3, 2/3 → P4).
"""

from __future__ import annotations

from typing import Any

from cloud_bridge.desks.base import Delivery, DeskAdapter
from cloud_bridge.errors import PermanentDeliveryError
from cloud_bridge.ticket import Ticket, TicketAction

__all__ = ["ServiceNowAdapter"]

_URGENCY_IMPACT = {"P1": ("1", "1"), "P2": ("1", "2"), "P3": ("2", "2"), "P4": ("2", "3")}
STATE_IN_PROGRESS = "2"
STATE_RESOLVED = "6"
SHORT_DESCRIPTION_MAX = 160
"""The incident table's default ``short_description`` length."""


class ServiceNowAdapter(DeskAdapter):
    """Incidents in one table (``incident`` by default)."""

    @property
    def _table(self) -> str:
        return f"/api/now/table/{self.settings.table}"

    def _find(self, ticket: Ticket) -> str | None:
        response = self.request(
            "GET", self._table,
            params={"sysparm_query": f"correlation_id={ticket.dedup_key}", "sysparm_limit": "1",
                    "sysparm_fields": "sys_id,state"},
        )
        rows = self.json_of(response).get("result", [])
        return str(rows[0]["sys_id"]) if rows else None

    def deliver(self, delivery: Delivery) -> str | None:
        """Create or patch the incident; return its ``sys_id``."""
        t = delivery.ticket
        sys_id = delivery.ticket_ref or self._find(t)
        urgency, impact = _URGENCY_IMPACT[t.priority.value]
        if sys_id is None:
            if t.action is TicketAction.RESOLVE:
                # Nothing to resolve was ever created: open and close it, so the record exists.
                sys_id = self._create(t, urgency, impact)
            else:
                return self._create(t, urgency, impact)
        fields: dict[str, Any] = {"work_notes": t.description(), "urgency": urgency, "impact": impact}
        if t.action is TicketAction.RESOLVE:
            fields.update(state=STATE_RESOLVED, close_code="Solved (Permanently)",
                          close_notes=t.note or "Readings back to normal")
        elif t.action in (TicketAction.REOPEN, TicketAction.ACKNOWLEDGE):
            fields.update(state=STATE_IN_PROGRESS)
        self.request("PATCH", f"{self._table}/{sys_id}", json=fields)
        return sys_id

    def _create(self, t: Ticket, urgency: str, impact: str) -> str:
        body = {
            "short_description": t.title[:SHORT_DESCRIPTION_MAX],
            "description": t.description(),
            "correlation_id": t.dedup_key,
            "correlation_display": "pdm-edge",
            "urgency": urgency,
            "impact": impact,
            "category": "hardware",
            "cmdb_ci": t.asset,
            "location": t.record.address if t.record else t.site,
            "caller_id": t.record.contact.name if t.record else "",
        }
        response = self.request("POST", self._table, json=body)
        result = self.json_of(response).get("result", {})
        if "sys_id" not in result:
            raise PermanentDeliveryError(self.name, "bad_response", "create answered without sys_id")
        return str(result["sys_id"])
