"""ServiceNow Table API: ``incident`` plus the tables its references point to, the journal, attachments.

Shapes from ``reference/desk-specs/servicenow-table-api.handwritten.openapi.json`` (written from the Table
API reference): ``{"result": ...}`` envelopes, string field values, ``sysparm_*`` parameters, one record
per insert, ``X-no-response-body``. Incident states (1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed,
8 Canceled) and the resolve data policy (close_code + close_notes mandatory) are those of a default instance.

Stricter than a real instance where that catches a client's mistake a real one would hide:

* **reference fields** (``caller_id``, ``assigned_to`` → ``sys_user``; ``cmdb_ci`` → ``cmdb_ci``;
  ``location`` → ``cmn_location``; ``parent_incident`` → ``incident``) take a sys_id of an existing record;
  anything else is refused (400 ``Invalid reference``) — a real instance stores it and shows an empty,
  broken reference. With ``sysparm_input_display_value=true`` a display value (the record's ``name``) is
  resolved to its sys_id, as the real instance does;
* **choice fields** (``state``, ``urgency``, ``impact``, ``category``, ``close_code``, ``hold_reason``) take
  the default instance's values (display labels with ``sysparm_input_display_value=true``); others are
  refused (400) — a real instance stores the unknown value;
* ``work_notes`` and ``comments`` become ``sys_journal_field`` entries (readable through the Table API),
  created by the authenticated user; a *Closed* incident is read-only (403).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from simulators.desk.auth import DeskCredentials, basic_user
from simulators.desk.errors import RequestRefusedError
from simulators.desk.exchange import SimRequest, SimResponse
from simulators.desk.routing import DeskContext, DeskSpec, HumanAction, guarded, json_object, route
from simulators.desk.store import Desk, Op, Outgoing, Ticket

__all__ = ["CHOICES", "REFERENCES", "SERVICENOW", "person_acts"]

TABLE = "incident"
RECORD_TABLES = ("sys_user", "cmdb_ci", "cmn_location", "sys_journal_field", "sys_attachment")
RESOLVED_STATES = ("6", "7")
"""6 Resolved, 7 Closed (default incident state choices)."""

MAX_LIMIT = 10_000
"""ServiceNow caps an unpaginated Table API read; the instance default for large reads is 10 000 records."""

_JOURNAL = ("work_notes", "comments")
_NUMBER_BASE = 10_000
"""A fresh instance numbers incidents from INC0010001."""

REFERENCES = {"caller_id": "sys_user", "assigned_to": "sys_user", "opened_by": "sys_user", "cmdb_ci": "cmdb_ci",
              "location": "cmn_location", "parent_incident": "incident"}
CHOICES: dict[str, dict[str, str]] = {
    "state": {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"},
    "urgency": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
    "impact": {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"},
    "category": {"inquiry": "Inquiry / Help", "software": "Software", "hardware": "Hardware", "network": "Network",
                 "database": "Database"},
    "hold_reason": {"1": "Awaiting Caller", "3": "Awaiting Problem", "4": "Awaiting Vendor", "5": "Awaiting Change"},
    "close_code": {c: c for c in ("Duplicate", "Known error", "No resolution provided", "Resolved by caller",
                                  "Resolved by change", "Resolved by problem", "Resolved by request",
                                  "Solution provided", "Workaround provided", "User error")},
}
"""Choice values of a default (Utah and later) instance's incident table: value → label."""
_SYS_ID = re.compile(r"^[0-9a-f]{32}$")


def _error(status: int, message: str, detail: str | None = None) -> SimResponse:
    return SimResponse.json(status, {"error": {"message": message, "detail": detail}, "status": "failure"})


def _text(value: object) -> str:
    """A field value as the Table API answers it: always a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _user_of(ctx: DeskContext, request: SimRequest | None) -> str:
    if request is None:
        return "system"
    found = basic_user(request)
    return found[0] if found else ctx.credentials.servicenow_user


def _record_body(request: SimRequest) -> dict[str, Any]:
    body = json_object(request, _error)
    if not body:
        raise RequestRefusedError(_error(400, "Exception while reading request", "the body names no field"))
    for name, value in body.items():
        if isinstance(value, dict | list):
            raise RequestRefusedError(_error(400, "Exception while reading request",
                                       f"field {name!r}: values are strings, numbers or booleans"))
    return body


def _check_table(params: Mapping[str, str]) -> str:
    table = params["table"]
    if table != TABLE and table not in RECORD_TABLES:
        raise RequestRefusedError(_error(400, f"Invalid table {table}",
                                         f"the simulator serves {TABLE} and {', '.join(RECORD_TABLES)}"))
    return table


def _rows(ctx: DeskContext, table: str) -> list[dict[str, str]]:
    if table == TABLE:
        return [t.fields for t in ctx.store.of_desk(Desk.SERVICENOW)]
    return list(ctx.store.table(f"sn_{table}").values())


def _record(ctx: DeskContext, table: str, sys_id: str) -> dict[str, str] | None:
    if table == TABLE:
        ticket = ctx.store.get(Desk.SERVICENOW, sys_id)
        return None if ticket is None else ticket.fields
    return ctx.store.table(f"sn_{table}").get(sys_id)


def _new_sys_id(ctx: DeskContext, table: str) -> str:
    return hashlib.sha256(f"{table}-{ctx.store.next_number('sn-' + table)}".encode()).hexdigest()[:32]


def _find(ctx: DeskContext, params: Mapping[str, str]) -> Ticket:
    _check_table(params)
    ticket = ctx.store.get(Desk.SERVICENOW, params["sys_id"])
    if ticket is None:
        detail = "Record doesn't exist or ACL restricts the record retrieval"
        raise RequestRefusedError(_error(404, "No Record found", detail))
    return ticket


def _project(record: Mapping[str, str], request: SimRequest) -> dict[str, str]:
    wanted = request.param("sysparm_fields")
    if not wanted:
        return dict(record)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    return {n: record.get(n, "") for n in names}


def _answer(status: int, record: Mapping[str, str], request: SimRequest,
            headers: Mapping[str, str] | None = None) -> SimResponse:
    if (request.header("x-no-response-body") or "").lower() == "true":
        return SimResponse.empty(status, headers)
    return SimResponse.json(status, {"result": _project(record, request)}, headers)


def _checked_value(ctx: DeskContext, name: str, value: str, display: bool) -> str:
    """A reference or choice value checked (and, with display values, resolved)."""
    if value == "":
        return value
    if name in REFERENCES:
        table = REFERENCES[name]
        if _SYS_ID.match(value) and _record(ctx, table, value) is not None:
            return value
        if display:
            for row in _rows(ctx, table):
                if row.get("name") == value or row.get("number") == value:
                    return row["sys_id"]
        raise RequestRefusedError(_error(400, "Invalid reference",
                                         f"{name}: {value!r} is not the sys_id of a {table} record (send a sys_id, "
                                         "or sysparm_input_display_value=true with its name)"))
    if name in CHOICES:
        choices = CHOICES[name]
        if value in choices:
            return value
        if display:
            for key, label in choices.items():
                if label.lower() == value.lower():
                    return key
        raise RequestRefusedError(_error(400, "Invalid choice", f"{name}: {value!r} is not one of {sorted(choices)}"))
    return value


def _journal(ctx: DeskContext, sys_id: str, element: str, value: str, user: str) -> None:
    journal_id = _new_sys_id(ctx, "sys_journal_field")
    ctx.store.table("sn_sys_journal_field")[journal_id] = {
        "sys_id": journal_id, "element_id": sys_id, "element": element, "name": TABLE, "value": value,
        "sys_created_on": _stamp(ctx.now), "sys_created_by": user}


def _apply_fields(ctx: DeskContext, ticket: Ticket, body: Mapping[str, Any], *, user: str, display: bool) -> None:
    checked = {name: _checked_value(ctx, name, _text(value), display) for name, value in body.items()
               if name not in _JOURNAL and not name.startswith("sys_")}
    for name in _JOURNAL:
        if body.get(name):
            ticket.comments.append({"element": name, "value": _text(body[name]), "sys_created_on": _stamp(ctx.now),
                                    "sys_created_by": user})
            _journal(ctx, ticket.id, name, _text(body[name]), user)
    ticket.fields.update(checked)  # system fields are generated and cannot be updated (Table API docs)
    ticket.fields["sys_updated_on"] = _stamp(ctx.now)
    ticket.fields["sys_updated_by"] = user
    ticket.fields["sys_mod_count"] = str(int(ticket.fields.get("sys_mod_count", "0") or 0) + 1)
    ticket.status = ticket.fields.get("state", "1")
    ticket.correlation_id = ticket.fields.get("correlation_id") or None


def _display(request: SimRequest) -> bool:
    return (request.param("sysparm_input_display_value") or "").lower() == "true"


def _insert(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    table = _check_table(params)
    body = _record_body(request)
    user = _user_of(ctx, request)
    if table != TABLE:
        sys_id = _new_sys_id(ctx, table)
        record = {name: _text(value) for name, value in body.items() if not name.startswith("sys_")}
        record.update(sys_id=sys_id, sys_created_on=_stamp(ctx.now), sys_created_by=user)
        ctx.store.table(f"sn_{table}")[sys_id] = record
        return _answer(201, record, request, {"Location": f"/api/now/table/{table}/{sys_id}"})
    number = ctx.store.next_number("servicenow")
    sys_id = hashlib.sha256(f"incident-{number}".encode()).hexdigest()[:32]
    fields = {"sys_id": sys_id, "number": f"INC{_NUMBER_BASE + number:07d}", "state": "1",
              "sys_created_on": _stamp(ctx.now), "sys_created_by": user, "sys_class_name": TABLE, "active": "true",
              "work_notes": "", "comments": "", "reopen_count": "0", "sys_mod_count": "0"}
    ticket = Ticket(desk=Desk.SERVICENOW, id=sys_id, status="1", created_at=ctx.now, fields=fields)
    _apply_fields(ctx, ticket, body, user=user, display=_display(request))
    ctx.store.create(ticket, at=ctx.now, body=body)
    return _answer(201, ticket.fields, request, {"Location": f"/api/now/table/{TABLE}/{sys_id}"})


def _read(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    table = _check_table(params)
    record = _record(ctx, table, params["sys_id"])
    if record is None:
        raise RequestRefusedError(_error(404, "No Record found", "Record doesn't exist or ACL restricts the record "
                                                                 "retrieval"))
    return SimResponse.json(200, {"result": _project(record, request)})


def _update_ticket(ctx: DeskContext, ticket: Ticket, body: Mapping[str, Any], *, user: str, display: bool) -> None:
    before = ticket.status
    if before == "7":
        raise RequestRefusedError(_error(403, "Operation Failed", "Closed incidents cannot be updated (ACL)"))
    after = _checked_value(ctx, "state", _text(body.get("state", before)), display)
    if after in RESOLVED_STATES:
        missing = [label for name, label in (("close_code", "Resolution code"), ("close_notes", "Resolution notes"))
                   if not _text(body.get(name, ticket.fields.get(name, "")))]
        if missing:
            detail = "Data Policy Exception: \n" + "\n".join(f" {label} is mandatory" for label in missing)
            raise RequestRefusedError(_error(403, "Operation Failed", detail))
        op = Op.RESOLVE if before not in RESOLVED_STATES else Op.UPDATE
    elif before in RESOLVED_STATES and "state" in body:
        op = Op.REOPEN
        ticket.fields["reopen_count"] = str(int(ticket.fields.get("reopen_count", "0") or 0) + 1)
    elif set(body) <= set(_JOURNAL):
        op = Op.COMMENT
    else:
        op = Op.UPDATE
    _apply_fields(ctx, ticket, body, user=user, display=display)
    ticket.fields["active"] = "false" if ticket.status in RESOLVED_STATES else "true"
    ctx.store.record(ticket, op, at=ctx.now, body=dict(body))


def _update(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    table = _check_table(params)
    body = _record_body(request)
    if table != TABLE:
        record = _record(ctx, table, params["sys_id"])
        if record is None:
            raise RequestRefusedError(_error(404, "No Record found", "Record doesn't exist"))
        record.update({k: _text(v) for k, v in body.items() if not k.startswith("sys_")})
        return _answer(200, record, request)
    ticket = _find(ctx, params)
    _update_ticket(ctx, ticket, body, user=_user_of(ctx, request), display=_display(request))
    return _answer(200, ticket.fields, request)


_OPERATORS = ("LIKE", "!=", ">=", "<=", "=")


def _condition(clause: str) -> Callable[[Mapping[str, str]], bool]:
    for operator in _OPERATORS:
        name, sep, value = clause.partition(operator)
        if sep and name and all(c.isalnum() or c == "_" for c in name):
            if operator == "LIKE":
                return lambda r: value in r.get(name, "")
            if operator == "!=":
                return lambda r: r.get(name, "") != value
            if operator == ">=":
                return lambda r: r.get(name, "") >= value
            if operator == "<=":
                return lambda r: r.get(name, "") <= value
            return lambda r: r.get(name, "") == value
    raise RequestRefusedError(_error(400, "Invalid query", f"the simulator understands field=value, !=, >=, <=, "
                                                     f"LIKE and ORDERBY clauses joined by ^, not {clause!r}"))


def _int_param(request: SimRequest, name: str, default: int) -> int:
    raw = request.param(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise RequestRefusedError(_error(400, f"Invalid {name}", f"{name} must be a non-negative integer"))
    return int(raw)


def _query(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    table = _check_table(params)
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    order: tuple[str, bool] | None = None
    for clause in (request.param("sysparm_query") or "").split("^"):
        if clause.startswith("ORDERBYDESC"):
            order = (clause.removeprefix("ORDERBYDESC"), True)
        elif clause.startswith("ORDERBY"):
            order = (clause.removeprefix("ORDERBY"), False)
        elif clause:
            tests.append(_condition(clause))
    tests += [_condition(f"{name}={values[0]}") for name, values in request.query.items()
              if not name.startswith("sysparm_") and values]
    keep = [r for r in _rows(ctx, table) if all(test(r) for test in tests)]
    if order is not None:
        keep.sort(key=lambda r: r.get(order[0], ""), reverse=order[1])
    offset = _int_param(request, "sysparm_offset", 0)
    limit = min(_int_param(request, "sysparm_limit", MAX_LIMIT), MAX_LIMIT)
    page = keep[offset:offset + limit]
    return SimResponse.json(200, {"result": [_project(r, request) for r in page]}, {"X-Total-Count": str(len(keep))})


def _attach(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    table, sys_id, name = (request.param(p) for p in ("table_name", "table_sys_id", "file_name"))
    if not table or not sys_id or not name:
        raise RequestRefusedError(_error(400, "Invalid request", "table_name, table_sys_id and file_name are required"))
    if _record(ctx, table, sys_id) is None:
        raise RequestRefusedError(_error(400, "Invalid table_sys_id", f"no {table} record {sys_id}"))
    attachment_id = _new_sys_id(ctx, "sys_attachment")
    record = {"sys_id": attachment_id, "table_name": table, "table_sys_id": sys_id, "file_name": name,
              "content_type": request.header("content-type") or "", "size_bytes": str(len(request.body)),
              "sys_created_on": _stamp(ctx.now)}
    ctx.store.table("sn_sys_attachment")[attachment_id] = record
    return SimResponse.json(201, {"result": record})


def _attachments(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    tests = [_condition(c) for c in (request.param("sysparm_query") or "").split("^") if c]
    keep = [r for r in ctx.store.table("sn_sys_attachment").values() if all(t(r) for t in tests)]
    return SimResponse.json(200, {"result": keep[: _int_param(request, "sysparm_limit", MAX_LIMIT)]})


def person_acts(ctx: DeskContext, act: HumanAction, _outgoing: Outgoing) -> dict[str, Any]:
    """A service-desk agent acts on an incident in ServiceNow's UI."""
    ticket = ctx.store.get(Desk.SERVICENOW, act.ticket_id)
    if ticket is None:
        raise RequestRefusedError(_error(404, "No Record found", act.ticket_id))
    users = ctx.store.table("sn_sys_user")
    agent = next((sid for sid, u in users.items() if u.get("user_name") == act.actor), None)
    if agent is None:
        agent = _new_sys_id(ctx, "sys_user")
        users[agent] = {"sys_id": agent, "user_name": act.actor, "name": act.actor, "sys_created_on": _stamp(ctx.now)}
    body: dict[str, Any]
    if act.action == "acknowledge":
        body = {"state": "2", "assigned_to": agent}
    elif act.action == "resolve":
        body = {"state": "6", "close_code": "Solution provided", "close_notes": act.text or "Repaired on site."}
    elif act.action == "reassign":
        body = {"assigned_to": agent}
    elif act.action == "comment":
        body = {"work_notes": act.text or ""}
    else:
        raise RequestRefusedError(_error(400, "Invalid action", act.action))
    _update_ticket(ctx, ticket, body, user=act.actor, display=False)
    return {"ticket": ticket.id, "status": ticket.status}


_auth = guarded(DeskCredentials.servicenow_ok, lambda status, _m: _error(
    status, "User Not Authenticated", "Required to provide Auth information"), "")
_TABLE = r"/api/now/table/(?P<table>\w+)"

SERVICENOW = DeskSpec(
    desk=Desk.SERVICENOW,
    routes=(
        route("GET", _TABLE, _auth(_query)),
        route("POST", _TABLE, _auth(_insert)),
        route("GET", _TABLE + r"/(?P<sys_id>\w+)", _auth(_read)),
        route("PATCH", _TABLE + r"/(?P<sys_id>\w+)", _auth(_update)),
        route("PUT", _TABLE + r"/(?P<sys_id>\w+)", _auth(_update)),
        route("POST", r"/api/now/attachment/file", _auth(_attach)),
        route("GET", r"/api/now/attachment", _auth(_attachments)),
    ),
    error=_error,
)
