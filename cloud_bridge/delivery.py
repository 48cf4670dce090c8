"""The delivery loop: lease due events from the outbox, deliver them with bounded concurrency.

One loop thread leases at most as many events as there are free workers, skipping desks whose
circuit is open; a fixed thread pool performs the HTTP calls. Every outcome goes back to the outbox:
2xx → complete (ticket reference and promise remembered), retryable → rescheduled with full-jitter
backoff honouring ``Retry-After``, which also holds every other event of that desk until then (a
rate limit is the account's; dead-lettered as ``exhausted`` after ``max_attempts``), permanent
→ dead-lettered with the reason; a desk configuration problem (its TLS certificate not trusted) →
logged once with the fix, the desk's circuit held open for ``retry.config_error_open_s`` and the event
rescheduled without counting an attempt, so nothing is lost or exhausted while the operator fixes it
(the restart that brings the fix makes those events due at once: ``Outbox.release_config_holds``).
Decisions (backoff, circuit) are the pure parts in
``pdm_common.backoff`` and ``cloud_bridge.circuit``; this module only wires them to the I/O.

The loop thread stamps :attr:`Dispatcher.loop_heartbeat` on every pass that worked (an outbox
failure counts as working: the loop is alive and retries, and a restart would not bring the
database back). An unexpected exception is logged and the loop carries on after a backoff without
stamping, so a loop that keeps failing, hangs or dies goes stale and the watchdog restarts the service.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cloud_bridge.circuit import CircuitBreaker
from cloud_bridge.config import RetrySettings
from cloud_bridge.desks.base import Delivery, DeskAdapter
from cloud_bridge.errors import (
    DeliveryError,
    DeskConfigError,
    OutboxError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from cloud_bridge.outbox import CONFIG_HOLD, LeasedEvent, Outbox
from cloud_bridge.plot import PlotMarks, render_plot
from cloud_bridge.ticket import AlertHistory, Ticket, TicketAction
from pdm_common.backoff import Backoff
from pdm_common.contracts import AlertEvent
from pdm_common.logs import get_logger
from pdm_common.systemd import Heartbeat

__all__ = ["DeliveryStats", "DeskStats", "Dispatcher"]

_log = get_logger(__name__)

LATENCY_WINDOW = 10_000
"""Delivery latencies kept for p50/p99 (a ring; enough for a benchmark run, bounded in memory)."""

LOOP_BACKOFF = Backoff(base_s=0.5, cap_s=10.0)
"""Pause after consecutive failed passes of the lease loop: a failing database or a bug is not retried
every ``poll_s`` (log flood, load on a struggling server); the 10 s cap keeps recovery prompt and stays
well inside the loop's watchdog bound (``cloud_bridge.app.DISPATCH_STALL_S``)."""


@dataclass(slots=True)
class DeskStats:
    """Counters of one desk, for metrics."""

    attempts: int = 0
    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    circuit_opened: int = 0
    config_errors: int = 0


@dataclass(slots=True)
class DeliveryStats:
    """Counters of the delivery loop, per desk, plus recent end-to-end latencies (seconds)."""

    desks: dict[str, DeskStats] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)

    def desk(self, name: str) -> DeskStats:
        """The counters of ``name`` (created on first use)."""
        return self.desks.setdefault(name, DeskStats())


class Dispatcher:
    """Delivers leased outbox events to the desk adapters."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        adapters: dict[str, DeskAdapter],
        to_ticket: Callable[[AlertEvent, AlertHistory], Ticket],
        retry: RetrySettings,
        owner: str,
        lease_s: float,
        workers: int,
        poll_s: float,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        render: Callable[[AlertEvent, PlotMarks], bytes | None] = render_plot,
    ) -> None:
        self._outbox = outbox
        self._render = render
        self._adapters = adapters
        self._to_ticket = to_ticket
        self._retry = retry
        self._backoff = Backoff(retry.base_s, retry.cap_s)
        self._owner = owner
        self._lease_s = lease_s
        self._workers = workers
        self._poll_s = poll_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._circuits = {name: CircuitBreaker(retry.circuit_failures, retry.circuit_open_s) for name in adapters}
        self._config_held_until: dict[str, float] = {}
        self._rate_held_until: dict[str, float] = {}  # desk -> until when its Retry-After asks for quiet
        self._inflight = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bridge-deliver")
        self._thread: threading.Thread | None = None
        self._loop_failures = 0
        self.stats = DeliveryStats()
        self.loop_heartbeat = Heartbeat(monotonic)
        """Stamped by every pass of the lease loop that worked; the watchdog reads its age."""

    @property
    def inflight(self) -> int:
        """Deliveries in progress now."""
        with self._lock:
            return self._inflight

    def circuit_state(self, desk: str) -> str:
        """``closed``, ``open`` or ``half_open`` for ``desk``."""
        with self._lock:
            return self._circuits[desk].state.value

    def wake(self) -> None:
        """Look for due events now (called after an enqueue, so delivery does not wait for the poll)."""
        self._wake.set()

    def start(self) -> None:
        """Start the lease loop on its own thread."""
        self._thread = threading.Thread(target=self._loop, name="bridge-dispatch", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float) -> bool:
        """Stop leasing, wait up to ``grace_s`` for in-flight deliveries; True when all finished.

        Unfinished deliveries keep their lease until it expires (or this replica restarts and
        releases it), and the desk's idempotency makes the eventual retry safe.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(grace_s, 1.0))
        deadline = self._clock() + grace_s
        while self.inflight and self._clock() < deadline:
            self._stopping.wait(0.05)
        done = self.inflight == 0
        self._pool.shutdown(wait=done, cancel_futures=True)
        return done

    def _open_circuits(self, now: float) -> list[str]:
        with self._lock:
            return [name for name, cb in self._circuits.items()
                    if cb.blocks(now) or self._config_held_until.get(name, 0.0) > now
                    or self._rate_held_until.get(name, 0.0) > now]

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._pass()
            except OutboxError as exc:
                self.loop_heartbeat.touch()  # alive and retrying; the outbox's health is reported elsewhere
                self._loop_failures += 1
                _log.error("outbox.lease_failed", error=str(exc), failures=self._loop_failures,
                           action="check the outbox database")
                self._pause_after_failure()
            except Exception as exc:  # a bug must not end the thread silently: log it, back off, try again
                self._loop_failures += 1
                _log.exception("dispatch.loop_failed", error=f"{type(exc).__name__}: {exc}"[:500],
                               failures=self._loop_failures,
                               action="report the traceback; the watchdog restarts the bridge if this persists")
                self._pause_after_failure()
            else:
                self._loop_failures = 0
                self.loop_heartbeat.touch()

    def _pause_after_failure(self) -> None:
        delay = LOOP_BACKOFF.delay(self._loop_failures - 1, self._rng)
        # Not self._wake: enqueues set it constantly under load, which would defeat the backoff.
        self._stopping.wait(max(delay, self._poll_s))

    def _pass(self) -> None:
        """Lease as many due events as there are free workers, hand them to the pool, then idle if short."""
        free = self._workers - self.inflight
        batch: list[LeasedEvent] = []
        if free > 0:
            now = self._clock()
            batch = self._outbox.lease(owner=self._owner, now=now, lease_s=self._lease_s, limit=free,
                                       exclude_desks=self._open_circuits(now))
        for event in batch:
            with self._lock:
                self._inflight += 1
            self._pool.submit(self._deliver_guarded, event)
        if len(batch) < free or free <= 0:
            self._wake.wait(self._poll_s)
            self._wake.clear()

    def _deliver_guarded(self, event: LeasedEvent) -> None:
        try:
            self._deliver(event)
        except OutboxError as exc:
            # The desk outcome could not be recorded; the lease expires and the (idempotent) send repeats.
            _log.error("outbox.record_failed", alert_id=event.alert.alert_id, error=str(exc))
        except Exception:  # a bug in one delivery must not kill the worker pool
            _log.exception("delivery.crashed", alert_id=event.alert.alert_id, desk=event.desk)
        finally:
            with self._lock:
                self._inflight -= 1
            self._wake.set()

    def _deliver(self, event: LeasedEvent) -> None:
        adapter = self._adapters.get(event.desk)
        now = self._clock()
        if adapter is None:
            self._outbox.dead_letter(event, owner=self._owner, reason=f"desk {event.desk!r} is not configured",
                                     now=now)
            return
        with self._lock:
            held = self._rate_held_until.get(event.desk, 0.0)
            allowed = held <= now and self._circuits[event.desk].allow(now)
        if held > now:
            # Leased just before the desk asked for quiet: wait with the others.
            self._outbox.reschedule(event, owner=self._owner, next_attempt_at=held, error="desk rate limit",
                                    count=False)
            return
        if not allowed:
            # Leased in the same batch as the circuit's trial call: give it back untouched.
            self._outbox.reschedule(event, owner=self._owner, next_attempt_at=now + self._retry.circuit_open_s,
                                    error="circuit open", count=False)
            return
        stats = self.stats.desk(event.desk)
        stats.attempts += 1
        served = event.serviced_at
        history = AlertHistory(serviced_at=None if served is None else datetime.fromtimestamp(served, UTC))
        ticket = self._to_ticket(event.alert, history)
        wants_plot = adapter.accepts_attachments and ticket.action in (TicketAction.OPEN, TicketAction.REOPEN)
        marks = PlotMarks(serviced_at=history.serviced_at,
                          reopened_at=ticket.event_at if ticket.action is TicketAction.REOPEN else None,
                          zone=ticket.customer.zone if ticket.customer else None)
        delivery = Delivery(
            ticket=ticket, ticket_ref=event.ticket_ref, maybe_landed=event.leases > 1,
            started_at=event.first_leased_at, now=now,
            plot=(lambda: self._render(event.alert, marks)) if wants_plot else None,
            record_ref=lambda ref: self._outbox.record_ticket_ref(event.alert.alert_id, ref),
            desk_resolved=event.desk_status == "resolved", serviced_at=served, create_sent_at=event.create_sent_at,
            mark_create_sent=lambda: self._outbox.mark_create_sent(event.id, self._clock()),
        )
        try:
            ref = adapter.deliver(delivery)
        except DeskConfigError as exc:
            self._config_problem(event, exc, stats)
            return
        except RetryableDeliveryError as exc:
            self._failed(event, exc, stats)
            return
        except PermanentDeliveryError as exc:
            self._circuit(event.desk, ok=True)
            stats.dead_lettered += 1
            self._outbox.dead_letter(event, owner=self._owner, reason=f"{exc.reason}: {exc.detail}", now=now)
            _log.error("delivery.dead_lettered", alert_id=ticket.dedup_key, event_seq=ticket.event_seq,
                       desk=event.desk, reason=exc.reason, action="fix the cause, then: cloud-bridge outbox retry")
            return
        done = self._clock()
        self._circuit(event.desk, ok=True)
        with self._lock:
            self._config_held_until.pop(event.desk, None)
        self._outbox.complete(
            event, owner=self._owner, ticket_ref=ref, priority=ticket.priority.value,
            opened_at=ticket.opened_at.timestamp(), sla_deadline=ticket.sla_deadline.timestamp(),
            new_promise=ticket.action in (TicketAction.OPEN, TicketAction.REOPEN),
            acknowledged=ticket.action in (TicketAction.ACKNOWLEDGE, TicketAction.VERIFY),
            resolved_at=done if ticket.action is TicketAction.RESOLVE else None,
            serviced_at=done if ticket.action is TicketAction.VERIFY else None,
        )
        stats.delivered += 1
        with self._lock:
            if len(self.stats.latencies_s) >= LATENCY_WINDOW:
                del self.stats.latencies_s[: LATENCY_WINDOW // 2]
            self.stats.latencies_s.append(done - event.enqueued_at)
        _log.info("ticket.delivered", alert_id=ticket.dedup_key, event_seq=ticket.event_seq, desk=event.desk,
                  action=ticket.action.value, ticket_ref=ref, priority=ticket.priority.value)

    def _config_problem(self, event: LeasedEvent, exc: DeskConfigError, stats: DeskStats) -> None:
        """Hold the desk for ``config_error_open_s``; the event waits without counting an attempt."""
        now = self._clock()
        hold = self._retry.config_error_open_s
        with self._lock:
            first = self._config_held_until.get(event.desk, 0.0) <= now
            self._config_held_until[event.desk] = now + hold
        stats.config_errors += 1
        if first:
            _log.error("desk.config_error", desk=event.desk, reason=exc.reason, error=exc.detail[:300],
                       retry_in_s=hold, action=exc.fix)
        self._outbox.reschedule(event, owner=self._owner, next_attempt_at=now + hold,
                                error=f"{CONFIG_HOLD}{exc}"[:500], count=False)

    def _failed(self, event: LeasedEvent, exc: DeliveryError, stats: DeskStats) -> None:
        now = self._clock()
        opened = self._circuit(event.desk, ok=False)
        if opened:
            stats.circuit_opened += 1
            _log.warning("desk.circuit_opened", desk=event.desk, open_s=self._retry.circuit_open_s,
                         reason=exc.reason, action="check the desk's status page and credentials")
        attempts = event.attempts + 1
        if attempts >= self._retry.max_attempts:
            stats.dead_lettered += 1
            self._outbox.dead_letter(event, owner=self._owner, reason=f"exhausted after {attempts}: {exc.reason}",
                                     now=now)
            _log.error("delivery.exhausted", alert_id=event.alert.alert_id, desk=event.desk, attempts=attempts,
                       action="fix the desk, then: cloud-bridge outbox retry")
            return
        retry_after = exc.retry_after_s if isinstance(exc, RetryableDeliveryError) else None
        if retry_after is not None:
            retry_after = min(retry_after, self._retry.max_retry_after_s)
            # A desk's rate limit is its account's, not this event's (Zendesk, Jira and ServiceNow
            # document Retry-After as "wait before making new requests"): the whole desk waits.
            with self._lock:
                self._rate_held_until[event.desk] = max(self._rate_held_until.get(event.desk, 0.0),
                                                        now + retry_after)
        delay = self._backoff.delay(event.attempts, self._rng, retry_after_s=retry_after)
        stats.retried += 1
        self._outbox.reschedule(event, owner=self._owner, next_attempt_at=now + delay, error=str(exc)[:500],
                                count=True)
        _log.warning("delivery.retry", alert_id=event.alert.alert_id, desk=event.desk, reason=exc.reason,
                     attempt=attempts, retry_in_s=round(delay, 3))

    def _circuit(self, desk: str, *, ok: bool) -> bool:
        """Record an outcome; True when this failure opened the circuit."""
        now = self._clock()
        with self._lock:
            cb = self._circuits[desk]
            before = cb.times_opened
            if ok:
                cb.record_success(now)
            else:
                cb.record_failure(now)
            return cb.times_opened > before

