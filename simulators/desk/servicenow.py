"""ServiceNow Table API on the ``incident`` table: query, insert, read, update.

Shapes from ``reference/desk-specs/servicenow-table-api.handwritten.openapi.json`` (written from the Table
API reference): ``{"result": ...}`` envelopes, string field values, ``sysparm_*`` parameters, one record
per insert, ``X-no-response-body``. Incident states (1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed,
8 Canceled) and the resolve data policy (close_code + close_notes mandatory) are those of a default instance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from simulators.desk.auth import DeskCredentials
from simulators.desk.errors import RequestRefusedError
from simulators.desk.exchange import SimRequest, SimResponse
from simulators.desk.routing import DeskContext, DeskSpec, guarded, json_object, route
from simulators.desk.store import Desk, Op, Ticket

__all__ = ["SERVICENOW"]

TABLE = "incident"
RESOLVED_STATES = ("6", "7")
"""6 Resolved, 7 Closed (default incident state choices)."""

MAX_LIMIT = 10_000
"""ServiceNow caps an unpaginated Table API read; the instance default for large reads is 10 000 records."""

_JOURNAL = ("work_notes", "comments")
_NUMBER_BASE = 10_000
"""A fresh instance numbers incidents from INC0010001."""


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


def _record_body(request: SimRequest) -> dict[str, Any]:
    body = json_object(request, _error)
    if not body:
        raise RequestRefusedError(_error(400, "Exception while reading request", "the body names no field"))
    for name, value in body.items():
        if isinstance(value, dict | list):
            raise RequestRefusedError(_error(400, "Exception while reading request",
                                       f"field {name!r}: values are strings, numbers or booleans"))
    return body


def _check_table(params: Mapping[str, str]) -> None:
    if params["table"] != TABLE:
        raise RequestRefusedError(_error(400, f"Invalid table {params['table']}", "the simulator serves incident"))


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


def _answer(status: int, ticket: Ticket, request: SimRequest, headers: Mapping[str, str] | None = None) -> SimResponse:
    if (request.header("x-no-response-body") or "").lower() == "true":
        return SimResponse.empty(status, headers)
    return SimResponse.json(status, {"result": _project(ticket.fields, request)}, headers)


def _apply_fields(ctx: DeskContext, ticket: Ticket, body: Mapping[str, Any]) -> None:
    for name, value in body.items():
        if name in _JOURNAL:
            if value:
                ticket.comments.append({"element": name, "value": _text(value), "sys_created_on": _stamp(ctx.now)})
            continue
        if name.startswith("sys_"):
            continue  # system fields are generated and cannot be updated (Table API docs)
        ticket.fields[name] = _text(value)
    ticket.fields["sys_updated_on"] = _stamp(ctx.now)
    ticket.status = ticket.fields.get("state", "1")
    ticket.correlation_id = ticket.fields.get("correlation_id") or None


def _insert(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    _check_table(params)
    body = _record_body(request)
    number = ctx.store.next_number("servicenow")
    sys_id = hashlib.sha256(f"incident-{number}".encode()).hexdigest()[:32]
    fields = {"sys_id": sys_id, "number": f"INC{_NUMBER_BASE + number:07d}", "state": "1",
              "sys_created_on": _stamp(ctx.now), "sys_class_name": TABLE, "active": "true",
              "work_notes": "", "comments": ""}
    ticket = Ticket(desk=Desk.SERVICENOW, id=sys_id, status="1", created_at=ctx.now, fields=fields)
    _apply_fields(ctx, ticket, body)
    ctx.store.create(ticket, at=ctx.now, body=body)
    return _answer(201, ticket, request, {"Location": f"/api/now/table/{TABLE}/{sys_id}"})


def _read(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    return SimResponse.json(200, {"result": _project(_find(ctx, params).fields, request)})


def _update(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    ticket = _find(ctx, params)
    body = _record_body(request)
    before = ticket.status
    after = _text(body.get("state", before))
    if after in RESOLVED_STATES:
        missing = [label for name, label in (("close_code", "Resolution code"), ("close_notes", "Resolution notes"))
                   if not _text(body.get(name, ticket.fields.get(name, "")))]
        if missing:
            detail = "Data Policy Exception: \n" + "\n".join(f" {label} is mandatory" for label in missing)
            raise RequestRefusedError(_error(403, "Operation Failed", detail))
        op = Op.RESOLVE
    elif before in RESOLVED_STATES and "state" in body:
        op = Op.REOPEN
    elif set(body) <= set(_JOURNAL):
        op = Op.COMMENT
    else:
        op = Op.UPDATE
    _apply_fields(ctx, ticket, body)
    ticket.fields["active"] = "false" if ticket.status in RESOLVED_STATES else "true"
    ctx.store.record(ticket, op, at=ctx.now, body=body)
    return _answer(200, ticket, request)


def _equals(name: str, value: str, *, negate: bool = False) -> Callable[[Ticket], bool]:
    return lambda ticket: (ticket.fields.get(name, "") == value) != negate


def _condition(clause: str) -> Callable[[Ticket], bool]:
    for operator in ("!=", "="):
        name, sep, value = clause.partition(operator)
        if sep and name and all(c.isalnum() or c == "_" for c in name):
            return _equals(name, value, negate=operator == "!=")
    raise RequestRefusedError(_error(400, "Invalid query", f"the simulator understands field=value and field!=value "
                                                     f"clauses joined by ^, not {clause!r}"))


def _int_param(request: SimRequest, name: str, default: int) -> int:
    raw = request.param(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise RequestRefusedError(_error(400, f"Invalid {name}", f"{name} must be a non-negative integer"))
    return int(raw)


def _query(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    _check_table(params)
    tests = [_condition(c) for c in (request.param("sysparm_query") or "").split("^") if c]
    tests += [_equals(name, values[0]) for name, values in request.query.items()
              if not name.startswith("sysparm_") and values]
    keep = [t for t in ctx.store.of_desk(Desk.SERVICENOW) if all(test(t) for test in tests)]
    offset = _int_param(request, "sysparm_offset", 0)
    limit = min(_int_param(request, "sysparm_limit", MAX_LIMIT), MAX_LIMIT)
    page = keep[offset:offset + limit]
    return SimResponse.json(200, {"result": [_project(t.fields, request) for t in page]},
                            {"X-Total-Count": str(len(keep))})


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
    ),
    error=_error,
)
