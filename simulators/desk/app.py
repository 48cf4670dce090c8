"""The simulator's decisions: route a request, inject a fault, apply it to a desk, answer.

:class:`DeskApp` is thread-safe (one lock around every decision; handlers are short and in memory) and
does no I/O: it returns a :class:`Plan` that the socket shell in ``server.py`` carries out (wait, then
answer or drop the connection). The clock is passed in with every request.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pdm_common.logs import get_logger
from simulators.desk.auth import DeskCredentials
from simulators.desk.errors import FaultConfigError, RequestRefusedError
from simulators.desk.exchange import SimRequest, SimResponse
from simulators.desk.faults import FaultConfig, FaultPlan, Outcome, OutcomeKind, parse_outcome
from simulators.desk.humans import HUMAN_ACTIONS, HumanAction
from simulators.desk.jsm import JSM
from simulators.desk.pagerduty import PAGERDUTY
from simulators.desk.routing import DeskContext, DeskSpec, Route
from simulators.desk.servicenow import SERVICENOW
from simulators.desk.store import Desk, IdempotencyCache, Outgoing, ProcessedIds, RequestLog, TicketStore
from simulators.desk.webhook import REPLAY_MEMORY_S, WEBHOOK
from simulators.desk.zendesk import ZENDESK

__all__ = ["ALL_DESKS", "DeskApp", "Plan"]

ALL_DESKS: tuple[DeskSpec, ...] = (WEBHOOK, PAGERDUTY, ZENDESK, JSM, SERVICENOW)
SIM_PREFIX = "/_sim/"
MAX_SEARCH_LAG_S = 600.0
"""Jira's index lags seconds in practice; ten minutes bounds a test's typo."""
_log = get_logger(__name__)


@dataclass(frozen=True)
class Plan:
    """What the socket shell must do with one request.

    Attributes:
        response: the answer to write, or None to close the connection without answering.
        delay_s: how long to wait before answering or dropping (added latency, plus the hold of a 'timeout').
    """

    response: SimResponse | None
    delay_s: float = 0.0


def _sim_error(status: int, message: str) -> SimResponse:
    return SimResponse.json(status, {"error": "invalid_request", "detail": message})


class DeskApp:
    """All simulated desks behind one router, with fault injection and the ``/_sim`` control API.

    Args:
        credentials: what the desks accept.
        faults: the start-up fault switches (``/_sim/reset`` returns to them).
        seed: the start-up seed of the random fault draws.
        desks: the desks served.
    """

    def __init__(
        self,
        *,
        credentials: DeskCredentials | None = None,
        faults: FaultConfig | None = None,
        seed: int = 0,
        desks: Iterable[DeskSpec] = ALL_DESKS,
    ) -> None:
        self._credentials = credentials or DeskCredentials()
        self._initial_faults = faults or FaultConfig()
        self._initial_seed = seed
        self._desks = tuple(desks)
        self._lock = threading.Lock()
        self._store = TicketStore(instance_salt=seed)
        self._idempotency = IdempotencyCache()
        self._processed = ProcessedIds(REPLAY_MEMORY_S)
        self._uploads: dict[str, dict[str, Any]] = {}
        self._requests = RequestLog()
        self._faults = FaultPlan(self._initial_faults, seed=seed)
        self.outgoing = Outgoing()
        """Webhooks the desks send out (PagerDuty v3), delivered by the socket shell."""

    # -- control -----------------------------------------------------------------------------------

    def set_faults(self, config: FaultConfig) -> None:
        """Replace the fault switches (the forced queue and the random sequence are kept)."""
        with self._lock:
            self._faults.config = config
        _log.info("desk_sim.faults_set", **config.to_json())

    def fail_next(self, outcomes: Iterable[Outcome | Mapping[str, Any]]) -> None:
        """Replace the queue of forced outcomes (``{"status": 429, "retry_after": 1}``, ``{"outcome": "drop"}``…).

        Raises:
            FaultConfigError: an entry is not a documented form, or the queue is too long.
        """
        parsed = [o if isinstance(o, Outcome) else parse_outcome(o) for o in outcomes]
        with self._lock:
            self._faults.force(parsed)

    def reset(self) -> None:
        """Forget tickets, requests, idempotency keys and uploads; faults and seed back to start-up."""
        with self._lock:
            self._store = TicketStore(search_lag_s=self._store.search_lag_s, instance_salt=self._initial_seed)
            self._idempotency = IdempotencyCache()
            self._processed = ProcessedIds(REPLAY_MEMORY_S)
            self._uploads = {}
            self._requests = RequestLog()
            self.outgoing.clear()
            self._faults = FaultPlan(self._initial_faults, seed=self._initial_seed)
        _log.info("desk_sim.reset")

    def tickets(self, desk: Desk | None = None) -> dict[str, Any]:
        """Every ticket (of ``desk`` if given) with its history, as ``GET /_sim/tickets`` answers it."""
        with self._lock:
            held = self._store.all() if desk is None else self._store.of_desk(desk)
            # Copy under the lock: a concurrent request may be changing a ticket's fields or history.
            return {"tickets": copy.deepcopy([t.to_json() for t in held])}

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The most recent requests, oldest first."""
        with self._lock:
            return self._requests.recent(limit)

    def fault_state(self) -> dict[str, Any]:
        """The fault switches, the forced queue and the seed."""
        with self._lock:
            return {"faults": self._faults.config.to_json(), "fail_next": [o.to_json() for o in self._faults.forced()],
                    "seed": self._faults.seed}

    # -- requests ----------------------------------------------------------------------------------

    def act(self, desk: Desk, ticket_id: str, action: str, *, actor: str, now: datetime, text: str | None = None,
            assignee: str | None = None) -> dict[str, Any]:
        """Do what a person does in the desk's UI: acknowledge, resolve, reassign or comment.

        Raises:
            RequestRefusedError: unknown desk, ticket or action (a 4xx answer).
        """
        handler = HUMAN_ACTIONS.get(desk)
        if handler is None:
            raise RequestRefusedError(_sim_error(400, f"desk {desk.value} has no person-side actions"))
        with self._lock:
            ctx = DeskContext(store=self._store, idempotency=self._idempotency, uploads=self._uploads,
                              credentials=self._credentials, now=now, processed=self._processed)
            result = handler(ctx, HumanAction(ticket_id=ticket_id, action=action, actor=actor, text=text,
                                              assignee=assignee), self.outgoing)
        _log.info("desk_sim.person_acted", desk=desk.value, ticket=ticket_id, action=action, actor=actor)
        return result

    def add_record(self, table: str, fields: Mapping[str, str]) -> str:
        """Add a record to a ServiceNow table the incident's references point to; returns its sys_id."""
        with self._lock:
            records = self._store.table(f"sn_{table}")
            sys_id = hashlib.sha256(f"{table}-seed-{len(records)}".encode()).hexdigest()[:32]
            records[sys_id] = {**fields, "sys_id": sys_id}
        return sys_id

    def set_settings(self, *, search_lag_s: float | None = None, pagerduty_webhook_url: str | None = None) -> None:
        """Jira search lag (eventual consistency) and where PagerDuty's v3 webhooks go."""
        with self._lock:
            if search_lag_s is not None:
                if not 0 <= search_lag_s <= MAX_SEARCH_LAG_S:
                    raise FaultConfigError(f"search_lag_s={search_lag_s!r}: between 0 and {MAX_SEARCH_LAG_S:.0f}")
                self._store.search_lag_s = search_lag_s
            if pagerduty_webhook_url is not None:
                self.outgoing.pagerduty_url = pagerduty_webhook_url or None

    def _act(self, request: SimRequest, now: datetime) -> SimResponse:
        try:
            body = json.loads(request.body or b"{}")
            if not isinstance(body, dict) or not isinstance(body.get("desk"), str):
                raise ValueError("body must be {desk, ticket, action, actor[, text, assignee]}")
            result = self.act(Desk(body["desk"]), str(body.get("ticket", "")), str(body.get("action", "")),
                              actor=str(body.get("actor", "agent")), now=now, text=body.get("text"),
                              assignee=body.get("assignee"))
        except RequestRefusedError as refused:
            return refused.response
        except ValueError as exc:
            return _sim_error(400, str(exc))
        return SimResponse.json(200, result)

    def _post_settings(self, request: SimRequest) -> SimResponse:
        try:
            body = json.loads(request.body or b"{}")
            if not isinstance(body, dict):
                raise FaultConfigError("the body must be a JSON object")
            lag = body.get("search_lag_s")
            self.set_settings(search_lag_s=None if lag is None else float(lag),
                              pagerduty_webhook_url=body.get("pagerduty_webhook_url"))
        except (ValueError, TypeError, FaultConfigError) as exc:
            return _sim_error(400, str(exc))
        return SimResponse.json(200, {"search_lag_s": self._store.search_lag_s,
                                      "pagerduty_webhook_url": self.outgoing.pagerduty_url})

    def dispatch(self, request: SimRequest, now: datetime) -> Plan:
        """Decide the answer to one request received at ``now`` (UTC)."""
        if request.path.startswith(SIM_PREFIX):
            return Plan(self._control(request, now))
        found = self._route(request)
        if isinstance(found, SimResponse):
            with self._lock:
                self._requests.add(at=now, request=request, desk=None, status=found.status,
                                   outcome=OutcomeKind.PASS.value)
            return Plan(found)
        spec, matched = found
        with self._lock:
            config = self._faults.config
            outcome = self._faults.decide()
            response = self._apply(spec, outcome, request, matched, now)
            label = "replay" if response is not None and response.replayed else outcome.kind.value
            self._requests.add(at=now, request=request, desk=spec.desk,
                               status=None if response is None else response.status, outcome=label)
        if outcome.kind is not OutcomeKind.PASS:
            _log.info("desk_sim.fault_injected", desk=spec.desk.value, path=request.path, **outcome.to_json())
        delay_s = config.latency_ms / 1000.0
        if outcome.kind is OutcomeKind.TIMEOUT:
            delay_s += config.timeout_hold_s
        return Plan(response, delay_s)

    def _route(self, request: SimRequest) -> tuple[DeskSpec, tuple[Route, dict[str, str]]] | SimResponse:
        wrong_method = False
        for spec in self._desks:
            found = spec.match(request)
            if found is not None:
                return spec, found
            wrong_method = wrong_method or any(r.pattern.match(request.path) for r in spec.routes)
        if wrong_method:
            return _sim_error(405, f"{request.method} is not served on {request.path}")
        return _sim_error(404, f"no simulated endpoint at {request.path}")

    def _apply(
        self, spec: DeskSpec, outcome: Outcome, request: SimRequest, found: tuple[Route, dict[str, str]], now: datetime
    ) -> SimResponse | None:
        if outcome.kind is OutcomeKind.DROP:
            return None
        if outcome.kind is OutcomeKind.STATUS:
            answer = spec.error(outcome.status or 500, "simulated fault")
            if outcome.retry_after_s is not None:
                answer = answer.with_headers({"Retry-After": str(outcome.retry_after_s)})
            return answer
        route, params = found
        ctx = DeskContext(store=self._store, idempotency=self._idempotency, uploads=self._uploads,
                          credentials=self._credentials, now=now, processed=self._processed)
        try:
            return route.handler(ctx, request, params)
        except RequestRefusedError as refused:
            return refused.response

    # -- /_sim -------------------------------------------------------------------------------------

    def _control(self, request: SimRequest, now: datetime) -> SimResponse:
        name = request.path.removeprefix(SIM_PREFIX).rstrip("/")
        if request.method == "GET" and name == "health":
            with self._lock:
                counts = {"tickets": len(self._store), "requests": len(self._requests)}
            return SimResponse.json(200, {"status": "ok", **counts})
        if request.method == "GET" and name == "tickets":
            desk = request.param("desk")
            if desk is not None and desk not in {d.value for d in Desk}:
                return _sim_error(400, f"desk must be one of {[d.value for d in Desk]}")
            return SimResponse.json(200, self.tickets(Desk(desk) if desk else None))
        if request.method == "GET" and name == "requests":
            limit = request.param("limit")
            if limit is not None and not limit.isdigit():
                return _sim_error(400, "limit must be a non-negative integer")
            return SimResponse.json(200, {"requests": self.requests(int(limit) if limit else None)})
        if request.method == "GET" and name == "faults":
            return SimResponse.json(200, self.fault_state())
        if request.method == "POST" and name == "faults":
            return self._post_faults(request)
        if request.method == "POST" and name == "reset":
            self.reset()
            return SimResponse.json(200, {"status": "reset"})
        if request.method == "POST" and name == "act":
            return self._act(request, now)
        if request.method == "POST" and name == "settings":
            return self._post_settings(request)
        return _sim_error(404, f"no control endpoint {request.method} {request.path}")

    def _post_faults(self, request: SimRequest) -> SimResponse:
        try:
            body = json.loads(request.body or b"{}")
            if not isinstance(body, dict):
                raise FaultConfigError("the body must be a JSON object")
            forced = body.pop("fail_next", None)
            seed = body.pop("seed", None)
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                raise FaultConfigError(f"seed={seed!r}: must be an integer")
            if forced is not None and not isinstance(forced, list):
                raise FaultConfigError("fail_next must be a list")
            with self._lock:
                config = self._faults.config.updated(body)
                outcomes = [parse_outcome(item) for item in forced] if forced is not None else None
                self._faults.config = config
                if outcomes is not None:
                    self._faults.force(outcomes)
                if seed is not None:
                    self._faults.reseed(seed)
        except (ValueError, FaultConfigError) as exc:
            return _sim_error(400, str(exc))
        _log.info("desk_sim.faults_set", **config.to_json())
        return SimResponse.json(200, self.fault_state())
