"""Zendesk Support tickets: create, show, update, comments, look up by external_id, uploads, users, ticket events.

Shapes from ``reference/desk-specs/zendesk-support.openapi.subset.json`` (POST /api/v2/tickets,
GET/PUT /api/v2/tickets/{ticket_id}); the Idempotency-Key rule (replay + ``x-idempotency-lookup``) from
Zendesk's ticketing introduction page, cited in SOURCES.md. Search and uploads follow Zendesk's
reference pages (``/api/v2/search.json``, ``/api/v2/uploads.json``, users, comments, the incremental
ticket-event export); their OpenAPI is not in the subset.

Strict where Zendesk is: a ``requester_id`` that names no user, or a ``requester`` without a valid
e-mail or phone, is refused (422); a *closed* ticket refuses every update (422). The API user (the
bridge) is user 1; comments it posts are authored by it, a person's (``/_sim/act``) by that person.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from simulators.desk.auth import DeskCredentials
from simulators.desk.errors import RequestRefusedError
from simulators.desk.exchange import SimRequest, SimResponse
from simulators.desk.routing import DeskContext, DeskSpec, HumanAction, guarded, json_object, route, with_idempotency
from simulators.desk.store import Desk, Op, Outgoing, Ticket

__all__ = ["AGENT_ID", "MAX_UPLOADS", "ZENDESK", "person_acts"]

AGENT_ID = 1
"""The API user's id (the bridge's agent account)."""

MAX_UPLOADS = 10_000
"""Upload tokens held (one PNG per ticket); beyond that the simulator answers 507 rather than grow."""

PER_PAGE = 100
"""Zendesk's default and maximum page size for list endpoints."""

_STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
_SOLVED = ("solved", "closed")
_PRIORITIES = ("urgent", "high", "normal", "low")
_NAMES = {400: "InvalidRequest", 404: "RecordNotFound", 422: "RecordInvalid",
          429: "APIRateLimitExceeded", 507: "InsufficientStorage"}
_SEARCH_TOKEN = re.compile(r'(\w+):("([^"]*)"|\S+)')


def _error(status: int, message: str, name: str | None = None) -> SimResponse:
    if status == 401:
        return SimResponse.json(401, {"error": "Couldn't authenticate you"})
    title = name or _NAMES.get(status, "InternalServerError")
    body: dict[str, Any] = {"error": title, "description": message}
    if status == 422:
        body = {"error": title, "description": "Record validation errors",
                "details": {"base": [{"description": message}]}}
    return SimResponse.json(status, body)


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ticket_input(request: SimRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """The whole body and its ``ticket`` object, validated."""
    body = json_object(request, _error)
    ticket = body.get("ticket")
    if not isinstance(ticket, dict):
        raise RequestRefusedError(_error(400, "body must be {\"ticket\": {...}}"))
    if "status" in ticket and ticket["status"] not in _STATUSES:
        raise RequestRefusedError(_error(422, f"Status: {ticket['status']!r} is not one of {', '.join(_STATUSES)}"))
    if "priority" in ticket and ticket["priority"] not in (*_PRIORITIES, None):
        allowed = ", ".join(_PRIORITIES)
        raise RequestRefusedError(_error(422, f"Priority: {ticket['priority']!r} is not one of {allowed}"))
    return body, ticket


def _comment(ctx: DeskContext, ticket_input: dict[str, Any], author: int = AGENT_ID) -> dict[str, Any] | None:
    comment = ticket_input.get("comment")
    if comment is None:
        return None
    if not isinstance(comment, dict) or not (comment.get("body") or comment.get("html_body")):
        raise RequestRefusedError(_error(422, "Comment: body cannot be blank"))
    tokens = comment.get("uploads") or []
    unknown = [t for t in tokens if t not in ctx.uploads]
    if unknown:
        raise RequestRefusedError(_error(422, f"Uploads: unknown upload token(s) {unknown}"))
    return {"id": ctx.store.next_number("zendesk-comment"), "body": comment.get("body") or comment.get("html_body"),
            "public": bool(comment.get("public", True)), "author_id": author, "created_at": _stamp(ctx.now),
            "attachments": [ctx.uploads[t] for t in tokens]}


def _requester(ctx: DeskContext, given: dict[str, Any]) -> int:
    users = _users(ctx)
    if "requester_id" in given:
        if str(given["requester_id"]) not in users:
            raise RequestRefusedError(_error(422, f"Requester: {given['requester_id']!r} is not a user"))
        return int(given["requester_id"])
    requester = given.get("requester")
    if requester is None:
        return AGENT_ID  # as Zendesk: without a requester the ticket is the agent's own
    if not isinstance(requester, dict) or not (str(requester.get("email", "")).count("@") == 1
                                               or requester.get("phone")):
        raise RequestRefusedError(_error(422, "Requester: Email is invalid (give email or phone)"))
    return _create_user(ctx, {k: requester.get(k) for k in ("name", "email", "phone")}, role="end-user")


def _create_user(ctx: DeskContext, user: dict[str, Any], *, role: str) -> int:
    users = _users(ctx)
    for existing in users.values():
        if user.get("email") and existing.get("email") == user["email"]:
            existing.update({k: v for k, v in user.items() if v})
            return int(existing["id"])
    number = 1000 + ctx.store.next_number("zendesk-user")
    users[str(number)] = {"id": number, "name": user.get("name") or user.get("email") or "unknown",
                          "email": user.get("email"), "phone": user.get("phone"), "role": role}
    return number


def _users(ctx: DeskContext) -> dict[str, dict[str, Any]]:
    users = ctx.store.table("zendesk_users")
    if str(AGENT_ID) not in users:
        users[str(AGENT_ID)] = {"id": AGENT_ID, "name": "pdm bridge", "email": ctx.credentials.zendesk_email,
                                "phone": None, "role": "agent"}
    return users


def _user_for(ctx: DeskContext, actor: str) -> int:
    """The id of the person ``actor`` (an agent), created on first use."""
    users = _users(ctx)
    for user in users.values():
        if user["name"] == actor:
            return int(user["id"])
    number = 1000 + ctx.store.next_number("zendesk-user")
    users[str(number)] = {"id": number, "name": actor, "email": f"{actor}@example.com", "phone": None, "role": "agent"}
    return number


def _event(ctx: DeskContext, ticket: Ticket, updater: int, children: list[dict[str, Any]]) -> None:
    for child in children:
        child["id"] = ctx.store.next_number("zendesk-child-event")
    ctx.store.add_event({"id": ctx.store.next_number("zendesk-event"), "ticket_id": int(ticket.id),
                         "updater_id": updater, "created_at": int(ctx.now.timestamp()), "child_events": children,
                         "event_type": "Audit"})


def _changes(before: dict[str, Any], given: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name in ("status", "assignee_id", "priority"):
        if name in given and given[name] != before.get(name):
            out.append({"event_type": "Change", "field_name": name, "value": given[name],
                        "previous_value": before.get(name)})
    return out


def _public(ticket: Ticket, request: SimRequest) -> dict[str, Any]:
    host = request.header("host") or "localhost"
    return {**ticket.fields, "url": f"http://{host}/api/v2/tickets/{ticket.id}.json"}


def _find(ctx: DeskContext, ticket_id: str) -> Ticket:
    ticket = ctx.store.get(Desk.ZENDESK, ticket_id.removesuffix(".json"))
    if ticket is None:
        raise RequestRefusedError(_error(404, "Not found"))
    return ticket


def _create(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    def handle() -> SimResponse:
        body, given = _ticket_input(request)
        comment = _comment(ctx, given)
        if comment is None:
            raise RequestRefusedError(_error(422, "Description: cannot be blank (ticket.comment is required)"))
        requester_id = _requester(ctx, given)
        follow_up = given.get("via_followup_source_id")
        if follow_up is not None:
            source = ctx.store.get(Desk.ZENDESK, str(follow_up))
            if source is None or source.status != "closed":
                raise RequestRefusedError(_error(422, "via_followup_source_id: only a closed ticket takes follow-ups"))
        number = ctx.store.next_number("zendesk")
        fields = {key: value for key, value in given.items() if key not in ("comment", "requester")}
        fields.update({"id": number, "description": comment["body"], "status": given.get("status", "new"),
                       "requester_id": requester_id, "submitter_id": AGENT_ID,
                       "priority": given.get("priority"), "subject": given.get("subject"),
                       "external_id": given.get("external_id"), "tags": given.get("tags", []),
                       "created_at": _stamp(ctx.now), "updated_at": _stamp(ctx.now)})
        ticket = Ticket(desk=Desk.ZENDESK, id=str(number), status=fields["status"], created_at=ctx.now,
                        fields=fields, external_id=given.get("external_id"), comments=[comment])
        ctx.store.create(ticket, at=ctx.now, body=body)
        _event(ctx, ticket, AGENT_ID, [{"event_type": "Create"},
                                       {"event_type": "Comment", "body": comment["body"], "public": comment["public"],
                                        "author_id": AGENT_ID}])
        return SimResponse.json(201, {"ticket": _public(ticket, request)},
                                headers={"Location": f"/api/v2/tickets/{number}.json"})

    return with_idempotency(
        ctx, request, scope="zendesk", handle=handle,
        error=lambda status, message: _error(status, message, "IdempotentRequestError"), mismatch_status=400,
        hit_headers={"x-idempotency-lookup": "hit"}, miss_headers={"x-idempotency-lookup": "miss"},
    )


def _show(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    return SimResponse.json(200, {"ticket": _public(_find(ctx, params["id"]), request)})


def _update(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    ticket = _find(ctx, params["id"])
    body, given = _ticket_input(request)
    ticket = _apply_update(ctx, ticket, body, given, AGENT_ID)
    audit = ticket.fields.pop("_audit")
    return SimResponse.json(200, {"ticket": _public(ticket, request), "audit": audit})


def _apply_update(ctx: DeskContext, ticket: Ticket, body: Any, given: dict[str, Any], author: int) -> Ticket:
    if ticket.status == "closed":
        raise RequestRefusedError(_error(422, "Status: closed prevents ticket update"))
    comment = _comment(ctx, given, author)
    changes = _changes({**ticket.fields, "status": ticket.status}, given)
    before = ticket.status
    after: str = given.get("status", before)
    if after in _SOLVED:
        op = Op.RESOLVE
    elif before in _SOLVED:
        op = Op.REOPEN
    elif set(given) == {"comment"}:
        op = Op.COMMENT
    else:
        op = Op.UPDATE
    if comment is not None:
        ticket.comments.append(comment)
    ticket.fields.update({key: value for key, value in given.items() if key != "comment"})
    ticket.fields["updated_at"] = _stamp(ctx.now)
    ticket.status = after
    if "external_id" in given:
        ticket.external_id = given["external_id"]
    ctx.store.record(ticket, op, at=ctx.now, body=body)
    children = [*changes]
    if comment is not None:
        children.append({"event_type": "Comment", "body": comment["body"], "public": comment["public"],
                         "author_id": author})
    _event(ctx, ticket, author, children)
    ticket.fields["_audit"] = {"id": ctx.store.next_number("zendesk-audit"), "ticket_id": int(ticket.id),
                               "created_at": _stamp(ctx.now),
                               "events": [{"type": "Comment", **comment}] if comment else []}
    return ticket


def _list_comments(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
    ticket = _find(ctx, params["id"])
    return SimResponse.json(200, {"comments": ticket.comments[:PER_PAGE], "count": len(ticket.comments),
                                  "next_page": None, "previous_page": None})


def _me(ctx: DeskContext, _request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    return SimResponse.json(200, {"user": _users(ctx)[str(AGENT_ID)]})


def _search_users(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    query = (request.param("query") or "").strip().lower()
    keep = [u for u in _users(ctx).values() if query and query in (str(u.get("email") or "").lower(),
                                                                    str(u.get("phone") or "").lower())]
    return SimResponse.json(200, {"users": keep, "count": len(keep), "next_page": None, "previous_page": None})


def _create_or_update_user(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    body = json_object(request, _error)
    user = body.get("user")
    if not isinstance(user, dict) or not (str(user.get("email", "")).count("@") == 1 or user.get("phone")):
        raise RequestRefusedError(_error(422, "User: give a valid email or a phone"))
    if not user.get("name"):
        raise RequestRefusedError(_error(422, "Name: cannot be blank"))
    existed = any(user.get("email") and u.get("email") == user["email"] for u in _users(ctx).values())
    number = _create_user(ctx, user, role=str(user.get("role") or "end-user"))
    return SimResponse.json(200 if existed else 201, {"user": _users(ctx)[str(number)]})


def _ticket_events(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    raw = request.param("start_time") or ""
    if not raw.isdigit():
        raise RequestRefusedError(_error(400, "start_time (epoch seconds) is required"))
    start = int(raw)
    events = [e for e in ctx.store.events if e["created_at"] >= start][:1000]
    end = events[-1]["created_at"] if events else start
    return SimResponse.json(200, {"ticket_events": events, "count": len(events), "end_time": end,
                                  "end_of_stream": True, "next_page": None})


def person_acts(ctx: DeskContext, act: HumanAction, _outgoing: Outgoing) -> dict[str, Any]:
    """An agent acts on a ticket in Zendesk's UI."""
    ticket = _find(ctx, act.ticket_id)
    who = _user_for(ctx, act.actor)
    given: dict[str, Any]
    if act.action == "acknowledge":
        given = {"status": "open", "assignee_id": who}
    elif act.action == "resolve":
        given = {"status": "solved", "comment": {"body": act.text or "Repaired on site.", "public": False}}
    elif act.action == "reassign":
        given = {"assignee_id": _user_for(ctx, act.assignee) if act.assignee else who}
    elif act.action == "comment":
        given = {"comment": {"body": act.text or "", "public": False}}
    else:
        raise RequestRefusedError(_error(400, f"unknown action {act.action!r}"))
    _apply_update(ctx, ticket, {"ticket": given, "by": act.actor}, given, who)
    ticket.fields.pop("_audit", None)
    return {"ticket": ticket.id, "status": ticket.status}


def _page(request: SimRequest, keep: list[Ticket]) -> list[dict[str, Any]]:
    return [_public(t, request) for t in keep[:PER_PAGE]]


def _list(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    external_id = request.param("external_id")
    keep = [t for t in ctx.store.of_desk(Desk.ZENDESK) if external_id is None or t.external_id == external_id]
    return SimResponse.json(200, {"tickets": _page(request, keep), "count": len(keep),
                                  "next_page": None, "previous_page": None})


def _search(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    query = request.param("query") or ""
    keep = ctx.store.of_desk(Desk.ZENDESK)
    for found in _SEARCH_TOKEN.finditer(query):
        name, value = found.group(1), found.group(3) if found.group(3) is not None else found.group(2)
        if name == "type" and value == "ticket":
            continue
        if name == "external_id":
            keep = [t for t in keep if t.external_id == value]
        elif name == "status":
            keep = [t for t in keep if t.status == value]
        elif name in ("tags", "tag"):
            keep = [t for t in keep if value in t.fields.get("tags", [])]
        else:
            raise RequestRefusedError(_error(400, f"the simulator's search understands type:ticket, external_id:, "
                                            f"status:, tags: — not {name}:", "InvalidSearch"))
    results = [{**item, "result_type": "ticket"} for item in _page(request, keep)]
    return SimResponse.json(200, {"results": results, "count": len(keep), "next_page": None, "previous_page": None})


def _upload(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    filename = request.param("filename")
    if not filename:
        raise RequestRefusedError(_error(400, "the filename query parameter is required"))
    if len(ctx.uploads) >= MAX_UPLOADS:
        raise RequestRefusedError(_error(507, f"the simulator holds {MAX_UPLOADS} uploads; POST /_sim/reset"))
    number = ctx.store.next_number("zendesk-upload")
    token = f"upload-token-{number:06d}"
    attachment = {"id": number, "file_name": filename, "size": len(request.body),
                  "content_type": request.header("content-type") or "application/binary"}
    ctx.uploads[token] = attachment
    return SimResponse.json(201, {"upload": {"token": token, "attachment": attachment, "attachments": [attachment]}})


_auth = guarded(DeskCredentials.zendesk_ok, _error, "Couldn't authenticate you")

ZENDESK = DeskSpec(
    desk=Desk.ZENDESK,
    routes=(
        route("POST", r"/api/v2/tickets(?:\.json)?", _auth(_create)),
        route("GET", r"/api/v2/tickets(?:\.json)?", _auth(_list)),
        route("GET", r"/api/v2/tickets/(?P<id>\d+(?:\.json)?)", _auth(_show)),
        route("PUT", r"/api/v2/tickets/(?P<id>\d+(?:\.json)?)", _auth(_update)),
        route("GET", r"/api/v2/tickets/(?P<id>\d+)/comments(?:\.json)?", _auth(_list_comments)),
        route("GET", r"/api/v2/search(?:\.json)?", _auth(_search)),
        route("POST", r"/api/v2/uploads(?:\.json)?", _auth(_upload)),
        route("GET", r"/api/v2/users/me(?:\.json)?", _auth(_me)),
        route("GET", r"/api/v2/users/search(?:\.json)?", _auth(_search_users)),
        route("POST", r"/api/v2/users/create_or_update(?:\.json)?", _auth(_create_or_update_user)),
        route("GET", r"/api/v2/incremental/ticket_events(?:\.json)?", _auth(_ticket_events)),
    ),
    error=_error,
)
