"""Jira Service Management requests, the Jira platform calls the bridge makes around them, and a workflow.

Shapes from ``reference/desk-specs/jsm-servicedeskapi.openapi.subset.json`` (RequestCreateDTO,
CustomerRequestDTO, CommentCreateDTO/CommentDTO, CustomerTransitionExecutionDTO, PagedDTOCustomerTransitionDTO)
and ``jira-platform-v3.openapi.subset.json`` (``GET/POST /rest/api/3/issue/{key}/transitions``); search
answers follow the Jira platform v3 ``/rest/api/3/search/jql`` and legacy ``/rest/api/3/search`` shapes.

As strict as a real instance where it matters to the bridge:

* **request types per instance**: service desk ``1`` has request type ``10`` (summary and description
  required) and ``11`` (also ``customfield_10050`` "Site" required); a create missing a required field,
  or naming an unknown desk or type, is refused (400), as is a ``raiseOnBehalfOf`` that is not a
  customer of the desk;
* **a workflow with transition ids of its own** (:data:`WORKFLOW`; ids offset per simulator seed, so
  a client must discover them by name): a transition not offered from the current status is refused (400);
* **eventually consistent search**: a new issue is invisible to JQL search for ``search_lag_s``
  (``POST /_sim/settings``), as Jira's index lags behind a create.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from simulators.desk.auth import DeskCredentials
from simulators.desk.errors import RequestRefusedError
from simulators.desk.exchange import SimRequest, SimResponse
from simulators.desk.routing import DeskContext, DeskSpec, HumanAction, guarded, json_object, route
from simulators.desk.store import Desk, Op, Outgoing, Ticket

__all__ = ["BRIDGE_ACCOUNT", "JSM", "PROJECT_KEY", "REQUEST_TYPES", "WORKFLOW", "person_acts"]

PROJECT_KEY = "PDM"
SERVICE_DESK_ID = "1"
BRIDGE_ACCOUNT = "557058:bridge"
"""The accountId of the API user (the bridge), as ``GET /rest/api/3/myself`` answers it."""
MAX_RESULTS = 50
"""Jira's default ``maxResults`` for search and paged service-desk lists."""

_STATUS_CATEGORY = {"Waiting for support": "new", "In progress": "indeterminate", "Pending": "indeterminate",
                    "Waiting for customer": "indeterminate", "Resolved": "done", "Closed": "done"}
WORKFLOW: dict[str, tuple[tuple[str, str], ...]] = {
    "Waiting for support": (("In progress", "In progress"), ("Pending", "Pending"),
                            ("Resolve this issue", "Resolved")),
    "In progress": (("Pending", "Pending"), ("Waiting for customer", "Waiting for customer"),
                    ("Resolve this issue", "Resolved")),
    "Pending": (("Back to in progress", "In progress"), ("Resolve this issue", "Resolved")),
    "Waiting for customer": (("Back to in progress", "In progress"), ("Resolve this issue", "Resolved")),
    "Resolved": (("Reopen", "In progress"), ("Close", "Closed")),
    "Closed": (),
}
"""Status → (transition name, target status): a JSM IT-support-like workflow."""
_TRANSITION_NAMES = sorted({name for moves in WORKFLOW.values() for name, _ in moves})

REQUEST_TYPES: dict[str, dict[str, bool]] = {
    "10": {"summary": True, "description": True, "labels": False},
    "11": {"summary": True, "description": True, "labels": False, "customfield_10050": True},
}
"""Request types of service desk 1: field id → required."""
_FIELD_NAMES = {"summary": "Summary", "description": "Description", "labels": "Labels", "customfield_10050": "Site"}

_CLAUSE = re.compile(r'\s*(\w+)\s*(!=|>=|=)\s*(?:"([^"]*)"|([^\s"]+))\s*', re.IGNORECASE)


def _error(status: int, message: str) -> SimResponse:
    return SimResponse.json(status, {"errorMessage": message, "i18nErrorMessage": {"i18nKey": "sd.sim.error",
                                                                                    "parameters": []}})


def _platform_error(status: int, message: str) -> RequestRefusedError:
    return RequestRefusedError(SimResponse.json(status, {"errorMessages": [message], "errors": {}}))


def _date(at: datetime) -> dict[str, Any]:
    jira = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"
    return {"epochMillis": int(at.timestamp() * 1000), "friendly": at.strftime("%d/%b/%y %I:%M %p"),
            "iso8601": at.strftime("%Y-%m-%dT%H:%M:%S+0000"), "jira": jira}


def _transition_id(name: str, ctx: DeskContext) -> str:
    """Ids differ per instance (per simulator seed): clients must find them by name."""
    return str(700 + 10 * _TRANSITION_NAMES.index(name) + ctx.store.instance_salt % 10)


def _set_status(ticket: Ticket, status: str, at: datetime) -> None:
    ticket.status = status
    ticket.fields["currentStatus"] = {"status": status, "statusCategory": _STATUS_CATEGORY[status].upper(),
                                      "statusDate": _date(at)}


def _find(ctx: DeskContext, key: str) -> Ticket:
    ticket = ctx.store.get(Desk.JSM, key)
    if ticket is None:
        ticket = next((t for t in ctx.store.of_desk(Desk.JSM) if t.fields["issueId"] == key), None)
    if ticket is None:
        raise RequestRefusedError(_error(404, f"Request {key} does not exist or you do not have permission to see it."))
    return ticket


def _users(ctx: DeskContext) -> dict[str, dict[str, Any]]:
    users = ctx.store.table("jira_users")
    if BRIDGE_ACCOUNT not in users:
        users[BRIDGE_ACCOUNT] = {"accountId": BRIDGE_ACCOUNT, "emailAddress": ctx.credentials.jira_email,
                                 "displayName": "pdm bridge", "accountType": "atlassian", "active": True}
    return users


def _customers(ctx: DeskContext) -> set[str]:
    desk = ctx.store.table("jsm_desk_customers")
    return set(desk)


def _history(ctx: DeskContext, ticket: Ticket, actor: str, items: list[dict[str, Any]]) -> None:
    histories: list[dict[str, Any]] = ticket.fields.setdefault("_changelog", [])
    histories.append({"id": str(ctx.store.next_number("jira-history")), "author": {"accountId": actor},
                      "created": _date(ctx.now)["jira"], "createdMillis": int(ctx.now.timestamp() * 1000),
                      "items": items})
    ticket.fields["_updated_ms"] = int(ctx.now.timestamp() * 1000)


def _create(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    body = json_object(request, _error)
    for name in ("serviceDeskId", "requestTypeId"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise RequestRefusedError(_error(400, f"{name} is required (a string id)"))
    if body["serviceDeskId"] != SERVICE_DESK_ID:
        raise RequestRefusedError(_error(404, f"Service desk {body['serviceDeskId']} does not exist."))
    fields_of_type = REQUEST_TYPES.get(body["requestTypeId"])
    if fields_of_type is None:
        raise RequestRefusedError(_error(400, f"Request type {body['requestTypeId']} does not exist in desk 1."))
    values = body.get("requestFieldValues")
    if not isinstance(values, dict):
        raise RequestRefusedError(_error(400, "requestFieldValues is required"))
    missing = [f for f, required in fields_of_type.items() if required and not values.get(f)]
    if missing:
        raise RequestRefusedError(_error(400, "Fields are required: " + ", ".join(_FIELD_NAMES[f] for f in missing)))
    unknown = sorted(set(values) - set(fields_of_type))
    if unknown:
        raise RequestRefusedError(_error(400, f"Fields {unknown} are not on request type {body['requestTypeId']}"))
    labels = values.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) and " " not in x for x in labels):
        raise RequestRefusedError(_error(400, "requestFieldValues.labels must be a list of strings without spaces"))
    reporter = body.get("raiseOnBehalfOf", BRIDGE_ACCOUNT)
    if reporter != BRIDGE_ACCOUNT and reporter not in _customers(ctx):
        raise RequestRefusedError(_error(400, f"The user {reporter!r} is not a customer of service desk 1."))
    number = ctx.store.next_number("jsm")
    key = f"{PROJECT_KEY}-{number}"
    host = request.header("host") or "localhost"
    fields = {
        "issueId": str(10_000 + number), "issueKey": key, "requestTypeId": body["requestTypeId"],
        "serviceDeskId": body["serviceDeskId"], "createdDate": _date(ctx.now),
        "reporter": {"accountId": reporter},
        "requestFieldValues": [{"fieldId": name, "label": _FIELD_NAMES.get(name, name), "value": value}
                               for name, value in values.items()],
        "_links": {"self": f"http://{host}/rest/servicedeskapi/request/{10_000 + number}",
                   "web": f"http://{host}/servicedesk/customer/portal/{body['serviceDeskId']}/{key}"},
        "_created_ms": int(ctx.now.timestamp() * 1000), "_updated_ms": int(ctx.now.timestamp() * 1000),
    }
    ticket = Ticket(desk=Desk.JSM, id=key, status="Waiting for support", created_at=ctx.now, fields=fields,
                    labels=tuple(labels))
    _set_status(ticket, "Waiting for support", ctx.now)
    ctx.store.create(ticket, at=ctx.now, body=body)
    return SimResponse.json(201, _public(ticket))


def _public(ticket: Ticket) -> dict[str, Any]:
    return {k: v for k, v in ticket.fields.items() if not k.startswith("_")}


def _show(ctx: DeskContext, _request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    return SimResponse.json(200, _public(_find(ctx, params["key"])))


def _add_comment(ctx: DeskContext, ticket: Ticket, text: str, public: bool, author: str) -> dict[str, Any]:
    comment = {"id": str(ctx.store.next_number("jsm-comment")), "body": text, "public": public,
               "author": {"accountId": author}, "created": _date(ctx.now)}
    ticket.comments.append(comment)
    ticket.fields["_updated_ms"] = int(ctx.now.timestamp() * 1000)
    return comment


def _comment(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    ticket = _find(ctx, params["key"])
    body = json_object(request, _error)
    if not isinstance(body.get("body"), str) or not body["body"]:
        raise RequestRefusedError(_error(400, "body is required"))
    comment = _add_comment(ctx, ticket, body["body"], bool(body.get("public", True)), BRIDGE_ACCOUNT)
    ctx.store.record(ticket, Op.COMMENT, at=ctx.now, body=body)
    return SimResponse.json(201, comment)


def _list_comments(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    ticket = _find(ctx, params["key"])
    public = request.param("public") != "false"
    internal = request.param("internal") != "false"
    values = [c for c in ticket.comments if (c["public"] and public) or (not c["public"] and internal)]
    return SimResponse.json(200, {"size": len(values), "start": 0, "limit": MAX_RESULTS, "isLastPage": True,
                                  "values": values[:MAX_RESULTS]})


def _customer_transitions(ticket: Ticket) -> list[tuple[str, str]]:
    """What the customer portal offers: resolving an open request, reopening a resolved one."""
    return [(n, to) for n, to in WORKFLOW[ticket.status] if n in ("Resolve this issue", "Reopen")]


def _list_customer_transitions(ctx: DeskContext, _request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    values = [{"id": _transition_id(n, ctx), "name": n} for n, _ in _customer_transitions(_find(ctx, params["key"]))]
    return SimResponse.json(200, {"size": len(values), "start": 0, "limit": MAX_RESULTS, "isLastPage": True,
                                  "values": values})


def _move(ctx: DeskContext, ticket: Ticket, name: str, target: str, *, actor: str, body: Any) -> None:
    before = ticket.status
    _set_status(ticket, target, ctx.now)
    _history(ctx, ticket, actor, [{"field": "status", "fromString": before, "toString": target,
                                   "toCategory": _STATUS_CATEGORY[target]}])
    done_before = _STATUS_CATEGORY[before] == "done"
    op = Op.RESOLVE if _STATUS_CATEGORY[target] == "done" else Op.REOPEN if done_before else Op.UPDATE
    ctx.store.record(ticket, op, at=ctx.now, body={"transition": name, **(body if isinstance(body, dict) else {})})


def _customer_transition(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    ticket = _find(ctx, params["key"])
    body = json_object(request, _error)
    offered = {_transition_id(n, ctx): (n, to) for n, to in _customer_transitions(ticket)}
    if body.get("id") not in offered:
        raise RequestRefusedError(_error(400, f"Transition {body.get('id')!r} is not available for request "
                                              f"{ticket.id}."))
    extra = body.get("additionalComment")
    if isinstance(extra, dict) and isinstance(extra.get("body"), str) and extra["body"]:
        _add_comment(ctx, ticket, extra["body"], True, BRIDGE_ACCOUNT)
    name, target = offered[str(body["id"])]
    _move(ctx, ticket, name, target, actor=BRIDGE_ACCOUNT, body=body)
    return SimResponse.empty(204)


def _issue_transitions(ctx: DeskContext, _request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    ticket = _find(ctx, params["key"])
    values = [{"id": _transition_id(n, ctx), "name": n, "hasScreen": False, "isAvailable": True,
               "to": {"name": to, "statusCategory": {"key": _STATUS_CATEGORY[to]}}}
              for n, to in WORKFLOW[ticket.status]]
    return SimResponse.json(200, {"transitions": values})


def _do_issue_transition(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    ticket = _find(ctx, params["key"])
    body = json_object(request, _error)
    wanted = body.get("transition", {}).get("id") if isinstance(body.get("transition"), dict) else None
    offered = {_transition_id(n, ctx): (n, to) for n, to in WORKFLOW[ticket.status]}
    if wanted not in offered:
        raise _platform_error(400, f"Transition id '{wanted}' is not valid for this issue.")
    name, target = offered[str(wanted)]
    _move(ctx, ticket, name, target, actor=BRIDGE_ACCOUNT, body=body)
    return SimResponse.empty(204)


def _jql_filter(jql: str) -> Callable[[Ticket], bool]:
    """A predicate for the JQL subset the bridge needs: ``AND``-joined labels/project/statusCategory/updated."""
    tests: list[Callable[[Ticket], bool]] = []
    for clause in re.split(r"\s+AND\s+", jql.strip(), flags=re.IGNORECASE):
        found = _CLAUSE.fullmatch(clause)
        if found is None:
            raise _platform_error(400, f"Error in the JQL Query: the simulator does not understand {clause!r}.")
        name, operator, value = found.group(1).lower(), found.group(2), found.group(3) or found.group(4)
        tests.append(_clause_test(name, value, operator))
    return lambda ticket: all(test(ticket) for test in tests)


def _clause_test(name: str, value: str, operator: str) -> Callable[[Ticket], bool]:
    negate = operator == "!="
    if name == "labels":
        return lambda t: (value in t.labels) != negate
    if name == "project":
        return lambda t: t.id.startswith(f"{value}-") != negate
    if name == "statuscategory":
        return lambda t: ((_STATUS_CATEGORY[t.status] == "done") == (value.lower() == "done")) != negate
    if name == "updated" and operator == ">=" and value.isdigit():
        return lambda t: int(t.fields["_updated_ms"]) >= int(value)
    raise _platform_error(400, f"Field '{name}' with {operator} is not supported by the simulator's JQL.")


def _issue(ticket: Ticket, expand: str) -> dict[str, Any]:
    summary = next((v["value"] for v in ticket.fields["requestFieldValues"] if v["fieldId"] == "summary"), None)
    out: dict[str, Any] = {
        "id": ticket.fields["issueId"], "key": ticket.id,
        "fields": {"summary": summary, "labels": list(ticket.labels),
                   "assignee": ticket.fields.get("_assignee"),
                   "status": {"name": ticket.status, "statusCategory": {"key": _STATUS_CATEGORY[ticket.status]}}}}
    if "changelog" in expand:
        histories = ticket.fields.get("_changelog", [])
        out["changelog"] = {"startAt": 0, "maxResults": len(histories), "total": len(histories),
                            "histories": histories}
    return out


def _matches(ctx: DeskContext, request: SimRequest) -> list[dict[str, Any]]:
    jql = request.param("jql")
    if not jql:
        raise _platform_error(400, "The jql query parameter is required.")
    keep = _jql_filter(jql)
    visible_before = ctx.now - timedelta(seconds=ctx.store.search_lag_s)
    expand = request.param("expand") or ""
    return [_issue(t, expand) for t in ctx.store.of_desk(Desk.JSM) if t.created_at <= visible_before and keep(t)]


def _search_jql(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    issues = _matches(ctx, request)
    return SimResponse.json(200, {"issues": issues[:MAX_RESULTS], "isLast": len(issues) <= MAX_RESULTS})


def _search_legacy(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    issues = _matches(ctx, request)
    return SimResponse.json(200, {"startAt": 0, "maxResults": MAX_RESULTS, "total": len(issues),
                                  "issues": issues[:MAX_RESULTS]})


def _request_type_fields(ctx: DeskContext, _request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    fields = REQUEST_TYPES.get(params["rt"]) if params["sd"] == SERVICE_DESK_ID else None
    if fields is None:
        raise RequestRefusedError(_error(404, f"Request type {params['rt']} does not exist in desk {params['sd']}."))
    return SimResponse.json(200, {"canRaiseOnBehalfOf": True, "canAddRequestParticipants": True,
                                  "requestTypeFields": [{"fieldId": f, "name": _FIELD_NAMES[f], "required": req,
                                                         "jiraSchema": {"type": "string"}}
                                                        for f, req in fields.items()]})


def _user_search(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    query = (request.param("query") or "").lower()
    found = [u for u in _users(ctx).values()
             if query and (query == str(u.get("emailAddress", "")).lower() or query in u["displayName"].lower())]
    return SimResponse.json(200, found)


def _myself(ctx: DeskContext, _request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    return SimResponse.json(200, _users(ctx)[BRIDGE_ACCOUNT])


def _create_customer(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    body = json_object(request, _error)
    email, name = body.get("email"), body.get("displayName")
    if not isinstance(email, str) or "@" not in email or not isinstance(name, str) or not name:
        raise RequestRefusedError(_error(400, "email and displayName are required"))
    users = _users(ctx)
    if any(str(u.get("emailAddress", "")).lower() == email.lower() for u in users.values()):
        raise RequestRefusedError(_error(400, f"A user with email {email} already exists."))
    account = f"qm:sim:{ctx.store.next_number('jira-customer'):06d}"
    users[account] = {"accountId": account, "emailAddress": email, "displayName": name, "accountType": "customer",
                      "active": True}
    return SimResponse.json(201, users[account])


def _add_desk_customers(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    body = json_object(request, _error)
    ids = body.get("accountIds")
    users = _users(ctx)
    if params["sd"] != SERVICE_DESK_ID or not isinstance(ids, list) or not all(i in users for i in ids):
        raise RequestRefusedError(_error(400, "accountIds must name existing users of this site"))
    desk = ctx.store.table("jsm_desk_customers")
    for account in ids:
        desk[str(account)] = {"accountId": account}
    return SimResponse.empty(204)


def _temporary_file(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    if "multipart/form-data" not in (request.header("content-type") or ""):
        raise RequestRefusedError(_error(415, "attachTemporaryFile takes multipart/form-data with a 'file' part"))
    if (request.header("x-atlassian-token") or "") != "no-check":
        raise RequestRefusedError(_error(403, "XSRF check failed: send X-Atlassian-Token: no-check"))
    token = f"temp-{ctx.store.next_number('jsm-temp'):06d}"
    ctx.uploads[token] = {"id": token, "size": len(request.body)}
    return SimResponse.json(201, {"temporaryAttachments": [{"temporaryAttachmentId": token, "fileName": "file"}]})


def _attach(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    ticket = _find(ctx, params["key"])
    body = json_object(request, _error)
    ids = body.get("temporaryAttachmentIds")
    if not isinstance(ids, list) or not ids or not all(i in ctx.uploads for i in ids):
        raise RequestRefusedError(_error(400, "temporaryAttachmentIds must name uploaded temporary files"))
    public = bool(body.get("public", True))
    comment = None
    extra = body.get("additionalComment")
    if isinstance(extra, dict) and extra.get("body"):
        comment = _add_comment(ctx, ticket, str(extra["body"]), public, BRIDGE_ACCOUNT)
    ticket.fields.setdefault("_attachments", []).extend(ids)
    ctx.store.record(ticket, Op.COMMENT, at=ctx.now, body=body)
    return SimResponse.json(201, {"attachments": {"size": len(ids), "values": [{"filename": i} for i in ids]},
                                  "comment": comment})


def person_acts(ctx: DeskContext, act: HumanAction, _outgoing: Outgoing) -> dict[str, Any]:
    """A service-desk agent acts on a request in Jira's UI (acknowledge = start progress, resolve, ...)."""
    ticket = _find(ctx, act.ticket_id)
    users = _users(ctx)
    users.setdefault(act.actor, {"accountId": act.actor, "displayName": act.actor, "accountType": "atlassian",
                                 "active": True})
    if act.action == "acknowledge":
        if ticket.status == "Waiting for support":
            _move(ctx, ticket, "In progress", "In progress", actor=act.actor, body={})
    elif act.action == "resolve":
        if _STATUS_CATEGORY[ticket.status] != "done":
            _move(ctx, ticket, "Resolve this issue", "Resolved", actor=act.actor, body={})
    elif act.action == "reassign":
        ticket.fields["_assignee"] = {"accountId": act.assignee or act.actor}
        _history(ctx, ticket, act.actor, [{"field": "assignee", "to": act.assignee or act.actor,
                                           "toString": act.assignee or act.actor}])
        ctx.store.record(ticket, Op.UPDATE, at=ctx.now, body={"assignee": act.assignee})
    elif act.action == "comment":
        _add_comment(ctx, ticket, act.text or "", False, act.actor)
        ctx.store.record(ticket, Op.COMMENT, at=ctx.now, body={"body": act.text})
    else:
        raise RequestRefusedError(_error(400, f"unknown action {act.action!r}"))
    return {"ticket": ticket.id, "status": ticket.status}


_auth = guarded(DeskCredentials.jira_ok, _error, "Client must be authenticated to access this resource.")
_KEY = r"/rest/servicedeskapi/request/(?P<key>[A-Za-z0-9-]+)"
_ISSUE = r"/rest/api/3/issue/(?P<key>[A-Za-z0-9-]+)"
_DESK = r"/rest/servicedeskapi/servicedesk/(?P<sd>\w+)"

JSM = DeskSpec(
    desk=Desk.JSM,
    routes=(
        route("POST", r"/rest/servicedeskapi/request", _auth(_create)),
        route("GET", _KEY, _auth(_show)),
        route("POST", _KEY + r"/comment", _auth(_comment)),
        route("GET", _KEY + r"/comment", _auth(_list_comments)),
        route("GET", _KEY + r"/transition", _auth(_list_customer_transitions)),
        route("POST", _KEY + r"/transition", _auth(_customer_transition)),
        route("POST", _KEY + r"/attachment", _auth(_attach)),
        route("GET", _ISSUE + r"/transitions", _auth(_issue_transitions)),
        route("POST", _ISSUE + r"/transitions", _auth(_do_issue_transition)),
        route("GET", _DESK + r"/requesttype/(?P<rt>\w+)/field", _auth(_request_type_fields)),
        route("POST", _DESK + r"/customer", _auth(_add_desk_customers)),
        route("POST", _DESK + r"/attachTemporaryFile", _auth(_temporary_file)),
        route("POST", r"/rest/servicedeskapi/customer", _auth(_create_customer)),
        route("GET", r"/rest/api/3/user/search", _auth(_user_search)),
        route("GET", r"/rest/api/3/myself", _auth(_myself)),
        route("GET", r"/rest/api/3/search/jql", _auth(_search_jql)),
        route("GET", r"/rest/api/3/search", _auth(_search_legacy)),
    ),
    error=_error,
)
