"""Zendesk Support: the customer is the ticket's requester; internal notes and public replies kept apart.

Lifecycle (docs/bridge.md): open → create (``external_id`` = alert_id, ``requester_id`` = the
customer found by e-mail or phone, else created; the first comment, the technician's brief, is
*private*), the plot as a private comment, then the customer message as a *public* reply; update and
snoozed → private note (snoozed also moves a *new* ticket to *open*); serviced → *on-hold* (awaiting
the agent's verification) with a private note, unless a person already solved it; **fix not
confirmed** → back to *open* (a queue a human works) with a public apology and the new promise, then
the full brief as a private note; a *closed* ticket refuses updates (422), so a follow-up ticket is
created instead; resolve → *solved* with the public message for a confirmed fix, a self-recovery or a
baseline reset (only the message when a person already solved it).

Idempotency without time-limited keys: the create still sends ``Idempotency-Key`` (Zendesk keeps it
2 h), but whenever an earlier attempt may have landed the ticket is first looked up by ``external_id``
(a database lookup, not the eventually consistent search), and every comment carries its event's
marker and is posted only if the ticket's comments do not hold it yet.
"""

from __future__ import annotations

from typing import Any

from cloud_bridge.desks.base import ChangeKind, Delivery, DeskAdapter, DeskChange, PollResult
from cloud_bridge.errors import PermanentDeliveryError
from cloud_bridge.ticket import Ticket, TicketAction

__all__ = ["ZendeskAdapter"]

_PRIORITY = {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"}
_SOLVED = ("solved", "closed")
MAX_CACHED_USERS = 10_000
"""Requester ids remembered by e-mail/phone; beyond that the cache starts over (one lookup each)."""


class ZendeskAdapter(DeskAdapter):
    """Tickets in one Zendesk account; auth is username ``{email}/token`` + API token, or a bearer token."""

    accepts_attachments = True

    def __init__(self, name: str, settings: Any) -> None:
        super().__init__(name, settings)
        self._users: dict[str, int] = {}
        self._me: int | None = None

    # -- lookups -----------------------------------------------------------------------------------

    def _find(self, t: Ticket) -> dict[str, Any] | None:
        data = self.json_of(self.request("GET", "/api/v2/tickets.json", params={"external_id": t.dedup_key}))
        tickets = [x for x in data.get("tickets", []) if isinstance(x, dict)]
        return tickets[-1] if tickets else None

    def _show(self, ticket_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.json_of(self.request("GET", f"/api/v2/tickets/{ticket_id}")).get(
            "ticket", {})
        return found

    def _has_comment(self, ticket_id: str, marker: str) -> bool:
        data = self.json_of(self.request("GET", f"/api/v2/tickets/{ticket_id}/comments.json"))
        return any(marker in str(c.get("body", "")) for c in data.get("comments", []))

    def _requester(self, t: Ticket) -> int | None:
        """The customer's Zendesk user id, found by e-mail, else phone, else created (None without either)."""
        c = t.customer
        if c is None or not (c.email or c.phone):
            return None
        key = (c.email or c.phone or "").lower()
        if key in self._users:
            return self._users[key]
        found = self.json_of(self.request("GET", "/api/v2/users/search.json", params={"query": key}))
        users = found.get("users", [])
        if users:
            user_id = int(users[0]["id"])
        elif self.settings.create_callers:
            user: dict[str, Any] = {"name": c.name, "role": "end-user", "locale": "nb" if c.language == "no" else "en"}
            if c.email:
                user["email"] = c.email
            if c.phone:
                user["phone"] = c.phone
            created = self.json_of(self.request("POST", "/api/v2/users/create_or_update.json", json={"user": user}))
            user_id = int(created["user"]["id"])
        else:
            return None
        if len(self._users) >= MAX_CACHED_USERS:
            self._users.clear()
        self._users[key] = user_id
        return user_id

    # -- writes ------------------------------------------------------------------------------------

    def _put(self, ticket_id: str, fields: dict[str, Any]) -> None:
        self.request("PUT", f"/api/v2/tickets/{ticket_id}", json={"ticket": fields})

    def _comment(self, ticket_id: str, body: str, marker: str, *, public: bool, maybe_landed: bool,
                 extra: dict[str, Any] | None = None) -> None:
        if maybe_landed and self._has_comment(ticket_id, marker):
            return
        self._put(ticket_id, {"comment": {"body": body, "public": public}, **(extra or {})})

    def _create(self, t: Ticket, *, follow_up_of: str | None = None) -> str:
        ticket: dict[str, Any] = {
            "subject": t.title,
            "comment": {"body": t.brief if follow_up_of is None else t.internal_note, "public": False},
            "priority": _PRIORITY[t.priority.value],
            "external_id": t.dedup_key,
            "tags": ["pdm-edge", t.fault_code, t.priority.value.lower()],
        }
        requester = self._requester(t)
        if requester is not None:
            ticket["requester_id"] = requester
        if follow_up_of is not None:
            ticket["via_followup_source_id"] = int(follow_up_of)
        key = t.dedup_key if follow_up_of is None else f"{t.dedup_key}#{t.event_seq}"
        response = self.request("POST", "/api/v2/tickets", json={"ticket": ticket},
                                headers={"Idempotency-Key": key})
        created = self.json_of(response).get("ticket", {})
        if "id" not in created:
            raise PermanentDeliveryError(self.name, "bad_response", "create answered without ticket.id")
        return str(created["id"])

    def _attach_plot(self, ticket_id: str, delivery: Delivery) -> None:
        if delivery.plot is None or not self.settings.attach_plots:
            return
        t = delivery.ticket
        marker = f"[pdm-plot {t.reference}/{t.event_seq}]"
        if delivery.maybe_landed and self._has_comment(ticket_id, marker):
            return
        png = delivery.plot()
        if png is None:
            return
        upload = self.json_of(self.request(
            "POST", "/api/v2/uploads.json", params={"filename": f"{t.asset}-sensors.png"},
            content=png, headers={"Content-Type": "image/png"},
        ))
        token = upload.get("upload", {}).get("token")
        if token is None:
            raise PermanentDeliveryError(self.name, "bad_response", "upload answered without token")
        self._put(ticket_id, {"comment": {"body": f"Sensors around the alert, failure threshold drawn. {marker}",
                                          "public": False, "uploads": [token]}})

    def deliver(self, delivery: Delivery) -> str | None:
        """Carry out the event's step(s) on the ticket; return its id."""
        t = delivery.ticket
        ticket_id = delivery.ticket_ref
        landed = delivery.maybe_landed
        if ticket_id is None and landed:
            found = self._find(t)
            ticket_id = None if found is None else str(found["id"])
        created = ticket_id is None
        if ticket_id is None:
            ticket_id = self._create(t)
            delivery.record_ref(ticket_id)
        landed_now = landed and not created
        if t.action is TicketAction.OPEN or created:
            self._attach_plot(ticket_id, delivery)
        if t.action is TicketAction.OPEN:
            if t.public_message is not None:
                self._comment(ticket_id, t.public_message, t.public_marker, public=True, maybe_landed=landed_now)
            return ticket_id
        priority = {"priority": _PRIORITY[t.priority.value]}
        if t.action in (TicketAction.UPDATE,):
            self._comment(ticket_id, t.internal_note, t.internal_marker, public=False, maybe_landed=landed_now,
                          extra=priority)
            return ticket_id
        status = str(self._show(ticket_id).get("status", "open"))
        if t.action is TicketAction.ACKNOWLEDGE:
            extra = {**priority, **({"status": "open"} if status == "new" else {})}
            self._comment(ticket_id, t.internal_note, t.internal_marker, public=False, maybe_landed=landed_now,
                          extra=extra)
        elif t.action is TicketAction.VERIFY:
            extra = {} if status in _SOLVED else {"status": "hold"}
            self._comment(ticket_id, t.internal_note, t.internal_marker, public=False, maybe_landed=landed_now,
                          extra=extra)
        elif t.action is TicketAction.REOPEN:
            if status == "closed":
                ticket_id = self._create(t, follow_up_of=ticket_id)
                delivery.record_ref(ticket_id)
                landed_now = False
            self._attach_plot(ticket_id, delivery)
            if t.public_message is not None:
                self._comment(ticket_id, t.public_message, t.public_marker, public=True, maybe_landed=landed_now,
                              extra={"status": "open", **priority})
            else:
                self._put(ticket_id, {"status": "open", **priority})
            self._comment(ticket_id, t.internal_note, t.internal_marker, public=False, maybe_landed=landed_now)
        else:
            if status == "closed":
                return ticket_id  # a person closed it already; a closed ticket takes no more comments
            solve = {} if status in _SOLVED else {"status": "solved"}
            if t.public_message is not None:
                self._comment(ticket_id, t.public_message, t.public_marker, public=True, maybe_landed=landed_now,
                              extra=solve)
                solve = {}
            self._comment(ticket_id, t.internal_note, t.internal_marker, public=False, maybe_landed=landed_now,
                          extra=solve)
        return ticket_id

    def post_note(self, alert_id: str, ticket_ref: str, text: str, marker: str, *, maybe_landed: bool,
                  now: float) -> None:
        """A private comment (skipped when ``maybe_landed`` and the marker is already there)."""
        self._comment(ticket_ref, f"{text}\n{marker}", marker, public=False, maybe_landed=maybe_landed)

    def _my_id(self) -> int:
        if self._me is None:
            me = self.json_of(self.request("GET", "/api/v2/users/me.json")).get("user", {})
            self._me = int(me.get("id", 0))
        return self._me

    def probe(self) -> str:
        """``GET /api/v2/users/me.json``: who the bridge is logged in as."""
        me = self.json_of(self.request("GET", "/api/v2/users/me.json")).get("user", {})
        return f"logged in as {me.get('name')} (id {me.get('id')}, role {me.get('role')})"

    def poll_changes(self, cursor: str | None, *, now: float) -> PollResult:
        """Ticket events since the cursor (incremental ticket-event export), people's changes only."""
        start = int(float(cursor)) if cursor else int(now)
        me = self._my_id()
        data = self.json_of(self.request("GET", "/api/v2/incremental/ticket_events.json",
                                         params={"start_time": str(start), "include": "comment_events"}))
        changes: list[DeskChange] = []
        for event in data.get("ticket_events", []):
            actor = int(event.get("updater_id") or 0)
            if actor == me:
                continue
            ref = str(event.get("ticket_id"))
            found = len(changes)
            for child in event.get("child_events", []):
                change_id = f"{event.get('id')}:{child.get('id')}"
                kind: str | None = None
                status = assignee = text = None
                if child.get("event_type") == "Comment":
                    kind, text = ChangeKind.COMMENTED, str(child.get("body", ""))
                elif child.get("field_name") == "status" and child.get("value") in _SOLVED:
                    kind, status = ChangeKind.RESOLVED, str(child.get("value"))
                elif child.get("field_name") == "status" and child.get("value") in ("open", "pending"):
                    kind, status = ChangeKind.ACKNOWLEDGED, str(child.get("value"))
                elif child.get("field_name") == "assignee_id" and child.get("value"):
                    kind, assignee = ChangeKind.REASSIGNED, str(child.get("value"))
                if kind is not None:
                    changes.append(DeskChange(ticket_ref=ref, kind=kind, actor=f"user-{actor}", change_id=change_id,
                                              status=status, assignee=assignee, text=text))
            changes[found:] = _merge_take(changes[found:])
        end = data.get("end_time")
        return PollResult(changes, str(int(end) + 1) if end is not None else str(start))


def _merge_take(changes: list[DeskChange]) -> list[DeskChange]:
    """One person taking a ticket (status *open* and assignee in one update) is one acknowledgement."""
    kinds = {c.kind for c in changes}
    if {ChangeKind.ACKNOWLEDGED, ChangeKind.REASSIGNED} <= kinds:
        assignee = next(c.assignee for c in changes if c.kind == ChangeKind.REASSIGNED)
        ack = next(c for c in changes if c.kind == ChangeKind.ACKNOWLEDGED)
        merged = DeskChange(ack.ticket_ref, ack.kind, ack.actor, ack.change_id, status=ack.status, assignee=assignee)
        return [merged, *(c for c in changes if c.kind not in (ChangeKind.ACKNOWLEDGED, ChangeKind.REASSIGNED))]
    return changes
