"""How a desk plugs into the simulator: its routes, its error shape, and the context its handlers get."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simulators.desk.auth import DeskCredentials
from simulators.desk.errors import RequestRefusedError
from simulators.desk.exchange import SimRequest, SimResponse
from simulators.desk.store import Desk, IdempotencyCache, ProcessedIds, TicketStore

__all__ = [
    "DeskContext", "DeskSpec", "ErrorShape", "Handler", "HumanAction", "Route", "guarded", "json_object", "route",
    "with_idempotency",
]


@dataclass(frozen=True)
class DeskContext:
    """Everything a desk handler may touch: the shared state and the time of this request.

    Attributes:
        store: tickets of all desks.
        idempotency: remembered first answers by Idempotency-Key.
        uploads: uploaded attachments by token (Zendesk), bounded by the owner.
        credentials: what the desks accept.
        now: the simulator clock for this request (UTC).
        processed: webhook message ids already applied (replays are refused).
    """

    store: TicketStore
    idempotency: IdempotencyCache
    uploads: dict[str, dict[str, Any]]
    credentials: DeskCredentials
    now: datetime
    processed: ProcessedIds


@dataclass(frozen=True)
class HumanAction:
    """What a person does to a ticket in a desk's UI (``/_sim/act``).

    Attributes:
        ticket_id: the desk's id of the ticket.
        action: ``acknowledge``, ``resolve``, ``reassign`` or ``comment``.
        actor: the person's id in the desk (``agent-4711``).
        text: the comment (``comment``).
        assignee: the new assignee (``reassign``; default the actor).
    """

    ticket_id: str
    action: str
    actor: str
    text: str | None = None
    assignee: str | None = None


Handler = Callable[[DeskContext, SimRequest, Mapping[str, str]], SimResponse]
"""A desk operation: context, request and the named groups of the path pattern → the answer."""

ErrorShape = Callable[[int, str], SimResponse]
"""A desk's error answer for a status and a message (used for auth, faults and validation)."""


@dataclass(frozen=True)
class Route:
    """One method + path pattern (anchored regex with named groups) served by ``handler``."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler


def route(method: str, pattern: str, handler: Handler) -> Route:
    """A route whose ``pattern`` must match the whole path."""
    return Route(method, re.compile(pattern + r"\Z"), handler)


@dataclass(frozen=True)
class DeskSpec:
    """One simulated desk.

    Attributes:
        desk: its name.
        routes: the operations it serves.
        error: how it shapes an error answer.
    """

    desk: Desk
    routes: tuple[Route, ...]
    error: ErrorShape

    def match(self, request: SimRequest) -> tuple[Route, dict[str, str]] | None:
        """The route serving this request's method and path, with the path's named groups."""
        for candidate in self.routes:
            if candidate.method != request.method:
                continue
            found = candidate.pattern.match(request.path)
            if found:
                return candidate, found.groupdict()
        return None


def guarded(check: Callable[[DeskCredentials, SimRequest], bool], error: ErrorShape, message: str) -> Callable[
    [Handler], Handler
]:
    """Decorate a handler so that it answers 401 (``error(401, message)``) unless ``check`` accepts the request."""

    def wrap(handler: Handler) -> Handler:
        def checked(ctx: DeskContext, request: SimRequest, params: Mapping[str, str]) -> SimResponse:
            if not check(ctx.credentials, request):
                raise RequestRefusedError(error(401, message))
            return handler(ctx, request, params)

        return checked

    return wrap


def json_object(request: SimRequest, error: ErrorShape) -> dict[str, Any]:
    """The request body parsed as a JSON object.

    Raises:
        RequestRefusedError: 400 in the desk's error shape if the body is not a JSON object.
    """
    try:
        value = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestRefusedError(error(400, f"body is not JSON: {exc}")) from exc
    if not isinstance(value, dict):
        raise RequestRefusedError(error(400, "body must be a JSON object"))
    return value


MAX_IDEMPOTENCY_KEY_CHARS = 255
"""Zendesk: an Idempotency-Key is 'any string up to 255 characters'; the webhook follows the same rule."""


def with_idempotency(
    ctx: DeskContext,
    request: SimRequest,
    *,
    scope: str,
    handle: Callable[[], SimResponse],
    error: ErrorShape,
    mismatch_status: int,
    hit_headers: Mapping[str, str],
    miss_headers: Mapping[str, str],
) -> SimResponse:
    """Run ``handle`` at most once per ``Idempotency-Key`` (per ``scope``) and replay its first answer.

    Only 2xx answers are remembered, so a request refused for a transient reason (unknown ticket not yet
    created, storage full) can be retried with the same key.

    Args:
        ctx: the desk context (idempotency cache, clock).
        request: the request; without an ``Idempotency-Key`` header ``handle`` simply runs.
        scope: separates the keys of different desks.
        handle: applies the request and returns its answer.
        error: the desk's error shape.
        mismatch_status: the status when the key was used before with a different body.
        hit_headers: headers added to a replayed answer.
        miss_headers: headers added to a first answer.

    Raises:
        RequestRefusedError: 400 for a key longer than 255 characters; ``mismatch_status`` for a reused key.
    """
    key = request.header("idempotency-key")
    if key is None:
        return handle()
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise RequestRefusedError(error(400, f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY_CHARS} characters"))
    remembered = ctx.idempotency.lookup(scope, key, request.body, ctx.now)
    if remembered is not None:
        if remembered.mismatch or remembered.response is None:
            raise RequestRefusedError(error(mismatch_status, "Idempotency-Key was already used with a different body"))
        return remembered.response.as_replay(hit_headers)
    answer = handle()
    if 200 <= answer.status < 300:
        ctx.idempotency.remember(scope, key, request.body, answer, ctx.now)
    return answer.with_headers(miss_headers)
