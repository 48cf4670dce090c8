"""Zendesk Support tickets: create, show, update, look up by external_id, upload attachments.

Shapes from ``reference/desk-specs/zendesk-support.openapi.subset.json`` (POST /api/v2/tickets,
GET/PUT /api/v2/tickets/{ticket_id}); the Idempotency-Key rule (replay + ``x-idempotency-lookup``) from
Zendesk's ticketing introduction page, cited in SOURCES.md. Search and uploads follow Zendesk's
reference pages (``/api/v2/search.json``, ``/api/v2/uploads.json``); their OpenAPI is not in the subset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from simulators.desk.auth import DeskCredentials
from simulators.desk.errors import RequestRefusedError
from simulators.desk.exchange import SimRequest, SimResponse
from simulators.desk.routing import DeskContext, DeskSpec, guarded, json_object, route, with_idempotency
from simulators.desk.store import Desk, Op, Ticket

__all__ = ["MAX_UPLOADS", "ZENDESK"]

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


def _comment(ctx: DeskContext, ticket_input: dict[str, Any]) -> dict[str, Any] | None:
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
            "public": bool(comment.get("public", True)), "created_at": _stamp(ctx.now),
            "attachments": [ctx.uploads[t] for t in tokens]}


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
        number = ctx.store.next_number("zendesk")
        fields = {key: value for key, value in given.items() if key != "comment"}
        fields.update({"id": number, "description": comment["body"], "status": given.get("status", "new"),
                       "priority": given.get("priority"), "subject": given.get("subject"),
                       "external_id": given.get("external_id"), "tags": given.get("tags", []),
                       "created_at": _stamp(ctx.now), "updated_at": _stamp(ctx.now)})
        ticket = Ticket(desk=Desk.ZENDESK, id=str(number), status=fields["status"], created_at=ctx.now,
                        fields=fields, external_id=given.get("external_id"), comments=[comment])
        ctx.store.create(ticket, at=ctx.now, body=body)
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
    if ticket.status == "closed":
        raise RequestRefusedError(_error(422, "Status: closed prevents ticket update"))
    comment = _comment(ctx, given)
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
    audit = {"id": ctx.store.next_number("zendesk-audit"), "ticket_id": int(ticket.id),
             "created_at": _stamp(ctx.now), "events": [{"type": "Comment", **comment}] if comment else []}
    return SimResponse.json(200, {"ticket": _public(ticket, request), "audit": audit})


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
        route("GET", r"/api/v2/search(?:\.json)?", _auth(_search)),
        route("POST", r"/api/v2/uploads(?:\.json)?", _auth(_upload)),
    ),
    error=_error,
)
