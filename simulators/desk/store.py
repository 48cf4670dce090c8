"""In-memory desk state: tickets with their operation history, idempotency keys, the request log.

Plain data structures without locking; :class:`simulators.desk.app.DeskApp` serialises access.
Every collection is bounded: tickets and history refuse with 507 beyond their cap (a simulator must never
silently lose what a test counts), idempotency keys expire and the oldest are forgotten, the request log
keeps the most recent entries.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from simulators.desk.errors import RequestRefusedError
from simulators.desk.exchange import SimRequest, SimResponse

__all__ = [
    "Desk",
    "IdempotencyCache",
    "IdempotencyHit",
    "Op",
    "Operation",
    "Outgoing",
    "ProcessedIds",
    "RequestLog",
    "Ticket",
    "TicketStore",
]

MAX_TICKETS = 50_000
"""A long demo run opens a few thousand tickets; fifty thousand bounds memory at a few hundred MB worst case."""

MAX_OPS_PER_TICKET = 10_000
"""One alert sees tens of updates in its life; ten thousand means a client is looping."""

IDEMPOTENCY_TTL = timedelta(hours=2)
"""Zendesk: 'Idempotency keys expire after two hours' (developer.zendesk.com, ticketing introduction)."""

MAX_IDEMPOTENCY_KEYS = 10_000
"""Keys of the last two hours at the benchmark's 200 tickets/s would exceed this; the oldest go first."""

MAX_REQUEST_LOG = 2_000
"""Recent requests kept for /_sim/requests: enough for any test, bounded for long demos."""

MAX_LOGGED_BODY = 32 * 1024
"""Request bodies kept in the log for validation against the vendors' descriptions; longer ones are cut and
marked ``body_truncated`` (a ticket brief is a few KiB)."""

MAX_EVENTS = 20_000
"""Change events kept for incremental exports."""


class Desk(StrEnum):
    """The desks the simulator speaks."""

    WEBHOOK = "webhook"
    PAGERDUTY = "pagerduty"
    ZENDESK = "zendesk"
    JSM = "jsm"
    SERVICENOW = "servicenow"


class Op(StrEnum):
    """What one request did to a ticket."""

    CREATE = "create"
    UPDATE = "update"
    COMMENT = "comment"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    REOPEN = "reopen"


@dataclass(frozen=True)
class Operation:
    """One applied operation: its kind, when, and the parsed request body that caused it."""

    op: Op
    at: datetime
    body: Any

    def to_json(self) -> dict[str, Any]:
        """The ``/_sim/tickets`` history entry."""
        return {"op": self.op.value, "at": self.at.isoformat(), "body": self.body}


@dataclass
class Ticket:
    """A ticket (incident, request, record) held by one desk.

    Attributes:
        desk: which desk holds it.
        id: the desk's id (``WH-1``, a PagerDuty incident key, Zendesk number, ``PDM-1``, sys_id).
        status: the desk's own status word.
        created_at: when it was created (simulator clock).
        fields: the desk's current representation of the ticket, answered on GET.
        dedup_key: webhook / PagerDuty dedup key.
        external_id: Zendesk external_id.
        correlation_id: ServiceNow correlation_id.
        labels: Jira labels.
        comments: comments in order, desk-shaped.
        history: every operation applied, in order.
    """

    desk: Desk
    id: str
    status: str
    created_at: datetime
    fields: dict[str, Any]
    dedup_key: str | None = None
    external_id: str | None = None
    correlation_id: str | None = None
    labels: tuple[str, ...] = ()
    comments: list[dict[str, Any]] = field(default_factory=list)
    history: list[Operation] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``/_sim/tickets`` entry."""
        return {
            "desk": self.desk.value,
            "id": self.id,
            "dedup_key": self.dedup_key,
            "external_id": self.external_id,
            "correlation_id": self.correlation_id,
            "labels": list(self.labels),
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "fields": {k: v for k, v in self.fields.items() if not k.startswith("_")},
            "comments": self.comments,
            "history": [op.to_json() for op in self.history],
        }


def _storage_full(what: str) -> RequestRefusedError:
    return RequestRefusedError(SimResponse.json(507, {"error": "insufficient_storage", "detail": what}))


class TicketStore:
    """Tickets of all desks, in creation order, with per-desk sequence numbers, plus the desks' own records
    (users, customers, configuration items) by table.

    Attributes:
        search_lag_s: how long a new Jira issue stays invisible to search (eventual consistency).
    """

    def __init__(self, search_lag_s: float = 0.0, instance_salt: int = 0) -> None:
        self._tickets: dict[tuple[Desk, str], Ticket] = {}
        self._counters: dict[str, int] = {}
        self.search_lag_s = search_lag_s
        self.instance_salt = instance_salt
        """Varies per simulated instance what real instances vary (Jira transition ids)."""
        self.records: dict[str, dict[str, dict[str, Any]]] = {}
        """Other records by table then id (``sys_user``, ``cmdb_ci``, ``zendesk_users``, ``jira_users`` …)."""
        self.events: list[dict[str, Any]] = []
        """Change events for incremental exports (Zendesk ticket events), oldest first, bounded."""

    def table(self, name: str) -> dict[str, dict[str, Any]]:
        """The records of ``name`` (created empty on first use)."""
        return self.records.setdefault(name, {})

    def add_event(self, event: dict[str, Any]) -> None:
        """Append a change event; the oldest fall off beyond ``MAX_EVENTS``."""
        self.events.append(event)
        if len(self.events) > MAX_EVENTS:
            del self.events[: len(self.events) - MAX_EVENTS]

    def next_number(self, counter: str) -> int:
        """The next value (1, 2, …) of a named sequence (ticket numbers, comment ids, tokens)."""
        value = self._counters.get(counter, 0) + 1
        self._counters[counter] = value
        return value

    def create(self, ticket: Ticket, *, at: datetime, body: Any) -> Ticket:
        """Store a new ticket and record its ``create`` operation.

        Raises:
            RequestRefusedError: 507 when ``MAX_TICKETS`` are held.
        """
        if len(self._tickets) >= MAX_TICKETS:
            raise _storage_full(f"the simulator holds {MAX_TICKETS} tickets; POST /_sim/reset")
        ticket.history.append(Operation(Op.CREATE, at, body))
        self._tickets[(ticket.desk, ticket.id)] = ticket
        return ticket

    def record(self, ticket: Ticket, op: Op, *, at: datetime, body: Any) -> None:
        """Append an operation to a ticket's history.

        Raises:
            RequestRefusedError: 507 when the ticket already has ``MAX_OPS_PER_TICKET`` operations.
        """
        if len(ticket.history) >= MAX_OPS_PER_TICKET:
            raise _storage_full(f"ticket {ticket.id} has {MAX_OPS_PER_TICKET} operations")
        ticket.history.append(Operation(op, at, body))

    def get(self, desk: Desk, ticket_id: str) -> Ticket | None:
        """The ticket of ``desk`` with ``ticket_id``, or None."""
        return self._tickets.get((desk, ticket_id))

    def of_desk(self, desk: Desk) -> list[Ticket]:
        """All tickets of ``desk`` in creation order."""
        return [t for t in self._tickets.values() if t.desk is desk]

    def all(self) -> list[Ticket]:
        """All tickets in creation order."""
        return list(self._tickets.values())

    def __len__(self) -> int:
        return len(self._tickets)


@dataclass(frozen=True)
class IdempotencyHit:
    """The outcome of an idempotency lookup: the stored answer, or a body mismatch."""

    response: SimResponse | None
    mismatch: bool


@dataclass(frozen=True)
class _Remembered:
    digest: str
    response: SimResponse
    at: datetime


class IdempotencyCache:
    """First answers by (scope, Idempotency-Key), compared by a digest of the raw body."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, str], _Remembered] = OrderedDict()

    @staticmethod
    def _digest(body: bytes) -> str:
        return hashlib.sha256(body).hexdigest()

    def lookup(self, scope: str, key: str, body: bytes, now: datetime) -> IdempotencyHit | None:
        """The remembered answer for ``key`` (None if unseen or expired; ``mismatch`` if the body differs)."""
        self._expire(now)
        entry = self._entries.get((scope, key))
        if entry is None:
            return None
        if entry.digest != self._digest(body):
            return IdempotencyHit(response=None, mismatch=True)
        return IdempotencyHit(response=entry.response, mismatch=False)

    def remember(self, scope: str, key: str, body: bytes, response: SimResponse, now: datetime) -> None:
        """Remember the first answer to ``key``; the oldest key is forgotten beyond ``MAX_IDEMPOTENCY_KEYS``."""
        self._entries[(scope, key)] = _Remembered(self._digest(body), response, now)
        while len(self._entries) > MAX_IDEMPOTENCY_KEYS:
            self._entries.popitem(last=False)

    def _expire(self, now: datetime) -> None:
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if now - oldest.at < IDEMPOTENCY_TTL:
                return
            self._entries.popitem(last=False)


class ProcessedIds:
    """Webhook message ids already applied, remembered ``memory_s`` (bounded: the oldest go first).

    Recorded only after the message was applied, so a message that failed (a 404 for an unknown
    ticket) can be retried under the same id.
    """

    def __init__(self, memory_s: float, max_ids: int = 100_000) -> None:
        self._memory_s = memory_s
        self._max_ids = max_ids
        self._ids: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def add(self, message_id: str, now_s: float) -> None:
        """Remember ``message_id`` as applied at ``now_s``."""
        self._ids[message_id] = now_s
        while self._ids:
            oldest, at = next(iter(self._ids.items()))
            if now_s - at <= self._memory_s and len(self._ids) <= self._max_ids:
                break
            del self._ids[oldest]


class RequestLog:
    """The most recent requests and what the simulator answered."""

    def __init__(self, maxlen: int = MAX_REQUEST_LOG) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)

    def add(self, *, at: datetime, request: SimRequest, desk: Desk | None, status: int | None, outcome: str) -> None:
        """Append one entry with the request's query and (JSON or text) body (the oldest falls off beyond the bound)."""
        ctype = request.header("content-type") or ""
        textual = not request.body or "json" in ctype or ctype.startswith("text/")
        body = request.body[:MAX_LOGGED_BODY].decode("utf-8", errors="replace") if textual else None
        self._entries.append({"at": at.isoformat(), "method": request.method, "path": request.path,
                              "query": {k: list(v) for k, v in request.query.items()}, "content_type": ctype,
                              "body": body, "body_bytes": len(request.body),
                              "body_truncated": len(request.body) > MAX_LOGGED_BODY,
                              "headers": {k: v for k, v in request.headers.items() if k.startswith("webhook-")},
                              "desk": desk.value if desk else None, "status": status, "outcome": outcome})

    def recent(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Entries oldest first; the last ``limit`` if given."""
        items = list(self._entries)
        return items if limit is None else items[-limit:] if limit > 0 else []

    def __len__(self) -> int:
        return len(self._entries)


class Outgoing:
    """Webhooks the simulated desks send (PagerDuty v3) until the socket shell delivers them. Bounded."""

    def __init__(self) -> None:
        self.pagerduty_url: str | None = None
        self._queue: deque[tuple[str, bytes, dict[str, str]]] = deque(maxlen=MAX_REQUEST_LOG)

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        """Queue one POST."""
        self._queue.append((url, body, headers))

    def take(self) -> list[tuple[str, bytes, dict[str, str]]]:
        """Everything queued, oldest first (the queue is emptied)."""
        items = list(self._queue)
        self._queue.clear()
        return items

    def clear(self) -> None:
        """Forget what is queued."""
        self._queue.clear()
