"""Generic signed webhook: one JSON POST per event, signed per Standard Webhooks.

Headers (DESIGN.md §4, standardwebhooks.com): ``webhook-id`` = ``{alert_id}#{event_seq}`` (the same
on every retry of an event, so the receiver dedups by it), ``webhook-timestamp`` (epoch seconds of
this attempt) and ``webhook-signature`` = ``v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``
(:func:`pdm_common.signing.sign`). The signature covers id, timestamp and body, so a captured
request can neither be replayed later (stale timestamp) nor re-sent under a new id. A receiver
answers a repeated id **409** ``{"error": "replayed"}`` without applying it again; to the bridge
that means the event already landed (a retry after a lost answer), so it counts as delivered.

The body is a pure function of the event (see ``cloud_bridge.delivery``): a retry sends the same
bytes. It carries both texts, ``customer_message`` and ``internal_note``; the receiver decides who
sees which. The receiver example that verifies all this is ``simulators/desk/webhook.py`` and
docs/bridge.md ("Webhook signing").
"""

from __future__ import annotations

import json

from cloud_bridge.desks.base import Delivery, DeskAdapter
from cloud_bridge.errors import PermanentDeliveryError
from cloud_bridge.ticket import TicketAction
from pdm_common.signing import sign

__all__ = ["WebhookAdapter"]

_ACTION = {
    TicketAction.OPEN: "opened",
    TicketAction.UPDATE: "updated",
    TicketAction.ACKNOWLEDGE: "updated",
    TicketAction.VERIFY: "updated",
    TicketAction.REOPEN: "updated",
    TicketAction.RESOLVE: "resolved",
}


class WebhookAdapter(DeskAdapter):
    """POSTs the full ticket as JSON to one URL."""

    token_is_bearer = True  # an optional token is sent as a bearer header besides the signature

    def _post(self, message_id: str, body: bytes, now: float) -> dict[str, object] | None:
        """POST one signed message; None when the receiver says the id was already processed."""
        headers = {"Content-Type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(int(now))}
        secret = self.settings.resolved_hmac_secret()
        if secret is not None:
            headers["webhook-signature"] = sign(secret, message_id, int(now), body)
        try:
            response = self.request("POST", self.settings.path, content=body, headers=headers)
        except PermanentDeliveryError as exc:
            if exc.status == 409 and '"replayed"' in exc.detail:
                return None  # our own earlier attempt landed; its answer was lost
            raise
        data = self.json_of(response) if response.content else {}
        return data if isinstance(data, dict) else {}

    def deliver(self, delivery: Delivery) -> str | None:
        """Send the event; an update of an alert the receiver never saw is sent as ``opened``."""
        ticket = delivery.ticket
        action = _ACTION[ticket.action]
        if action == "updated" and delivery.ticket_ref is None:
            action = "opened"
        body = json.dumps({**ticket.as_json(), "action": action, "ticket_action": ticket.action.value},
                          separators=(",", ":"), sort_keys=True).encode()
        data = self._post(f"{ticket.dedup_key}#{ticket.event_seq}", body, delivery.now)
        ref = None if data is None else data.get("id")
        return str(ref) if ref is not None else (delivery.ticket_ref or ticket.dedup_key)

    def post_note(self, alert_id: str, ticket_ref: str, text: str, marker: str, *, maybe_landed: bool,
                  now: float) -> None:
        """An ``updated`` message with ``ticket_action = note`` (the receiver dedups it by its id)."""
        body = json.dumps({"dedup_key": alert_id, "action": "updated", "ticket_action": "note",
                           "title": text.splitlines()[0][:200], "priority": "-", "internal_note": text},
                          separators=(",", ":"), sort_keys=True).encode()
        self._post(f"{alert_id}#{marker}", body, now)

    def probe(self) -> str:
        """A webhook receiver has no read-only call; the first signed event is the test."""
        return f"{self.settings.base_url}{self.settings.path}: no read-only call (the first event tests it)"
