"""PagerDuty Events API v2: ``POST /v2/enqueue``.

Shapes from ``reference/desk-specs/pagerduty-events-v2.openapi.json`` (operation ``createV2Event``);
limits from PagerDuty's developer docs ``docs/events-API-v2/02-Trigger-Events.md`` (cited in SOURCES.md):
routing_key is a 32-character integration key, dedup_key ≤ 255 characters, payload.summary ≤ 1024
characters, payload.summary/source/severity required for trigger, image ``src`` must be HTTPS.

Incidents are *triggered*, *acknowledged* or *resolved*. A person acting on one (``/_sim/act``) makes
the simulator send a PagerDuty **webhook v3** to the subscribed URL (``POST /_sim/settings``
``pagerduty_webhook_url``): ``{"event": {"id", "event_type": "incident.acknowledged|resolved|reassigned|
annotated|triggered", "resource_type", "occurred_at", "agent", "data"}}`` signed
``X-PagerDuty-Signature: v1=<hex HMAC-SHA256(secret, body)>`` (PagerDuty's "Verifying Signatures").
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from simulators.desk.errors import RequestRefusedError
from simulators.desk.exchange import SimRequest, SimResponse
from simulators.desk.routing import DeskContext, DeskSpec, HumanAction, json_object, route
from simulators.desk.store import Desk, Op, Outgoing, Ticket

__all__ = ["PAGERDUTY", "person_acts", "webhook_signature"]

ROUTING_KEY_CHARS = 32
MAX_DEDUP_KEY_CHARS = 255
MAX_SUMMARY_CHARS = 1024
_ACTIONS = ("trigger", "acknowledge", "resolve")
_SEVERITIES = ("critical", "error", "warning", "info")
_OPEN = ("triggered", "acknowledged")


def _invalid(problems: list[str]) -> SimResponse:
    return SimResponse.json(400, {"status": "invalid event", "message": "Event object is invalid", "errors": problems})


def _error(status: int, message: str) -> SimResponse:
    if status == 400:
        return _invalid([message])
    return SimResponse.json(status, {"status": "error", "message": message})


def _problems(body: dict[str, Any], routing_key: str) -> list[str]:
    """Every reason the event is invalid (PagerDuty lists them all in ``errors``)."""
    problems: list[str] = []
    key = body.get("routing_key")
    if not isinstance(key, str) or len(key) != ROUTING_KEY_CHARS:
        problems.append(f"Length of 'routing_key' is incorrect (should be {ROUTING_KEY_CHARS} characters)")
    elif key != routing_key:
        problems.append("Invalid routing key")
    action = body.get("event_action")
    if action not in _ACTIONS:
        problems.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup = body.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= MAX_DEDUP_KEY_CHARS):
        problems.append(f"'dedup_key' must be a non-empty string of at most {MAX_DEDUP_KEY_CHARS} characters")
    if action in ("acknowledge", "resolve") and dedup is None:
        problems.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        problems.extend(_payload_problems(body.get("payload")))
    for image in body.get("images") or []:
        if not isinstance(image, dict) or not str(image.get("src", "")).startswith("https://"):
            problems.append("'images[].src' is required and must be an HTTPS URL")
    for link in body.get("links") or []:
        if not isinstance(link, dict) or not isinstance(link.get("href"), str):
            problems.append("'links[].href' is required")
    return problems


def _payload_problems(payload: object) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    problems: list[str] = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary:
        problems.append("'payload.summary' is missing or blank")
    elif len(summary) > MAX_SUMMARY_CHARS:
        problems.append(f"'payload.summary' is longer than {MAX_SUMMARY_CHARS} characters")
    if not isinstance(payload.get("source"), str) or not payload["source"]:
        problems.append("'payload.source' is missing or blank")
    if payload.get("severity") not in _SEVERITIES:
        problems.append("'payload.severity' is invalid (must be one of critical, error, warning, info)")
    return problems


def _open_incident(ctx: DeskContext, dedup_key: str) -> Ticket | None:
    for ticket in reversed(ctx.store.of_desk(Desk.PAGERDUTY)):
        if ticket.dedup_key == dedup_key and ticket.status in _OPEN:
            return ticket
    return None


def webhook_signature(secret: str, body: bytes) -> str:
    """The ``X-PagerDuty-Signature`` value: ``v1=`` + hex HMAC-SHA256 of the raw body."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _webhook(ctx: DeskContext, outgoing: Outgoing, incident: Ticket, event_type: str, *, actor: str | None,
             extra: dict[str, Any] | None = None) -> None:
    if outgoing.pagerduty_url is None:
        return
    number = incident.fields["incident_number"]
    incident_ref = {"id": f"Q{number:05d}", "type": "incident_reference", "summary": incident.fields.get("title", "")}
    data: dict[str, Any] = {
        "id": incident_ref["id"], "type": "incident", "number": number, "status": incident.status,
        "incident_key": incident.dedup_key, "title": incident.fields.get("title", ""),
        "assignees": [{"id": incident.fields.get("assignee", "PUNASSIGNED"), "type": "user_reference"}],
    }
    if event_type == "incident.annotated":
        data = {"type": "incident_note", "id": f"N{ctx.store.next_number('pd-note'):05d}", "incident": incident_ref,
                **(extra or {})}
    event = {"event": {"id": f"01{ctx.store.next_number('pd-event'):024d}", "event_type": event_type,
                       "resource_type": "incident", "occurred_at": ctx.now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                       "agent": None if actor is None else {"id": actor, "type": "user_reference", "summary": actor},
                       "client": None, "data": data}}
    body = json.dumps(event, separators=(",", ":")).encode()
    outgoing.send(outgoing.pagerduty_url, body, {
        "Content-Type": "application/json", "User-Agent": "PagerDuty-Webhook/V3.0",
        "X-PagerDuty-Signature": webhook_signature(ctx.credentials.pagerduty_webhook_secret, body)})


def person_acts(ctx: DeskContext, act: HumanAction, outgoing: Outgoing) -> dict[str, Any]:
    """A responder acts on an incident in PagerDuty; the v3 webhook goes out to the subscriber."""
    incident = ctx.store.get(Desk.PAGERDUTY, act.ticket_id)
    if incident is None:
        raise RequestRefusedError(_error(404, f"incident {act.ticket_id} not found"))
    if act.action in ("acknowledge", "resolve"):
        incident.status = "acknowledged" if act.action == "acknowledge" else "resolved"
        ctx.store.record(incident, Op.ACKNOWLEDGE if act.action == "acknowledge" else Op.RESOLVE, at=ctx.now,
                         body={"by": act.actor})
        _webhook(ctx, outgoing, incident, f"incident.{act.action}d", actor=act.actor)
    elif act.action == "reassign":
        incident.fields["assignee"] = act.assignee or act.actor
        ctx.store.record(incident, Op.UPDATE, at=ctx.now, body={"assignee": act.assignee, "by": act.actor})
        _webhook(ctx, outgoing, incident, "incident.reassigned", actor=act.actor)
    elif act.action == "comment":
        ctx.store.record(incident, Op.COMMENT, at=ctx.now, body={"note": act.text, "by": act.actor})
        _webhook(ctx, outgoing, incident, "incident.annotated", actor=act.actor, extra={"content": act.text or ""})
    else:
        raise RequestRefusedError(_error(400, f"unknown action {act.action!r}"))
    return {"ticket": incident.id, "status": incident.status}


def _enqueue(ctx: DeskContext, request: SimRequest, _params: Mapping[str, str]) -> SimResponse:
    body = json_object(request, _error)
    problems = _problems(body, ctx.credentials.pagerduty_routing_key)
    if problems:
        raise RequestRefusedError(_invalid(problems))
    action: str = body["event_action"]
    # PagerDuty generates a 32-hex key for a trigger without one; a counter keeps runs deterministic.
    dedup_key: str = body.get("dedup_key") or f"{ctx.store.next_number('pagerduty-dedup'):032x}"
    incident = _open_incident(ctx, dedup_key)
    if action == "trigger" and incident is None:
        number = ctx.store.next_number("pagerduty")
        fields = {"incident_number": number, "dedup_key": dedup_key, "alert_count": 1, "last_event": body,
                  "title": str(body.get("payload", {}).get("summary", ""))}
        incident = Ticket(desk=Desk.PAGERDUTY, id=f"PD-{number}", status="triggered", created_at=ctx.now,
                          fields=fields, dedup_key=dedup_key)
        ctx.store.create(incident, at=ctx.now, body=body)
    elif incident is not None:
        # An acknowledge/resolve for an unknown or already resolved key is accepted and ignored, as PagerDuty does.
        op = {"trigger": Op.UPDATE, "acknowledge": Op.ACKNOWLEDGE, "resolve": Op.RESOLVE}[action]
        incident.fields["last_event"] = body
        if action == "trigger":
            incident.fields["alert_count"] += 1
        else:
            incident.status = "acknowledged" if action == "acknowledge" else "resolved"
        ctx.store.record(incident, op, at=ctx.now, body=body)
    return SimResponse.json(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})


PAGERDUTY = DeskSpec(desk=Desk.PAGERDUTY, routes=(route("POST", r"/v2/enqueue", _enqueue),), error=_error)
