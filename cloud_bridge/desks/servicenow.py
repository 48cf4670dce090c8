"""ServiceNow Table API: incidents found by ``correlation_id`` = alert_id, references sent as sys_ids.

Lifecycle (docs/bridge.md): open → one insert with ``caller_id`` (the customer's ``sys_user``, found by
e-mail or phone, else created), ``cmdb_ci`` (the configuration item by serial number, when the CMDB
has it), the customer message in ``comments`` (the caller sees it) and the technician's brief in
``work_notes`` (internal); ``description`` holds only the neutral summary, since the caller's portal
shows it. Then the plot as an attachment. Update → work note (and urgency/impact). Snoozed → work note,
*New* → *In Progress*. Serviced → *Resolved* (6) "verifying the fix" unless a person resolved it
already. **Fix not confirmed** → *In Progress* (2) again, in the assignment group's queue, with the
apology in ``comments`` and the brief in ``work_notes``; a *Closed* incident cannot be reopened, so a
new one with ``parent_incident`` is opened. Resolve → *Resolved* with ``close_code``/``close_notes`` and
the customer message for the kind of resolution (only the messages when already resolved).

Reference fields are sys_ids looked up once and cached; choice fields use the default instance's
values. The lookup before every create, and the journal lookup before every note when an earlier
attempt may have landed (``sys_journal_field``, marker in the text), make retries safe. ServiceNow
derives priority from urgency × impact (default matrix: 1/1 → P1, 1/2 → P2, 2/2 → P3, 2/3 → P4).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cloud_bridge.desks.base import ChangeKind, Delivery, DeskAdapter, DeskChange, PollResult
from cloud_bridge.errors import PermanentDeliveryError
from cloud_bridge.ticket import Ticket, TicketAction

__all__ = ["ServiceNowAdapter"]

_URGENCY_IMPACT = {"P1": ("1", "1"), "P2": ("1", "2"), "P3": ("2", "2"), "P4": ("2", "3")}
STATE_NEW = "1"
STATE_IN_PROGRESS = "2"
STATE_RESOLVED = "6"
STATE_CLOSED = "7"
_DONE = (STATE_RESOLVED, STATE_CLOSED)
SHORT_DESCRIPTION_MAX = 160
"""The incident table's default ``short_description`` length."""
CORRELATION_DISPLAY = "pdm-edge"
MAX_CACHED_REFERENCES = 10_000


def _stamp(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%S")


class ServiceNowAdapter(DeskAdapter):
    """Incidents in one table (``incident`` by default)."""

    accepts_attachments = True

    def __init__(self, name: str, settings: Any) -> None:
        super().__init__(name, settings)
        self._refs: dict[tuple[str, str], str | None] = {}

    @property
    def _table(self) -> str:
        return f"/api/now/table/{self.settings.table}"

    def _query(self, table: str, query: str, fields: str, limit: int = 1) -> list[dict[str, Any]]:
        response = self.request("GET", f"/api/now/table/{table}", params={
            "sysparm_query": query, "sysparm_fields": fields, "sysparm_limit": str(limit)})
        rows = self.json_of(response).get("result", [])
        return [r for r in rows if isinstance(r, dict)]

    def _reference(self, table: str, query: str) -> str | None:
        """The sys_id of the first record matching ``query`` (cached, also when none matched)."""
        key = (table, query)
        if key not in self._refs:
            rows = self._query(table, query, "sys_id")
            if len(self._refs) >= MAX_CACHED_REFERENCES:
                self._refs.clear()
            self._refs[key] = str(rows[0]["sys_id"]) if rows else None
        return self._refs[key]

    def _caller(self, t: Ticket) -> str | None:
        c = t.customer
        if c is None or not (c.email or c.phone):
            return None
        query = f"email={c.email}" if c.email else f"phone={c.phone}"
        sys_id = self._reference("sys_user", query)
        if sys_id is None and self.settings.create_callers:
            user = {"name": c.name, "email": c.email or "", "phone": c.phone or ""}
            made = self.json_of(self.request("POST", "/api/now/table/sys_user", json=user)).get("result", {})
            sys_id = str(made["sys_id"])
            self._refs[("sys_user", query)] = sys_id
        return sys_id

    def _find(self, t: Ticket) -> dict[str, Any] | None:
        rows = self._query(self.settings.table, f"correlation_id={t.dedup_key}^ORDERBYDESCsys_created_on",
                           "sys_id,state")
        return rows[0] if rows else None

    def _state(self, sys_id: str) -> str:
        response = self.request("GET", f"{self._table}/{sys_id}", params={"sysparm_fields": "state"})
        return str(self.json_of(response).get("result", {}).get("state", ""))

    def _has_note(self, sys_id: str, marker: str) -> bool:
        rows = self._query("sys_journal_field", f"element_id={sys_id}^valueLIKE{marker}", "sys_id")
        return bool(rows)

    def _create(self, t: Ticket, *, parent: str | None = None) -> str:
        urgency, impact = _URGENCY_IMPACT[t.priority.value]
        body: dict[str, Any] = {
            "short_description": t.title[:SHORT_DESCRIPTION_MAX],
            "description": f"{t.title}\nCase reference {t.reference}.",
            "correlation_id": t.dedup_key,
            "correlation_display": CORRELATION_DISPLAY,
            "urgency": urgency,
            "impact": impact,
            "category": "hardware",
            "work_notes": t.brief if parent is None else t.internal_note,
        }
        if t.public_message is not None:
            body["comments"] = t.public_message
        caller = self._caller(t)
        if caller is not None:
            body["caller_id"] = caller
        if t.record is not None:
            ci = self._reference("cmdb_ci", f"serial_number={t.record.serial}")
            if ci is not None:
                body["cmdb_ci"] = ci
        if parent is not None:
            body["parent_incident"] = parent
        result = self.json_of(self.request("POST", self._table, json=body)).get("result", {})
        if "sys_id" not in result:
            raise PermanentDeliveryError(self.name, "bad_response", "create answered without sys_id")
        return str(result["sys_id"])

    def _patch(self, sys_id: str, fields: dict[str, Any], marker: str, *, maybe_landed: bool) -> None:
        if maybe_landed and self._has_note(sys_id, marker):
            return
        self.request("PATCH", f"{self._table}/{sys_id}", json=fields)

    def _attach_plot(self, sys_id: str, delivery: Delivery, *, maybe_landed: bool) -> None:
        if delivery.plot is None or not self.settings.attach_plots:
            return
        t = delivery.ticket
        name = f"{t.asset}-sensors-{t.event_seq}.png"
        if maybe_landed:
            found = self.json_of(self.request("GET", "/api/now/attachment", params={
                "sysparm_query": f"table_sys_id={sys_id}^file_name={name}", "sysparm_limit": "1"}))
            if found.get("result"):
                return
        png = delivery.plot()
        if png is None:
            return
        self.request("POST", "/api/now/attachment/file", content=png, headers={"Content-Type": "image/png"},
                     params={"table_name": self.settings.table, "table_sys_id": sys_id, "file_name": name})

    def deliver(self, delivery: Delivery) -> str | None:
        """Create or patch the incident; return its ``sys_id``."""
        t = delivery.ticket
        sys_id = delivery.ticket_ref
        if sys_id is None and delivery.maybe_landed:
            found = self._find(t)
            sys_id = None if found is None else str(found["sys_id"])
        landed = delivery.maybe_landed and sys_id is not None
        if sys_id is None:
            sys_id = self._create(t)
            delivery.record_ref(sys_id)
            self._attach_plot(sys_id, delivery, maybe_landed=False)
            if t.action in (TicketAction.OPEN, TicketAction.UPDATE, TicketAction.ACKNOWLEDGE):
                return sys_id
        elif t.action is TicketAction.OPEN:
            self._attach_plot(sys_id, delivery, maybe_landed=landed)
            return sys_id
        urgency, impact = _URGENCY_IMPACT[t.priority.value]
        fields: dict[str, Any] = {"work_notes": t.internal_note}
        if t.action is TicketAction.UPDATE:
            fields.update(urgency=urgency, impact=impact)
            self._patch(sys_id, fields, t.internal_marker, maybe_landed=landed)
            return sys_id
        state = self._state(sys_id)
        if t.action is TicketAction.ACKNOWLEDGE:
            if state == STATE_NEW:
                fields["state"] = STATE_IN_PROGRESS
        elif t.action is TicketAction.VERIFY:
            if state not in _DONE:
                fields.update(state=STATE_RESOLVED, close_code=self.settings.close_code_fixed,
                              close_notes=f"Serviced; the monitoring verifies the fix. {t.note or ''}".strip())
        elif t.action is TicketAction.REOPEN:
            if state == STATE_CLOSED:
                new_id = self._create(t, parent=sys_id)
                delivery.record_ref(new_id)
                self._attach_plot(new_id, delivery, maybe_landed=False)
                return new_id
            fields.update(state=STATE_IN_PROGRESS, urgency=urgency, impact=impact)
            if t.public_message is not None:
                fields["comments"] = t.public_message
            self._attach_plot(sys_id, delivery, maybe_landed=landed)
        else:
            if state == STATE_CLOSED:
                return sys_id  # closed incidents are read-only; a person closed it already
            if state != STATE_RESOLVED:
                code = self.settings.close_code_fixed if t.resolution == "fixed" else self.settings.close_code_other
                fields.update(state=STATE_RESOLVED, close_code=code, close_notes=t.internal_note.splitlines()[0])
            if t.public_message is not None:
                fields["comments"] = t.public_message
        self._patch(sys_id, fields, t.internal_marker, maybe_landed=landed)
        return sys_id

    def post_note(self, alert_id: str, ticket_ref: str, text: str, marker: str, *, maybe_landed: bool,
                  now: float) -> None:
        """A work note (skipped when ``maybe_landed`` and the journal already holds the marker)."""
        self._patch(ticket_ref, {"work_notes": f"{text}\n{marker}"}, marker, maybe_landed=maybe_landed)

    def probe(self) -> str:
        """The bridge's own ``sys_user`` record: the credentials work and the Table API answers."""
        user = self.settings.username or ""
        rows = self._query("sys_user", f"user_name={user}", "sys_id,name")
        found = f"user {rows[0].get('name')} ({rows[0].get('sys_id')})" if rows else f"no sys_user {user!r} readable"
        return f"{self.settings.base_url}: {found}"

    def poll_changes(self, cursor: str | None, *, now: float) -> PollResult:
        """Incidents of the bridge updated since the cursor (``sys_updated_on``), and people's journal entries."""
        since = _stamp(float(cursor) if cursor else now)
        me = self.settings.username or ""
        rows = self._query(self.settings.table, f"correlation_display={CORRELATION_DISPLAY}^sys_updated_on>={since}"
                           f"^sys_updated_by!={me}^ORDERBYsys_updated_on",
                           "sys_id,state,assigned_to,sys_updated_on,sys_updated_by,sys_mod_count", limit=1000)
        changes: list[DeskChange] = []
        for r in rows:
            sys_id, actor = str(r["sys_id"]), str(r.get("sys_updated_by", ""))
            stamp = f"{sys_id}:{r.get('sys_mod_count', r.get('sys_updated_on'))}"
            state = str(r.get("state", ""))
            if state in _DONE:
                changes.append(DeskChange(sys_id, ChangeKind.RESOLVED, actor, f"{stamp}:state", status=state))
            elif state == STATE_IN_PROGRESS:
                changes.append(DeskChange(sys_id, ChangeKind.ACKNOWLEDGED, actor, f"{stamp}:state", status=state,
                                          assignee=str(r.get("assigned_to") or "") or None))
            if r.get("assigned_to"):
                changes.append(DeskChange(sys_id, ChangeKind.REASSIGNED, actor, f"{stamp}:assignee",
                                          assignee=str(r["assigned_to"])))
            for note in self._query("sys_journal_field", f"element_id={sys_id}^sys_created_on>={since}"
                                    f"^sys_created_by!={me}", "sys_id,value,sys_created_by", limit=100):
                changes.append(DeskChange(sys_id, ChangeKind.COMMENTED, str(note.get("sys_created_by", "")),
                                          f"{sys_id}:j{note.get('sys_id')}", text=str(note.get("value", ""))))
        return PollResult(changes, str(now))
