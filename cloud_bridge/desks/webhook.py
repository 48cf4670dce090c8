"""Generic signed webhook: one JSON POST per event, HMAC-signed, with an ``Idempotency-Key``.

Headers (DESIGN.md §4): ``X-PDM-Timestamp`` (epoch seconds) and ``X-PDM-Signature: sha256=<hex
HMAC-SHA256(secret, raw body)>``. The idempotency key is ``{alert_id}#{event_seq}``: a retry of the
same event is recognised, a later event of the same alert is not. The body is a pure function of the
event (see ``cloud_bridge.delivery``), so a retry sends the same bytes the receiver compares.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from cloud_bridge.desks.base import Delivery, DeskAdapter
from cloud_bridge.ticket import TicketAction

__all__ = ["WebhookAdapter", "sign"]

_ACTION = {
    TicketAction.OPEN: "opened",
    TicketAction.UPDATE: "updated",
    TicketAction.ACKNOWLEDGE: "updated",
    TicketAction.REOPEN: "updated",
    TicketAction.RESOLVE: "resolved",
}


def sign(secret: str, body: bytes) -> str:
    """The ``X-PDM-Signature`` value for ``body``.

    >>> len(sign("secret", b"{}")), sign("secret", b"{}")[:7]
    (71, 'sha256=')
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookAdapter(DeskAdapter):
    """POSTs the full ticket as JSON to one URL."""

    token_is_bearer = True  # an optional token is sent as a bearer header besides the HMAC signature

    def deliver(self, delivery: Delivery) -> str | None:
        """Send the event; an update of an alert the receiver never saw is sent as ``opened``."""
        ticket = delivery.ticket
        action = _ACTION[ticket.action]
        if action == "updated" and delivery.ticket_ref is None:
            action = "opened"
        body = json.dumps({**ticket.as_json(), "action": action, "ticket_action": ticket.action.value},
                          separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{ticket.dedup_key}#{ticket.event_seq}",
            "X-PDM-Timestamp": str(int(time.time())),
        }
        secret = self.settings.resolved_hmac_secret()
        if secret is not None:
            headers["X-PDM-Signature"] = sign(secret, body)
        response = self.request("POST", self.settings.path, content=body, headers=headers)
        data = self.json_of(response) if response.content else {}
        ref = data.get("id") if isinstance(data, dict) else None
        return str(ref) if ref is not None else (delivery.ticket_ref or ticket.dedup_key)
