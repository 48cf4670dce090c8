"""Jira Service Management requests, plus the Jira platform search used to find them by label.

Shapes from ``reference/desk-specs/jsm-servicedeskapi.openapi.subset.json`` (RequestCreateDTO,
CustomerRequestDTO, CommentCreateDTO/CommentDTO, CustomerTransitionExecutionDTO, PagedDTOCustomerTransitionDTO);
search answers follow the Jira platform v3 ``/rest/api/3/search/jql`` and legacy ``/rest/api/3/search`` shapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from simulators.desk.auth import DeskCredentials
from simulators.desk.errors import RequestRefusedError
from simulators.desk.exchange import SimRequest, SimResponse
from simulators.desk.routing import DeskContext, DeskSpec, guarded, json_object, route
from simulators.desk.store import Desk, Op, Ticket

__all__ = ["JSM", "PROJECT_KEY", "REOPEN_TRANSITION", "RESOLVE_TRANSITION"]

PROJECT_KEY = "PDM"
RESOLVE_TRANSITION = {"id": "21", "name": "Resolve this issue"}
REOPEN_TRANSITION = {"id": "31", "name": "Reopen"}
MAX_RESULTS = 50
"""Jira's default ``maxResults`` for search and paged service-desk lists."""

_OPEN_STATUS = ("Waiting for support", "NEW")
_DONE_STATUS = ("Resolved", "DONE")
_CLAUSE = re.compile(r'\s*(\w+)\s*(!=|=)\s*(?:"([^"]*)"|([^\s"]+))\s*', re.IGNORECASE)


def _error(status: int, message: str) -> SimResponse:
    return SimResponse.json(status, {"errorMessage": message, "i18nErrorMessage": {"i18nKey": "sd.sim.error",
                                                                                    "parameters": []}})


def _search_error(message: str) -> RequestRefusedError:
    return RequestRefusedError(SimResponse.json(400, {"errorMessages": [message], "errors": {}}))


def _date(at: datetime) -> dict[str, Any]:
    jira = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
    return {"epochMillis": int(at.timestamp() * 1000), "friendly": at.strftime("%d/%b/%y %I:%M %p"),
            "iso8601": at.strftime("%Y-%m-%dT%H:%M:%S+0000"), "jira": jira}


def _is_done(ticket: Ticket) -> bool:
    return ticket.status == _DONE_STATUS[0]


def _set_status(ticket: Ticket, status: tuple[str, str], at: datetime) -> None:
    ticket.status = status[0]
    ticket.fields["currentStatus"] = {"status": status[0], "statusCategory": status[1], "statusDate": _date(at)}


def _find(ctx: DeskContext, key: str) -> Ticket:
    ticket = ctx.store.get(Desk.JSM, key)
    if ticket is None:
        ticket = next((t for t in ctx.store.of_desk(Desk.JSM) if t.fields["issueId"] == key), None)
    if ticket is None:
        raise RequestRefusedError(_error(404, f"Request {key} does not exist or you do not have permission to see it."))
    return ticket


def _create(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    body = json_object(request, _error)
    for name in ("serviceDeskId", "requestTypeId"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise RequestRefusedError(_error(400, f"{name} is required (a string id)"))
    values = body.get("requestFieldValues")
    if not isinstance(values, dict) or not isinstance(values.get("summary"), str) or not values["summary"]:
        raise RequestRefusedError(_error(400, "requestFieldValues.summary is required"))
    labels = values.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) and " " not in x for x in labels):
        raise RequestRefusedError(_error(400, "requestFieldValues.labels must be a list of strings without spaces"))
    number = ctx.store.next_number("jsm")
    key = f"{PROJECT_KEY}-{number}"
    host = request.header("host") or "localhost"
    fields = {
        "issueId": str(10_000 + number), "issueKey": key, "requestTypeId": body["requestTypeId"],
        "serviceDeskId": body["serviceDeskId"], "createdDate": _date(ctx.now),
        "requestFieldValues": [{"fieldId": name, "label": name.capitalize(), "value": value}
                               for name, value in values.items()],
        "_links": {"self": f"http://{host}/rest/servicedeskapi/request/{10_000 + number}",
                   "web": f"http://{host}/servicedesk/customer/portal/{body['serviceDeskId']}/{key}"},
    }
    ticket = Ticket(desk=Desk.JSM, id=key, status=_OPEN_STATUS[0], created_at=ctx.now, fields=fields,
                    labels=tuple(labels))
    _set_status(ticket, _OPEN_STATUS, ctx.now)
    ctx.store.create(ticket, at=ctx.now, body=body)
    return SimResponse.json(201, ticket.fields)


def _show(ctx: DeskContext, _request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    return SimResponse.json(200, _find(ctx, params["key"]).fields)


def _add_comment(ctx: DeskContext, ticket: Ticket, text: str, public: bool) -> dict[str, Any]:
    comment = {"id": str(ctx.store.next_number("jsm-comment")), "body": text, "public": public,
               "created": _date(ctx.now)}
    ticket.comments.append(comment)
    return comment


def _comment(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    ticket = _find(ctx, params["key"])
    body = json_object(request, _error)
    if not isinstance(body.get("body"), str) or not body["body"]:
        raise RequestRefusedError(_error(400, "body is required"))
    comment = _add_comment(ctx, ticket, body["body"], bool(body.get("public", True)))
    ctx.store.record(ticket, Op.COMMENT, at=ctx.now, body=body)
    return SimResponse.json(201, comment)


def _transitions_of(ticket: Ticket) -> list[dict[str, str]]:
    return [REOPEN_TRANSITION] if _is_done(ticket) else [RESOLVE_TRANSITION]


def _list_transitions(ctx: DeskContext, _request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    values = _transitions_of(_find(ctx, params["key"]))
    return SimResponse.json(200, {"size": len(values), "start": 0, "limit": MAX_RESULTS, "isLastPage": True,
                                  "values": values})


def _transition(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    ticket = _find(ctx, params["key"])
    body = json_object(request, _error)
    wanted = body.get("id")
    if wanted not in [t["id"] for t in _transitions_of(ticket)]:
        raise RequestRefusedError(_error(400, f"Transition {wanted!r} is not available for request {ticket.id}."))
    extra = body.get("additionalComment")
    if isinstance(extra, dict) and isinstance(extra.get("body"), str) and extra["body"]:
        _add_comment(ctx, ticket, extra["body"], True)
    resolving = wanted == RESOLVE_TRANSITION["id"]
    _set_status(ticket, _DONE_STATUS if resolving else _OPEN_STATUS, ctx.now)
    ctx.store.record(ticket, Op.RESOLVE if resolving else Op.REOPEN, at=ctx.now, body=body)
    return SimResponse.empty(204)


def _jql_filter(jql: str) -> Callable[[Ticket], bool]:
    """A predicate for the small JQL subset the bridge needs: ``AND``-joined label/project/statusCategory clauses."""
    tests: list[Callable[[Ticket], bool]] = []
    for clause in re.split(r"\s+AND\s+", jql.strip(), flags=re.IGNORECASE):
        found = _CLAUSE.fullmatch(clause)
        if found is None:
            raise _search_error(f"Error in the JQL Query: the simulator does not understand {clause!r}.")
        name, operator, value = found.group(1).lower(), found.group(2), found.group(3) or found.group(4)
        tests.append(_clause_test(name, value, negate=operator == "!="))
    return lambda ticket: all(test(ticket) for test in tests)


def _clause_test(name: str, value: str, *, negate: bool) -> Callable[[Ticket], bool]:
    if name == "labels":
        return lambda t: (value in t.labels) != negate
    if name == "project":
        return lambda t: t.id.startswith(f"{value}-") != negate
    if name == "statuscategory":
        return lambda t: (_is_done(t) == (value.lower() == "done")) != negate
    raise _search_error(f"Field '{name}' is not supported by the simulator's JQL.")


def _issue(ticket: Ticket) -> dict[str, Any]:
    summary = next((v["value"] for v in ticket.fields["requestFieldValues"] if v["fieldId"] == "summary"), None)
    category = "done" if _is_done(ticket) else "new"
    return {"id": ticket.fields["issueId"], "key": ticket.id,
            "fields": {"summary": summary, "labels": list(ticket.labels),
                       "status": {"name": ticket.status, "statusCategory": {"key": category}}}}


def _matches(ctx: DeskContext, request: SimRequest) -> list[dict[str, Any]]:
    jql = request.param("jql")
    if not jql:
        raise _search_error("The jql query parameter is required.")
    keep = _jql_filter(jql)
    return [_issue(t) for t in ctx.store.of_desk(Desk.JSM) if keep(t)]


def _search_jql(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    issues = _matches(ctx, request)
    return SimResponse.json(200, {"issues": issues[:MAX_RESULTS], "isLast": len(issues) <= MAX_RESULTS})


def _search_legacy(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    issues = _matches(ctx, request)
    return SimResponse.json(200, {"startAt": 0, "maxResults": MAX_RESULTS, "total": len(issues),
                                  "issues": issues[:MAX_RESULTS]})


_auth = guarded(DeskCredentials.jira_ok, _error, "Client must be authenticated to access this resource.")
_KEY = r"/rest/servicedeskapi/request/(?P<key>[A-Za-z0-9-]+)"

JSM = DeskSpec(
    desk=Desk.JSM,
    routes=(
        route("POST", r"/rest/servicedeskapi/request", _auth(_create)),
        route("GET", _KEY, _auth(_show)),
        route("POST", _KEY + r"/comment", _auth(_comment)),
        route("GET", _KEY + r"/transition", _auth(_list_transitions)),
        route("POST", _KEY + r"/transition", _auth(_transition)),
        route("GET", r"/rest/api/3/search/jql", _auth(_search_jql)),
        route("GET", r"/rest/api/3/search", _auth(_search_legacy)),
    ),
    error=_error,
)
