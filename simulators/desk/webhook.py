"""The generic signed webhook: ``POST /webhook``, a verifying Standard Webhooks receiver.

This is the receiver example of docs/bridge.md ("Webhook signing") as running code. In order:

1. ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` must be present; the timestamp
   within five minutes of the clock (**401** ``stale`` otherwise); the signature
   ``v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{raw body}")>`` must match (**401**);
2. an id already processed is a replay: **409** ``{"error": "replayed"}``, nothing applied (the ids
   are kept for :data:`REPLAY_MEMORY_S`, far beyond the timestamp window, so a sender's own late
   retry of the same id is recognised too);
3. the body ``{dedup_key, action: opened|updated|resolved, title, priority, ...}`` is applied and kept
   verbatim; the id is remembered only after it was applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from simulators.desk.auth import webhook_auth_error
from simulators.desk.errors import RequestRefusedError
from simulators.desk.exchange import SimRequest, SimResponse
from simulators.desk.routing import DeskContext, DeskSpec, json_object, route
from simulators.desk.store import Desk, Op, Ticket

__all__ = ["REPLAY_MEMORY_S", "WEBHOOK"]

REPLAY_MEMORY_S = 7 * 86_400.0
"""Processed ids are remembered a week: longer than any sender retries one event (the bridge gives up
after ``retry.max_attempts`` with a 300 s cap, about two and a half hours by default)."""

_REQUIRED = ("dedup_key", "action", "title", "priority")


class _Action(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    RESOLVED = "resolved"


def _error(status: int, message: str) -> SimResponse:
    codes = {400: "invalid_body", 401: "unauthorized", 404: "unknown_dedup_key", 409: "replayed", 429: "rate_limited"}
    return SimResponse.json(status, {"error": codes.get(status, "server_error"), "detail": message})


def _answer(status: int, ticket: Ticket) -> SimResponse:
    return SimResponse.json(status, {"id": ticket.id, "dedup_key": ticket.dedup_key, "status": ticket.status})


def _parse(request: SimRequest) -> tuple[_Action, dict[str, Any]]:
    body = json_object(request, _error)
    missing = [name for name in _REQUIRED if not isinstance(body.get(name), str) or not body[name]]
    if missing:
        raise RequestRefusedError(_error(400, f"missing or empty string field(s): {', '.join(missing)}"))
    try:
        action = _Action(body["action"])
    except ValueError as exc:
        raise RequestRefusedError(_error(400, f"action {body['action']!r} is not opened|updated|resolved")) from exc
    return action, body


def _apply(ctx: DeskContext, action: _Action, body: dict[str, Any]) -> SimResponse:
    dedup_key: str = body["dedup_key"]
    if action is _Action.OPENED:
        number = ctx.store.next_number("webhook")
        ticket = Ticket(desk=Desk.WEBHOOK, id=f"WH-{number}", status="open", created_at=ctx.now,
                        fields=dict(body), dedup_key=dedup_key)
        ctx.store.create(ticket, at=ctx.now, body=body)
        return _answer(201, ticket)
    candidates = [t for t in ctx.store.of_desk(Desk.WEBHOOK) if t.dedup_key == dedup_key]
    if not candidates:
        raise RequestRefusedError(_error(404, f"no ticket with dedup_key {dedup_key!r}; send action 'opened' first"))
    ticket = candidates[-1]
    if action is _Action.RESOLVED:
        op, ticket.status = Op.RESOLVE, "resolved"
    elif ticket.status == "resolved":
        op, ticket.status = Op.REOPEN, "open"
    else:
        op = Op.UPDATE
    ticket.fields.update(body)
    ctx.store.record(ticket, op, at=ctx.now, body=body)
    return _answer(200, ticket)


def _post(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    now = ctx.now.timestamp()
    refused = webhook_auth_error(request, ctx.credentials.webhook_secret, now)
    if refused is not None:
        raise RequestRefusedError(_error(401, refused))
    message_id = request.header("webhook-id") or ""
    if message_id in ctx.processed:
        raise RequestRefusedError(SimResponse.json(409, {"error": "replayed",
                                                         "detail": f"message {message_id!r} was already processed"}))
    action, body = _parse(request)
    answer = _apply(ctx, action, body)
    ctx.processed.add(message_id, now)
    return answer


WEBHOOK = DeskSpec(desk=Desk.WEBHOOK, routes=(route("POST", r"/webhook", _post),), error=_error)
