"""Jira Service Management: label = hash of alert_id; search by label, then create or comment/transition.

Requests are created with ``POST /rest/servicedeskapi/request`` carrying the label; a later event
finds the request by JQL ``labels = "<label>"`` (platform search) unless the key is already known.
Updates are comments; resolve and reopen are transitions whose ids are instance-specific (config).
"""

from __future__ import annotations

import hashlib

from cloud_bridge.desks.base import Delivery, DeskAdapter
from cloud_bridge.errors import PermanentDeliveryError
from cloud_bridge.ticket import Ticket, TicketAction

__all__ = ["JsmAdapter", "label_for"]

SUMMARY_MAX = 255
"""Jira's summary field limit."""


def label_for(alert_id: str) -> str:
    """A Jira-safe label (no spaces or colons) unique to the alert.

    >>> label = label_for("hp-0042:2026-01-14T03:10:00Z:refrigerant_leak")
    >>> label[:4], len(label)
    ('pdm-', 24)
    """
    return "pdm-" + hashlib.sha256(alert_id.encode()).hexdigest()[:20]


class JsmAdapter(DeskAdapter):
    """Customer requests in one service desk and request type."""

    def _find(self, ticket: Ticket) -> str | None:
        response = self.request("GET", "/rest/api/3/search/jql",
                                params={"jql": f'labels = "{label_for(ticket.dedup_key)}"'})
        issues = self.json_of(response).get("issues", [])
        return str(issues[0]["key"]) if issues else None

    def deliver(self, delivery: Delivery) -> str | None:
        """Create, comment on, resolve or reopen the request; return its issue key."""
        t = delivery.ticket
        key = delivery.ticket_ref or self._find(t)
        if key is None:
            key = self._create(t)
            if t.action is not TicketAction.RESOLVE:
                return key
        base = f"/rest/servicedeskapi/request/{key}"
        if t.action is TicketAction.RESOLVE:
            self.request("POST", f"{base}/transition",
                         json={"id": self.settings.resolve_transition_id,
                               "additionalComment": {"body": t.description()}})
        elif t.action is TicketAction.REOPEN:
            self.request("POST", f"{base}/transition",
                         json={"id": self.settings.reopen_transition_id,
                               "additionalComment": {"body": t.description()}})
        else:
            self.request("POST", f"{base}/comment", json={"body": t.description(), "public": False})
        return key

    def _create(self, t: Ticket) -> str:
        body = {
            "serviceDeskId": self.settings.service_desk_id,
            "requestTypeId": self.settings.request_type_id,
            "requestFieldValues": {
                "summary": t.title[:SUMMARY_MAX],
                "description": t.description(),
                "labels": [label_for(t.dedup_key), "pdm-edge", f"priority-{t.priority.value}"],
            },
        }
        data = self.json_of(self.request("POST", "/rest/servicedeskapi/request", json=body))
        if "issueKey" not in data:
            raise PermanentDeliveryError(self.name, "bad_response", "create answered without issueKey")
        return str(data["issueKey"])
