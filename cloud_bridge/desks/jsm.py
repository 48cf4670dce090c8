"""Jira Service Management: requests raised on behalf of the customer; transitions discovered by name.

Lifecycle (docs/bridge.md): open → ``POST /rest/servicedeskapi/request`` with ``raiseOnBehalfOf`` =
the customer's accountId (found by e-mail, else created as a customer of the service desk) and the
customer message as the request's description (what the customer's portal shows), then the
technician's brief as an *internal* comment and the plot as an internal attachment; update and
snoozed → internal comment; serviced → the transition named in ``verify_transitions`` (e.g.
*Pending*) unless the request is already done; **fix not confirmed** → the transition named in
``reopen_transitions`` (*Reopen* from a done status, *Back to in progress* from pending), a public
apology and the internal brief; resolve → ``resolve_transitions`` unless done, a public message for
the kind of resolution and an internal note. Transitions are looked up on every use with
``GET /rest/api/3/issue/{key}/transitions`` and chosen by name, never by a configured id.

Before the first create the request type's fields are read
(``GET …/servicedesk/{id}/requesttype/{id}/field``): a required field the bridge cannot fill is a
permanent error naming it (map it with ``request_fields``).

Jira's search is eventually consistent: a create whose answer was lost may not be searchable yet.
So the bridge notes durably when it sends a create; when a later attempt's label search finds
nothing although a create was sent, it waits (retryable ``search_lagging``) until
``search_consistency_s`` after that create before it creates again; every comment carries its
event's marker and is posted only if the request lacks it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from cloud_bridge.desks.base import ChangeKind, Delivery, DeskAdapter, DeskChange, PollResult
from cloud_bridge.errors import PermanentDeliveryError, RetryableDeliveryError
from cloud_bridge.ticket import Ticket, TicketAction

__all__ = ["JsmAdapter", "label_for"]

SUMMARY_MAX = 255
_DONE = "done"
BRIDGE_LABEL = "pdm-edge"


def label_for(alert_id: str) -> str:
    """A Jira-safe label (no spaces or colons) unique to the alert.

    >>> label = label_for("hp-0042:2026-01-14T03:10:00Z:refrigerant_leak")
    >>> label[:4], len(label)
    ('pdm-', 24)
    """
    return "pdm-" + hashlib.sha256(alert_id.encode()).hexdigest()[:20]


class JsmAdapter(DeskAdapter):
    """Customer requests in one service desk and request type."""

    accepts_attachments = True

    def __init__(self, name: str, settings: Any) -> None:
        super().__init__(name, settings)
        self._customers: dict[str, str] = {}
        self._fields_checked = False
        self._me: str | None = None

    @property
    def _desk(self) -> str:
        return f"/rest/servicedeskapi/servicedesk/{self.settings.service_desk_id}"

    # -- lookups -----------------------------------------------------------------------------------

    def _find(self, delivery: Delivery) -> str | None:
        t = delivery.ticket
        response = self.request("GET", "/rest/api/3/search/jql",
                                params={"jql": f'labels = "{label_for(t.dedup_key)}"', "fields": "status"})
        issues = self.json_of(response).get("issues", [])
        if issues:
            return str(issues[0]["key"])
        sent = delivery.create_sent_at
        waited = delivery.now - sent if sent is not None else None
        if waited is not None and waited < self.settings.search_consistency_s:
            raise RetryableDeliveryError(
                self.name, "search_lagging", f"an earlier attempt sent a create {waited:.0f} s ago whose answer was "
                f"lost; Jira search may not show it yet", retry_after_s=self.settings.search_consistency_s - waited)
        return None

    def _customer(self, t: Ticket) -> str | None:
        """The customer's accountId by e-mail (created as a customer when unknown), or None."""
        c = t.customer
        if c is None or not c.email:
            return None
        key = c.email.lower()
        if key in self._customers:
            return self._customers[key]
        users = self.json_of(self.request("GET", "/rest/api/3/user/search", params={"query": c.email}))
        if isinstance(users, list) and users:
            account = str(users[0]["accountId"])
        elif self.settings.create_callers:
            made = self.json_of(self.request("POST", "/rest/servicedeskapi/customer",
                                             json={"email": c.email, "displayName": c.name}))
            account = str(made["accountId"])
            self.request("POST", f"{self._desk}/customer", json={"accountIds": [account]})
        else:
            return None
        self._customers[key] = account
        return account

    def _request_fields(self, t: Ticket) -> dict[str, Any]:
        values: dict[str, Any] = {
            "summary": t.title[:SUMMARY_MAX],
            "description": t.public_message or f"{t.title}\n(Case reference {t.reference}/{t.event_seq}.)",
            "labels": [label_for(t.dedup_key), BRIDGE_LABEL, f"priority-{t.priority.value}"],
        }
        facts = {"site": t.site, "asset": t.asset, "priority": t.priority.value, "reference": t.reference,
                 "serial": t.record.serial if t.record else "", "fault": t.fault_name}
        for field_id, template in self.settings.request_fields.items():
            values[field_id] = template.format(**facts)
        if not self._fields_checked:
            meta = self.json_of(self.request(
                "GET", f"{self._desk}/requesttype/{self.settings.request_type_id}/field"))
            required = {str(f["fieldId"]): str(f.get("name", f["fieldId"])) for f in meta.get("requestTypeFields", [])
                        if f.get("required")}
            missing = sorted(f"{fid} ({name})" for fid, name in required.items() if fid not in values)
            if missing:
                raise PermanentDeliveryError(
                    self.name, "required_fields", f"request type {self.settings.request_type_id} requires "
                    f"{', '.join(missing)}; map them in [desks.{self.name}.request_fields]")
            self._fields_checked = True
        return values

    def _comments(self, key: str) -> list[str]:
        data = self.json_of(self.request("GET", f"/rest/servicedeskapi/request/{key}/comment",
                                         params={"public": "true", "internal": "true", "limit": "100"}))
        return [str(c.get("body", "")) for c in data.get("values", [])]

    def _status_category(self, key: str) -> str:
        data = self.json_of(self.request("GET", f"/rest/servicedeskapi/request/{key}"))
        return str(data.get("currentStatus", {}).get("statusCategory", "")).lower()

    # -- writes ------------------------------------------------------------------------------------

    def _comment(self, key: str, body: str, marker: str, *, public: bool, maybe_landed: bool) -> None:
        if maybe_landed and any(marker in c for c in self._comments(key)):
            return
        self.request("POST", f"/rest/servicedeskapi/request/{key}/comment", json={"body": body, "public": public})

    def _transition(self, key: str, names: list[str], what: str) -> None:
        """Take the first transition named in ``names`` that the issue offers now.

        Raises:
            PermanentDeliveryError: none of the names is available (listing the ones that are).
        """
        data = self.json_of(self.request("GET", f"/rest/api/3/issue/{key}/transitions"))
        offered = {str(tr.get("name", "")).lower(): str(tr["id"]) for tr in data.get("transitions", [])}
        for name in names:
            if name.lower() in offered:
                self.request("POST", f"/rest/api/3/issue/{key}/transitions",
                             json={"transition": {"id": offered[name.lower()]}})
                return
        raise PermanentDeliveryError(
            self.name, "no_transition", f"{key}: none of {names} ({what}) is available; the workflow offers "
            f"{sorted(offered)}: add the right name to [desks.{self.name}] {what}")

    def _create(self, t: Ticket, mark_sent: Callable[[], None]) -> str:
        body: dict[str, Any] = {
            "serviceDeskId": self.settings.service_desk_id,
            "requestTypeId": self.settings.request_type_id,
            "requestFieldValues": self._request_fields(t),
        }
        account = self._customer(t)
        if account is not None:
            body["raiseOnBehalfOf"] = account
        mark_sent()
        data = self.json_of(self.request("POST", "/rest/servicedeskapi/request", json=body))
        if "issueKey" not in data:
            raise PermanentDeliveryError(self.name, "bad_response", "create answered without issueKey")
        return str(data["issueKey"])

    def _attach_plot(self, key: str, delivery: Delivery, *, maybe_landed: bool) -> None:
        if delivery.plot is None or not self.settings.attach_plots:
            return
        t = delivery.ticket
        marker = f"[pdm-plot {t.reference}/{t.event_seq}]"
        if maybe_landed and any(marker in c for c in self._comments(key)):
            return
        png = delivery.plot()
        if png is None:
            return
        temp = self.json_of(self.request(
            "POST", f"{self._desk}/attachTemporaryFile", files={"file": (f"{t.asset}-sensors.png", png, "image/png")},
            headers={"X-Atlassian-Token": "no-check"}))
        ids = [str(a["temporaryAttachmentId"]) for a in temp.get("temporaryAttachments", [])]
        if not ids:
            raise PermanentDeliveryError(self.name, "bad_response", "attachTemporaryFile answered without an id")
        self.request("POST", f"/rest/servicedeskapi/request/{key}/attachment", json={
            "temporaryAttachmentIds": ids, "public": False,
            "additionalComment": {"body": f"Sensors around the alert, failure threshold drawn. {marker}"}})

    def deliver(self, delivery: Delivery) -> str | None:
        """Create, comment on, transition the request; return its issue key."""
        t = delivery.ticket
        key = delivery.ticket_ref or (self._find(delivery) if delivery.maybe_landed else None)
        created = key is None
        if key is None:
            key = self._create(t, delivery.mark_create_sent)
            delivery.record_ref(key)
        landed = delivery.maybe_landed and not created
        if t.action is TicketAction.OPEN or created:
            self._comment(key, t.brief if t.action is TicketAction.OPEN else t.internal_note, t.internal_marker,
                          public=False, maybe_landed=landed)
            self._attach_plot(key, delivery, maybe_landed=landed)
            if t.action is TicketAction.OPEN:
                return key
        if t.action in (TicketAction.UPDATE, TicketAction.ACKNOWLEDGE):
            self._comment(key, t.internal_note, t.internal_marker, public=False, maybe_landed=landed)
            return key
        category = self._status_category(key)
        if t.action is TicketAction.VERIFY:
            if category != _DONE:
                self._transition(key, self.settings.verify_transitions, "verify_transitions")
            self._comment(key, t.internal_note, t.internal_marker, public=False, maybe_landed=landed)
        elif t.action is TicketAction.REOPEN:
            if category != "new":  # "new" (waiting for support) is already an agent queue
                self._transition(key, self.settings.reopen_transitions, "reopen_transitions")
            if t.public_message is not None:
                self._comment(key, t.public_message, t.public_marker, public=True, maybe_landed=landed)
            self._comment(key, t.internal_note, t.internal_marker, public=False, maybe_landed=landed)
            self._attach_plot(key, delivery, maybe_landed=landed)
        else:
            if category != _DONE:
                self._transition(key, self.settings.resolve_transitions, "resolve_transitions")
            if t.public_message is not None:
                self._comment(key, t.public_message, t.public_marker, public=True, maybe_landed=landed)
            self._comment(key, t.internal_note, t.internal_marker, public=False, maybe_landed=landed)
        return key

    def post_note(self, alert_id: str, ticket_ref: str, text: str, marker: str, *, maybe_landed: bool,
                  now: float) -> None:
        """An internal comment (skipped when ``maybe_landed`` and the marker is already there)."""
        self._comment(ticket_ref, f"{text}\n{marker}", marker, public=False, maybe_landed=maybe_landed)

    def _my_account(self) -> str:
        if self._me is None:
            self._me = str(self.json_of(self.request("GET", "/rest/api/3/myself")).get("accountId", ""))
        return self._me

    def probe(self) -> str:
        """``GET /rest/api/3/myself`` and the request type's fields: who we are and whether we can create."""
        me = self.json_of(self.request("GET", "/rest/api/3/myself"))
        fields = self.json_of(self.request("GET", f"{self._desk}/requesttype/{self.settings.request_type_id}/field"))
        required = [str(f["fieldId"]) for f in fields.get("requestTypeFields", []) if f.get("required")]
        return (f"logged in as {me.get('displayName')} ({me.get('accountId')}); request type "
                f"{self.settings.request_type_id} requires {required}")

    def poll_changes(self, cursor: str | None, *, now: float) -> PollResult:
        """Issues labelled ``pdm-edge`` updated since the cursor, with their changelog and comments by people."""
        since_ms = int(float(cursor) * 1000) if cursor else int(now * 1000)
        me = self._my_account()
        data = self.json_of(self.request("GET", "/rest/api/3/search/jql", params={
            "jql": f'labels = "{BRIDGE_LABEL}" AND updated >= {since_ms}', "fields": "status,assignee,updated",
            "expand": "changelog"}))
        changes: list[DeskChange] = []
        for issue in data.get("issues", []):
            key = str(issue["key"])
            for history in issue.get("changelog", {}).get("histories", []):
                actor = str(history.get("author", {}).get("accountId", ""))
                if actor == me or int(history.get("createdMillis", 0)) < since_ms:
                    continue
                for item in history.get("items", []):
                    kind = _history_kind(item)
                    if kind is not None:
                        changes.append(DeskChange(key, kind, actor, f"{key}:{history.get('id')}:{item.get('field')}",
                                                  status=str(item.get("toString")),
                                                  assignee=str(item.get("to")) if item.get("field") == "assignee"
                                                  else None))
            for comment in self.json_of(self.request("GET", f"/rest/servicedeskapi/request/{key}/comment",
                                                     params={"limit": "100"})).get("values", []):
                author = str(comment.get("author", {}).get("accountId", ""))
                created = int(comment.get("created", {}).get("epochMillis", 0))
                if author != me and created >= since_ms:
                    changes.append(DeskChange(key, ChangeKind.COMMENTED, author, f"{key}:c{comment.get('id')}",
                                              text=str(comment.get("body", ""))))
        return PollResult(changes, str(now))


def _history_kind(item: dict[str, Any]) -> str | None:
    field = item.get("field")
    if field == "assignee" and item.get("to"):
        return ChangeKind.REASSIGNED
    if field == "status":
        category = str(item.get("toCategory", "")).lower()
        if category == _DONE:
            return ChangeKind.RESOLVED
        if category == "indeterminate":
            return ChangeKind.ACKNOWLEDGED
    return None
