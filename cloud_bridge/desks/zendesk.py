"""Zendesk Support: create with ``Idempotency-Key`` and ``external_id`` = alert_id, then update by id.

Zendesk remembers idempotency keys for 2 hours only, so a retry (which may come later than that)
first looks the ticket up by ``external_id``. The PNG plot is uploaded and attached in a second,
internal comment after the create, because the upload token differs per upload and would change the
body that the idempotency key protects.
"""

from __future__ import annotations

from typing import Any

from cloud_bridge.desks.base import Delivery, DeskAdapter
from cloud_bridge.errors import PermanentDeliveryError
from cloud_bridge.ticket import Ticket, TicketAction

__all__ = ["ZendeskAdapter"]

_PRIORITY = {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"}
_STATUS = {TicketAction.RESOLVE: "solved", TicketAction.REOPEN: "open", TicketAction.ACKNOWLEDGE: "open"}


class ZendeskAdapter(DeskAdapter):
    """Tickets in one Zendesk account; auth is username ``{email}/token`` + API token, or a bearer token."""

    accepts_attachments = True

    def _find(self, ticket: Ticket) -> str | None:
        data = self.json_of(self.request("GET", "/api/v2/tickets.json", params={"external_id": ticket.dedup_key}))
        tickets = data.get("tickets", [])
        return str(tickets[0]["id"]) if tickets else None

    def deliver(self, delivery: Delivery) -> str | None:
        """Create or update the ticket; return its id."""
        t = delivery.ticket
        ticket_id = delivery.ticket_ref
        if ticket_id is None and not delivery.first_attempt:
            ticket_id = self._find(t)
        if ticket_id is None:
            ticket_id = self._create(t)
            self._attach_plot(ticket_id, delivery)
            if t.action is not TicketAction.RESOLVE:
                return ticket_id
        update: dict[str, Any] = {"comment": {"body": t.description(), "public": False},
                                  "priority": _PRIORITY[t.priority.value]}
        if t.action in _STATUS:
            update["status"] = _STATUS[t.action]
        if t.action in (TicketAction.REOPEN, TicketAction.RESOLVE):
            # the customer hears about the outcome in their own language
            update["comment"] = {"body": t.customer_message + "\n\n---\n" + t.description(), "public": True}
        self.request("PUT", f"/api/v2/tickets/{ticket_id}", json={"ticket": update})
        if t.action is TicketAction.REOPEN:
            self._attach_plot(ticket_id, delivery)
        return ticket_id

    def _create(self, t: Ticket) -> str:
        body = {"ticket": {
            "subject": t.title,
            "comment": {"body": t.description(), "public": False},
            "priority": _PRIORITY[t.priority.value],
            "external_id": t.dedup_key,
            "tags": ["pdm-edge", t.fault_code, t.priority.value.lower()],
        }}
        response = self.request("POST", "/api/v2/tickets", json=body, headers={"Idempotency-Key": t.dedup_key})
        ticket = self.json_of(response).get("ticket", {})
        if "id" not in ticket:
            raise PermanentDeliveryError(self.name, "bad_response", "create answered without ticket.id")
        return str(ticket["id"])

    def _attach_plot(self, ticket_id: str, delivery: Delivery) -> None:
        if delivery.plot is None or not self.settings.attach_plots:
            return
        png = delivery.plot()
        if png is None:
            return
        upload = self.json_of(self.request(
            "POST", "/api/v2/uploads.json", params={"filename": f"{delivery.ticket.asset}-sensors.png"},
            content=png, headers={"Content-Type": "image/png"},
        ))
        token = upload.get("upload", {}).get("token")
        if token is None:
            raise PermanentDeliveryError(self.name, "bad_response", "upload answered without token")
        self.request("PUT", f"/api/v2/tickets/{ticket_id}", json={"ticket": {"comment": {
            "body": "Contributing sensors around the alert", "public": False, "uploads": [token]}}})

