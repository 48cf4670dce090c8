"""The durable delivery outbox: SQLite (one replica) or PostgreSQL (replicas sharing one outbox).

An alert event is written here before the MQTT message is acknowledged and deleted only after the
desk accepted it (2xx). Per alert, only the lowest pending ``event_seq`` is ever leased, so events
reach the desk in order even with several replicas; an event at or below the last seq applied to the
desk, or already queued, is refused as stale or repeated (DESIGN.md §3).

Gaps. An event that arrives with seqs missing below it (``seen_through``: every seq up to it has
arrived) waits up to ``gap_wait_s`` for them before it is delivered without them. The missing ones
are taken when they come late, in order: the broker can lose an agent's publishes (Mosquitto 2.0
does not queue for a restored persistent session until its client reconnects) and the agent's echo
re-sends them within its ``alert_echo_s``; before this wait the later event was delivered first and
the echoed opening refused as stale, so a ticket lacked its first events or was never opened. Once
a later event of the alert has gone to the desk, the earlier ones are stale.

Leases make sharing safe: a replica marks the rows it delivers with its owner id and a deadline.
On PostgreSQL rows are claimed with ``SELECT … FOR UPDATE SKIP LOCKED``, so two replicas never
claim the same row and never wait on each other; a crashed replica's leases simply expire (and a
restarted replica releases its own at start-up).

Bound (DESIGN.md §4): at ``max_events`` the oldest unleased ``updated`` event is dropped (a later
event of the same alert carries the full state); ``opened``/``resolved`` are never dropped, and when
only those remain :class:`~cloud_bridge.errors.OutboxFullError` is raised.

Times are epoch seconds passed in by the caller; the only clock read here is the (injectable)
monotonic one that paces PostgreSQL reconnects. A broken PostgreSQL connection is reopened and the
operation retried once; transient errors reach callers as :class:`~cloud_bridge.errors.OutboxError`,
data the database can never store (a value out of range, a constraint) as
:class:`~cloud_bridge.errors.OutboxDataError`, so the consumer dead-letters that one message and goes on.

Besides the queue, the outbox keeps what intake refused (``refused``: contract, signature, seq jump
and storage refusals, each with its reason), each alert's ticket and promise, and the two-way sync's
state (what the bridge last saw of each ticket in its desk, and each desk's poll cursor). A corrupt
SQLite file is moved aside and salvaged at open (:mod:`cloud_bridge.outbox_salvage`); a row that
cannot be parsed is dead-lettered on its own at lease time without holding up the rest of the batch.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cloud_bridge.errors import OutboxDataError, OutboxError, OutboxFullError
from cloud_bridge.outbox_salvage import SalvageReport, salvage_if_corrupt
from cloud_bridge.promises import TicketRow
from pdm_common.backoff import Backoff
from pdm_common.contracts import MAX_ALERT_BYTES, AlertEvent, EventType
from pdm_common.errors import ContractError
from pdm_common.logs import get_logger
from pdm_common.sqlite_files import create_atomically

__all__ = [
    "CONFIG_HOLD",
    "GAP_WAIT_S",
    "DeadLetterRow",
    "DeskState",
    "EnqueueResult",
    "LeasedEvent",
    "Outbox",
    "OutboxStats",
    "RefusedRow",
    "TicketRow",
    "open_postgres",
    "open_sqlite",
]

_log = get_logger(__name__)

_T = TypeVar("_T")

ALERT_RETENTION_S = 30 * 86_400.0
"""Keep a resolved alert's seq and ticket reference 30 days, so late repeats are still recognised."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id {serial} PRIMARY KEY,
    alert_id TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    desk TEXT NOT NULL,
    payload TEXT NOT NULL,
    enqueued_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    leases INTEGER NOT NULL DEFAULT 0,
    first_leased_at DOUBLE PRECISION,
    create_sent_at DOUBLE PRECISION,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    last_error TEXT,
    UNIQUE (alert_id, event_seq)
);
CREATE INDEX IF NOT EXISTS events_due ON events (next_attempt_at);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    desk TEXT NOT NULL,
    last_seq_seen INTEGER NOT NULL,
    last_seq_delivered INTEGER NOT NULL DEFAULT 0,
    seen_through INTEGER,
    ticket_ref TEXT,
    priority TEXT,
    opened_at DOUBLE PRECISION,
    sla_deadline DOUBLE PRECISION,
    acknowledged INTEGER NOT NULL DEFAULT 0,
    warned INTEGER NOT NULL DEFAULT 0,
    resolved_at DOUBLE PRECISION,
    serviced_at DOUBLE PRECISION,
    desk_status TEXT,
    desk_assignee TEXT
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id {serial} PRIMARY KEY,
    alert_id TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    desk TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    id {serial} PRIMARY KEY,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_cursors (
    desk TEXT PRIMARY KEY,
    cursor_value TEXT NOT NULL
);
"""

_ADDED_COLUMNS = (
    ("events", "leases", "INTEGER NOT NULL DEFAULT 0"),
    ("events", "first_leased_at", "DOUBLE PRECISION"),
    ("events", "create_sent_at", "DOUBLE PRECISION"),
    ("alerts", "serviced_at", "DOUBLE PRECISION"),
    ("alerts", "desk_status", "TEXT"),
    ("alerts", "desk_assignee", "TEXT"),
    ("alerts", "seen_through", "INTEGER"),  # NULL: everything up to last_seq_seen arrived (older outboxes)
)
"""Columns added since the first release: an existing outbox gets them when it opens."""

MAX_REFUSED = 10_000
"""Refused messages kept for ``cloud-bridge outbox list``; the oldest go first (each is also logged and counted)."""

GAP_WAIT_S = 300.0
"""How long an event waits for missing lower seqs of its alert: above the agents' ``alert_echo_s``
(120 s) after which they re-send an alert's events, plus the bridge's own reconnect back-off (60 s)."""

_THROUGH = "COALESCE(a.seen_through, a.last_seq_seen)"
"""SQL: the seq up to which every event of alert ``a`` has arrived (or was given up)."""

_GAP_BELOW = f"e.event_seq > {_THROUGH} AND e.event_seq > a.last_seq_delivered + 1"
"""SQL: event ``e`` of alert ``a`` has seqs below it that neither arrived nor reached the desk."""

REFUSED_PAYLOAD_MAX = 8 * 1024
"""Bytes of a refused payload kept: enough to diagnose, bounded against a flood of large garbage."""


class EnqueueResult(StrEnum):
    """What :meth:`Outbox.enqueue` did with an event."""

    ACCEPTED = "accepted"
    STALE = "stale"
    SEQ_JUMP = "seq_jump"
    """``event_seq`` more than ``max_seq_step`` above the alert's last: refused, the alert keeps its seq."""


@dataclass(frozen=True, slots=True)
class LeasedEvent:
    """An event this replica now owns until ``lease_until``.

    Attributes:
        leases: how often the event has been leased, this time included: above 1, an earlier attempt
            may have reached the desk (also one that crashed or timed out before anything was recorded).
        first_leased_at: when the first of those attempts started (epoch s).
        serviced_at: when the alert's ``verifying`` event was delivered (the service visit), if it was.
    """

    id: int
    alert: AlertEvent
    desk: str
    attempts: int
    enqueued_at: float
    ticket_ref: str | None
    leases: int = 1
    first_leased_at: float = 0.0
    serviced_at: float | None = None
    desk_status: str | None = None
    """What two-way sync last saw people do to the ticket (``acknowledged``, ``resolved``), if anything."""
    create_sent_at: float | None = None
    """When an earlier attempt at this event sent a create whose outcome is unknown (epoch s)."""


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A message intake refused, with the reason."""

    id: int
    topic: str
    reason: str
    detail: str
    received_at: float


@dataclass(frozen=True, slots=True)
class DeskState:
    """What the bridge last saw of an alert's ticket in its desk (two-way sync)."""

    alert_id: str
    desk: str
    ticket_ref: str
    status: str | None
    assignee: str | None
    resolved: bool


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """An event that could not be delivered, with the reason."""

    id: int
    alert_id: str
    event_seq: int
    event_type: str
    desk: str
    reason: str
    attempts: int
    failed_at: float


CONFIG_HOLD = "config: "
"""How ``last_error`` begins for an event held for a desk configuration problem (not a failed attempt)."""


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Gauges for metrics: queued events, age of the oldest, dead letters, drops by the bound."""

    depth: int
    oldest_age_s: float
    dead_letters: int
    refused: int = 0
    per_desk: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Queued events and the oldest's age, per desk."""
    dropped: int = 0
    """``updated`` events this process dropped at the bound (a running total)."""
    gaps_skipped: int = 0
    """Events this process delivered without lower seqs that did not arrive within ``gap_wait_s`` (a running total)."""


class _Conn(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...


class _Backend(ABC):
    """One database connection behind a lock, with the dialect differences in one place."""

    for_update = ""
    skip_locked = ""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.operations = 0
        """Operations run (each ``run`` call)."""
        self.commits = 0
        """Transactions committed; below ``operations`` when operations shared a commit."""

    @abstractmethod
    def run(self, op: Callable[[_Conn], _T]) -> _T:
        """Run ``op`` in one write transaction and return its result.

        Raises:
            OutboxError: the database failed (driver errors are translated here).
        """

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""


_SQLITE_DATA_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, OverflowError)
"""What SQLite raises for data it can never store (OverflowError: an integer beyond 64 bits); every other
sqlite3.Error (locked, I/O, disk full) may pass."""


GROUP_MAX = 256
"""Most operations one SQLite transaction carries (bounds a transaction's work and its callers' wait)."""


class _Pending:
    """One caller's operation waiting for (or done in) a group commit."""

    __slots__ = ("done", "error", "op", "result")

    def __init__(self, op: Callable[[_Conn], Any]) -> None:
        self.op = op
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class _Sqlite(_Backend):
    """One SQLite connection; concurrent operations share one fsync'd commit (group commit).

    Every operation is still atomic and durable when ``run`` returns: a caller arriving while a
    transaction commits queues its operation, and the next leader runs all queued operations in one
    ``BEGIN IMMEDIATE`` … ``COMMIT``, each inside its own ``SAVEPOINT``, so an operation that raises is
    rolled back alone and only its caller sees the error; nobody returns before the ``COMMIT`` (with
    ``synchronous=FULL``, its fsync) that made their operation durable. With one caller at a time this is
    exactly one transaction per operation; with the consumer and eight delivery workers writing at once
    it is one fsync for all of them instead of one each (``docs/benchmarks.md``).
    """

    def __init__(self, path: Path, *, synchronous_full: bool) -> None:
        super().__init__()
        self.salvage: SalvageReport | None = None
        self._queue: list[_Pending] = []
        self._leading = False
        self._turn = threading.Condition()
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
                self.salvage = salvage_if_corrupt(path)
                salvaged = self.salvage
                create_atomically(path, _SCHEMA.format(serial="INTEGER"),
                                  None if salvaged is None else lambda c: _restore(c, salvaged))
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a transaction takes the write
            # lock up front instead of failing half-way on SQLITE_BUSY.
            self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={'FULL' if synchronous_full else 'NORMAL'}")
            self.conn.executescript(_SCHEMA.format(serial="INTEGER"))
            present = {(t, str(r[1])) for t in {t for t, _, _ in _ADDED_COLUMNS}
                       for r in self.conn.execute(f"PRAGMA table_info({t})").fetchall()}
            for table, column, decl in _ADDED_COLUMNS:
                if (table, column) not in present:
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open sqlite outbox {path}: {exc}") from None

    def run(self, op: Callable[[_Conn], _T]) -> _T:
        mine = _Pending(op)
        with self._turn:
            self._queue.append(mine)
            while self._leading and not mine.done:
                self._turn.wait()
            if not mine.done:  # nobody is committing: lead a group of everything queued so far
                self._leading = True
                group, self._queue = self._queue[:GROUP_MAX], self._queue[GROUP_MAX:]
        if not mine.done:
            try:
                self._commit(group)
            finally:
                with self._turn:
                    for pending in group:
                        pending.done = True
                    self._leading = False
                    self._turn.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[no-any-return]

    def _commit(self, group: list[_Pending]) -> None:
        """Run ``group`` in one transaction, each operation in its own savepoint; errors go to their callers."""
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                for pending in group:
                    pending.error = OutboxError(f"sqlite outbox: {exc}")
                return
            try:
                for pending in group:
                    self.conn.execute("SAVEPOINT op")
                    try:
                        pending.result = pending.op(self.conn)
                    except BaseException as exc:  # the caller's to handle: this op is undone, the others stand
                        self.conn.execute("ROLLBACK TO op")
                        pending.error = _translated(exc)
                    self.conn.execute("RELEASE op")
                self.conn.execute("COMMIT")
                self.operations += len(group)
                self.commits += 1
            except sqlite3.Error as exc:  # the commit (or a savepoint) failed: nothing of the group is stored
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                for pending in group:
                    pending.result, pending.error = None, OutboxError(f"sqlite outbox: {exc}")

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def _translated(exc: BaseException) -> BaseException:
    """A database error as the outbox's own: data it can never store, or a failure that may pass."""
    if isinstance(exc, _SQLITE_DATA_ERRORS):
        return OutboxDataError(f"sqlite outbox refuses the data: {type(exc).__name__}: {exc}")
    if isinstance(exc, sqlite3.Error):
        return OutboxError(f"sqlite outbox: {exc}")
    return exc


RECONNECT_TIMEOUT_S = 5
"""libpq ``connect_timeout`` of a reconnect (whole seconds; libpq treats values below 2 as 2). The consumer
stores alerts on the MQTT network thread and retries a failed store about five times within ~1.5 s;
one 5 s connect plus fast failures in between (see :data:`RECONNECT_BACKOFF`) stays well inside
``cloud_bridge.app.MQTT_STALL_S`` (20 s)."""

OPEN_TIMEOUT_S = 10
"""libpq ``connect_timeout`` at start-up, where nothing else waits on us yet."""

RECONNECT_BACKOFF = Backoff(base_s=0.5, cap_s=30.0)
"""Pacing of reconnects after failed ones: until the next one is due, operations fail at once with
:class:`OutboxError` instead of each blocking for a connect timeout (or hammering a recovering server).
The cap bounds how long a restored database goes unnoticed."""

DEFAULT_APPLICATION_NAME = "pdm-cloud-bridge"
"""``application_name`` on the bridge's connections (``pg_stat_activity``) unless the DSN sets one."""


class _Postgres(_Backend):
    """One psycopg connection that is replaced when it breaks.

    On ``OperationalError``/``InterfaceError`` the operation's transaction is gone (the server rolled
    it back or never saw it), so the connection is closed if it broke, reopened, and the operation
    run once more. The only ambiguous case is a connection lost while ``COMMIT`` was in flight; the
    retry is then safe because every operation is idempotent in effect: a repeated enqueue is refused
    as stale, a repeated lease claims other rows (the first claim expires after ``lease_s``), and
    complete/dead-letter match on the lease owner. A repeated ``reschedule`` may count one attempt twice.
    """

    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, dsn: str, *, application_name: str | None = None,
                 monotonic: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        super().__init__()
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        self._psycopg = psycopg
        self._dsn = dsn
        self._clock = monotonic
        self._rng = rng or random.Random()
        self._failed_connects = 0
        self._next_connect_at = 0.0
        try:
            self._application_name = (application_name or str(conninfo_to_dict(dsn).get("application_name") or "")
                                      or DEFAULT_APPLICATION_NAME)
            conn = psycopg.connect(dsn, connect_timeout=OPEN_TIMEOUT_S, application_name=self._application_name)
            with conn.transaction():
                # Several replicas may start together: serialise the DDL on an advisory lock.
                conn.execute("SELECT pg_advisory_xact_lock(4242001)")
                conn.execute(_SCHEMA.format(serial="BIGSERIAL"))
                for table, column, decl in _ADDED_COLUMNS:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {decl}")
        except psycopg.Error as exc:
            raise OutboxError(f"cannot open postgres outbox: {type(exc).__name__}") from None
        self._conn: Any = conn

    def run(self, op: Callable[[_Conn], _T]) -> _T:
        psycopg = self._psycopg
        with self.lock:
            try:
                try:
                    return self._attempt(op)
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    _log.warning("outbox.connection_lost", error=f"{type(exc).__name__}: {str(exc)[:200]}",
                                 action="reconnecting and retrying the operation once")
                    self._discard_if_broken()
                    return self._attempt(op)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._discard_if_broken()
                raise OutboxError(f"postgres outbox: {type(exc).__name__}: {str(exc)[:200]}") from None
            except (psycopg.DataError, psycopg.IntegrityError, OverflowError) as exc:
                raise OutboxDataError(f"postgres outbox refuses the data: {type(exc).__name__}: "
                                      f"{str(exc)[:200]}") from None
            except psycopg.Error as exc:
                raise OutboxError(f"postgres outbox: {type(exc).__name__}: {str(exc)[:200]}") from None

    def _attempt(self, op: Callable[[_Conn], _T]) -> _T:
        conn = self._connection()
        with conn.transaction():
            result = op(_PgConn(conn))
        self.operations += 1
        self.commits += 1
        return result

    def _connection(self) -> Any:
        """The open connection, reconnecting when the last one was discarded and a reconnect is due.

        Raises:
            OutboxError: reconnecting failed, or the previous failure's backoff has not passed yet.
        """
        if self._conn is not None:
            return self._conn
        now = self._clock()
        if now < self._next_connect_at:
            raise OutboxError(f"postgres outbox disconnected; next reconnect in {self._next_connect_at - now:.1f}s")
        try:
            self._conn = self._psycopg.connect(self._dsn, connect_timeout=RECONNECT_TIMEOUT_S,
                                               application_name=self._application_name)
        except self._psycopg.Error as exc:
            self._next_connect_at = self._clock() + RECONNECT_BACKOFF.delay(self._failed_connects, self._rng)
            self._failed_connects += 1
            _log.error("outbox.reconnect_failed", error=f"{type(exc).__name__}: {str(exc)[:200]}",
                       failures=self._failed_connects, action="check that PostgreSQL is up and reachable")
            raise OutboxError(f"postgres outbox: reconnect failed: {type(exc).__name__}") from None
        if self._failed_connects:
            _log.info("outbox.reconnected", after_failures=self._failed_connects)
        self._failed_connects = 0
        return self._conn

    def _discard_if_broken(self) -> None:
        # A lock timeout or serialization failure is an OperationalError on a healthy connection: keep it.
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()


class _PgConn:
    """Adapts ``?`` placeholders to psycopg's ``%s``; our SQL has no literal ``?`` or ``%``."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql.replace("?", "%s"), params)


_EVENT_COLS = ("e.id, e.payload, e.desk, e.attempts, e.enqueued_at, a.ticket_ref, e.leases, e.first_leased_at,"
               " a.serviced_at, a.desk_status, e.create_sent_at")


def _restore(c: _Conn, report: SalvageReport) -> None:
    """Copy the salvaged rows into the fresh schema (columns matched by name; unknown ones dropped)."""
    for table, (columns, rows) in report.rows.items():
        if not rows:
            continue
        current = {str(r[1]) for r in c.execute(f"PRAGMA table_info({table})").fetchall()}
        keep = [i for i, name in enumerate(columns) if name in current]
        names = ", ".join(columns[i] for i in keep)
        marks = ", ".join("?" for _ in keep)
        for row in rows:
            try:
                c.execute(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})", [row[i] for i in keep])
            except sqlite3.Error:
                report.unreadable += 1  # a row whose values no longer fit (wrong schema): counted as lost
    # An alert whose queued events were lost must take them again if the agent or the broker re-sends
    # them: it has seen only what was delivered or is still queued.
    c.execute("UPDATE alerts SET last_seq_seen = MAX(last_seq_delivered, COALESCE((SELECT MAX(e.event_seq)"
              " FROM events e WHERE e.alert_id = alerts.alert_id), 0)), seen_through = last_seq_delivered")


class Outbox:
    """Durable, ordered, bounded, lease-based outbox over SQLite or PostgreSQL."""

    def __init__(self, backend: _Backend, *, max_events: int, gap_wait_s: float = GAP_WAIT_S) -> None:
        self._db = backend
        self._max_events = max_events
        self._gap_wait_s = gap_wait_s
        self.dropped = 0
        self.gaps_skipped = 0
        self.corrupt_rows = 0
        self.salvage: SalvageReport | None = getattr(backend, "salvage", None)
        """What was salvaged from a corrupt file at open (None when the file was healthy)."""

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgres``."""
        return "postgres" if isinstance(self._db, _Postgres) else "sqlite"

    @property
    def commits(self) -> tuple[int, int]:
        """(operations, transactions committed) since open: SQLite groups concurrent operations into one commit."""
        return self._db.operations, self._db.commits

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def enqueue(self, alert: AlertEvent, *, desk: str, now: float, max_seq_step: int | None = None) -> EnqueueResult:
        """Store an event durably unless it is stale, repeated or jumps too far for its alert.

        The desk of an alert is fixed by its first event, so a routing change never splits one
        alert across two desks. With ``max_seq_step``, an event more than that many seqs above the
        alert's last is refused (:attr:`EnqueueResult.SEQ_JUMP`) and changes nothing, so a forged
        ``event_seq`` cannot make the real events stale. An event below the alert's newest is taken
        when it fills a gap (see the module docstring).

        Raises:
            OutboxFullError: at the bound with no droppable ``updated`` event.
            OutboxDataError: the database can never store this event.
            OutboxError: the database failed.
        """
        payload = alert.to_json().decode()
        seq = alert.event_seq

        def op(c: _Conn) -> EnqueueResult:
            query = (f"SELECT a.desk, a.last_seq_seen, a.last_seq_delivered, {_THROUGH} FROM alerts a"
                     " WHERE a.alert_id = ?" + self._db.for_update)
            row = c.execute(query, (alert.alert_id,)).fetchone()
            if row is None:
                c.execute("INSERT INTO alerts (alert_id, desk, last_seq_seen, seen_through) VALUES (?, ?, 0, 0)"
                          " ON CONFLICT (alert_id) DO NOTHING", (alert.alert_id, desk))
                row = c.execute(query, (alert.alert_id,)).fetchone()  # another replica's, if it was first
            last_seen, through = int(row[1]), max(int(row[2]), int(row[3]))
            if seq <= through:
                return EnqueueResult.STALE
            if max_seq_step is not None and seq > last_seen + max_seq_step:
                return EnqueueResult.SEQ_JUMP
            if seq <= last_seen and c.execute(
                "SELECT 1 FROM events WHERE alert_id = ? AND (event_seq = ? OR (event_seq > ?"
                " AND first_leased_at IS NOT NULL))", (alert.alert_id, seq, seq),
            ).fetchone() is not None:
                return EnqueueResult.STALE  # queued already, or a later event went to the desk first
            self._make_room(c)
            c.execute(
                "INSERT INTO events (alert_id, event_seq, event_type, desk, payload, enqueued_at, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (alert.alert_id, seq, alert.event.value, str(row[0]), payload, now, now),
            )
            if seq == through + 1:  # closes the gap below: move past the queued events it held
                through = seq
                for (queued,) in c.execute("SELECT event_seq FROM events WHERE alert_id = ? AND event_seq > ?"
                                           " ORDER BY event_seq", (alert.alert_id, seq)).fetchall():
                    if int(queued) != through + 1:
                        break
                    through += 1
            c.execute("UPDATE alerts SET last_seq_seen = ?, seen_through = ? WHERE alert_id = ?",
                      (max(seq, last_seen), through, alert.alert_id))
            return EnqueueResult.ACCEPTED

        return self._db.run(op)

    def _make_room(self, c: _Conn) -> None:
        depth = int(c.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        if depth < self._max_events:
            return
        victim = c.execute(
            "SELECT id, alert_id, event_seq FROM events WHERE event_type = ? AND lease_owner IS NULL"
            " ORDER BY enqueued_at, id LIMIT 1",
            (EventType.UPDATED.value,),
        ).fetchone()
        if victim is None:
            raise OutboxFullError(f"outbox holds {depth} events (limit {self._max_events}), none droppable")
        c.execute("DELETE FROM events WHERE id = ?", (victim[0],))
        self.dropped += 1
        _log.warning("outbox.dropped_update", alert_id=victim[1], event_seq=victim[2], depth=depth,
                     action="deliveries are falling behind: check the desks and outbox.max_events")

    def lease(
        self, *, owner: str, now: float, lease_s: float, limit: int, exclude_desks: Sequence[str] = ()
    ) -> list[LeasedEvent]:
        """Claim up to ``limit`` due events, at most one per alert and only its lowest pending seq.

        An event with seqs missing below it is claimed once it has waited ``gap_wait_s`` for them
        (counted in :attr:`gaps_skipped`, logged as ``outbox.gap_skipped``). A row whose payload no
        longer parses (a salvaged or hand-edited outbox) is dead-lettered with reason ``corrupt_row``;
        the rest of the batch is returned as usual.
        """
        desk_filter = ""
        params: list[Any] = [now, now, now - self._gap_wait_s]
        if exclude_desks:
            desk_filter = " AND e.desk NOT IN (" + ", ".join("?" for _ in exclude_desks) + ")"
            params += list(exclude_desks)
        params.append(limit)

        def op(c: _Conn) -> list[Any]:
            ids = [
                int(r[0])
                for r in c.execute(
                    "SELECT e.id FROM events e WHERE e.next_attempt_at <= ?"
                    " AND (e.lease_until IS NULL OR e.lease_until < ?)" + desk_filter +
                    " AND NOT EXISTS (SELECT 1 FROM events p WHERE p.alert_id = e.alert_id"
                    " AND p.event_seq < e.event_seq)"
                    " AND (e.enqueued_at <= ? OR NOT EXISTS (SELECT 1 FROM alerts a WHERE a.alert_id = e.alert_id"
                    f" AND {_GAP_BELOW}))"
                    " ORDER BY e.next_attempt_at, e.id LIMIT ?" + self._db.skip_locked,
                    params,
                ).fetchall()
            ]
            if not ids:
                return []
            marks = ", ".join("?" for _ in ids)
            for alert_id, event_seq, done in c.execute(
                f"SELECT e.alert_id, e.event_seq, a.last_seq_delivered FROM events e JOIN alerts a"
                f" ON a.alert_id = e.alert_id WHERE e.id IN ({marks}) AND e.first_leased_at IS NULL AND {_GAP_BELOW}",
                ids,
            ).fetchall():
                self.gaps_skipped += 1
                _log.warning("outbox.gap_skipped", alert_id=alert_id, event_seq=event_seq,
                             missing=f"{int(done) + 1}..{int(event_seq) - 1}", waited_s=self._gap_wait_s,
                             action="the agent's events below it did not arrive in time (its alert_echo_s "
                             "should be below the bridge's outbox.gap_wait_s); the ticket goes on without them")
            c.execute(
                f"UPDATE events SET lease_owner = ?, lease_until = ?, leases = leases + 1,"
                f" first_leased_at = COALESCE(first_leased_at, ?) WHERE id IN ({marks})",
                [owner, now + lease_s, now, *ids],
            )
            return list(c.execute(
                f"SELECT {_EVENT_COLS} FROM events e LEFT JOIN alerts a ON a.alert_id = e.alert_id"
                f" WHERE e.id IN ({marks}) ORDER BY e.id",
                ids,
            ).fetchall())

        leased: list[LeasedEvent] = []
        for r in self._db.run(op):
            try:
                alert = AlertEvent.from_json(str(r[1]).encode(), max_bytes=MAX_ALERT_BYTES)
            except (ContractError, UnicodeError) as exc:
                self._dead_letter_corrupt(int(r[0]), owner, f"{exc}", now)
                continue
            leased.append(LeasedEvent(
                id=int(r[0]), alert=alert, desk=str(r[2]), attempts=int(r[3]), enqueued_at=float(r[4]),
                ticket_ref=None if r[5] is None else str(r[5]), leases=int(r[6]),
                first_leased_at=float(r[7]) if r[7] is not None else now,
                serviced_at=None if r[8] is None else float(r[8]),
                desk_status=None if r[9] is None else str(r[9]),
                create_sent_at=None if r[10] is None else float(r[10]),
            ))
        return leased

    def _dead_letter_corrupt(self, event_id: int, owner: str, detail: str, now: float) -> None:
        self.corrupt_rows += 1
        _log.error("outbox.corrupt_row", event_id=event_id, error=detail[:300],
                   action="the row was dead-lettered; inspect it with cloud-bridge outbox list --dead")

        def op(c: _Conn) -> None:
            c.execute(
                "INSERT INTO dead_letters (alert_id, event_seq, event_type, desk, payload, reason, attempts,"
                " failed_at) SELECT alert_id, event_seq, event_type, desk, payload, ?, attempts, ? FROM events"
                " WHERE id = ? AND lease_owner = ?",
                (f"corrupt_row: {detail}"[:1000], now, event_id, owner),
            )
            c.execute("DELETE FROM events WHERE id = ? AND lease_owner = ?", (event_id, owner))

        self._db.run(op)

    def complete(
        self,
        event: LeasedEvent,
        *,
        owner: str,
        ticket_ref: str | None,
        priority: str,
        opened_at: float,
        sla_deadline: float,
        new_promise: bool,
        acknowledged: bool,
        resolved_at: float | None,
        serviced_at: float | None = None,
    ) -> None:
        """The desk accepted the event: delete it and remember the ticket and its promise.

        Args:
            event: the leased event.
            owner: this replica's lease owner id.
            ticket_ref: the desk's reference (kept when None).
            priority: the ticket's current priority.
            opened_at: when the promise started (epoch s).
            sla_deadline: when the response is due (epoch s); an earlier deadline (escalation) replaces
                the stored one, a later one does not.
            new_promise: open or reopen: start the promise afresh (unacknowledged, not warned).
            acknowledged: someone took the alert in hand.
            resolved_at: set when the alert resolved; None re-opens a resolved record.
            serviced_at: set when this was the ``verifying`` event (the service visit); kept otherwise.
        """
        def op(c: _Conn) -> None:
            c.execute("DELETE FROM events WHERE id = ? AND lease_owner = ?", (event.id, owner))
            c.execute(
                "UPDATE alerts SET last_seq_delivered = ?, ticket_ref = COALESCE(?, ticket_ref), priority = ?,"
                " opened_at = CASE WHEN ? OR opened_at IS NULL THEN ? ELSE opened_at END,"
                " sla_deadline = CASE WHEN ? OR sla_deadline IS NULL OR ? < sla_deadline THEN ? ELSE sla_deadline END,"
                " acknowledged = CASE WHEN ? THEN 1 WHEN ? THEN 0 ELSE acknowledged END,"
                " warned = CASE WHEN ? THEN 0 ELSE warned END, resolved_at = ?,"
                " serviced_at = COALESCE(?, serviced_at),"
                " desk_status = CASE WHEN ? THEN NULL ELSE desk_status END"
                " WHERE alert_id = ?",
                (event.alert.event_seq, ticket_ref, priority, new_promise, opened_at, new_promise, sla_deadline,
                 sla_deadline, acknowledged, new_promise, new_promise, resolved_at, serviced_at, new_promise,
                 event.alert.alert_id),
            )

        self._db.run(op)

    def reschedule(self, event: LeasedEvent, *, owner: str, next_attempt_at: float, error: str, count: bool) -> None:
        """Give the event back for a later attempt; ``count`` says whether this was a failed attempt."""
        def op(c: _Conn) -> None:
            c.execute(
                "UPDATE events SET attempts = attempts + ?, next_attempt_at = ?, lease_owner = NULL,"
                " lease_until = NULL, last_error = ? WHERE id = ? AND lease_owner = ?",
                (1 if count else 0, next_attempt_at, error[:500], event.id, owner),
            )

        self._db.run(op)

    def dead_letter(self, event: LeasedEvent, *, owner: str, reason: str, now: float) -> None:
        """Move the event to the dead-letter table with the reason; later events of the alert go on."""
        def op(c: _Conn) -> None:
            row = c.execute(
                "SELECT alert_id, event_seq, event_type, desk, payload, attempts FROM events"
                " WHERE id = ? AND lease_owner = ?",
                (event.id, owner),
            ).fetchone()
            if row is None:
                return
            c.execute(
                "INSERT INTO dead_letters (alert_id, event_seq, event_type, desk, payload, reason, attempts,"
                " failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row[0], row[1], row[2], row[3], row[4], reason[:1000], int(row[5]) + 1, now),
            )
            c.execute("DELETE FROM events WHERE id = ?", (event.id,))
            # Given up: the alert's later events follow it without waiting for it as for a gap.
            c.execute("UPDATE alerts SET seen_through = ? WHERE alert_id = ? AND COALESCE(seen_through, last_seq_seen)"
                      " < ?", (row[1], row[0], row[1]))

        self._db.run(op)

    def release_config_holds(self, now: float) -> int:
        """Make due now every event waiting out a desk configuration problem (a start may bring the fix)."""
        return self._db.run(lambda c: int(c.execute(
            "UPDATE events SET next_attempt_at = ? WHERE next_attempt_at > ? AND last_error LIKE ?",
            (now, now, CONFIG_HOLD + "%"),
        ).rowcount))

    def release_owner(self, owner: str) -> int:
        """Release every lease held by ``owner`` (a restarted replica reclaims its work at once)."""
        return self._db.run(lambda c: int(c.execute(
            "UPDATE events SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?", (owner,)
        ).rowcount))

    def stats(self, now: float) -> OutboxStats:
        """Queue depth and oldest age (overall and per desk), dead letters and refused messages."""
        def op(c: _Conn) -> tuple[list[Any], Any, Any]:
            per = list(c.execute("SELECT desk, COUNT(*), MIN(enqueued_at) FROM events GROUP BY desk").fetchall())
            dead = c.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
            return per, dead, c.execute("SELECT COUNT(*) FROM refused").fetchone()[0]

        per, dead, refused = self._db.run(op)
        per_desk = {str(d): (int(n), max(0.0, now - float(oldest))) for d, n, oldest in per}
        depth = sum(n for n, _ in per_desk.values())
        oldest_age = max((age for _, age in per_desk.values()), default=0.0)
        return OutboxStats(depth=depth, oldest_age_s=oldest_age, dead_letters=int(dead), refused=int(refused),
                           per_desk=per_desk, dropped=self.dropped,
                           gaps_skipped=self.gaps_skipped)

    def refuse(self, *, topic: str, reason: str, detail: str, payload: bytes, now: float) -> None:
        """Keep a message intake refused, with the reason (bounded: the oldest go first)."""
        text = payload[:REFUSED_PAYLOAD_MAX].decode("utf-8", errors="replace")

        def op(c: _Conn) -> None:
            c.execute("INSERT INTO refused (topic, reason, detail, payload, received_at) VALUES (?, ?, ?, ?, ?)",
                      (topic[:1024], reason[:64], detail[:1000], text, now))
            c.execute("DELETE FROM refused WHERE id <= (SELECT MAX(id) FROM refused) - ?", (MAX_REFUSED,))

        self._db.run(op)

    def refused(self, limit: int = 100) -> list[RefusedRow]:
        """Refused messages, oldest first."""
        rows = self._db.run(lambda c: list(c.execute(
            "SELECT id, topic, reason, detail, received_at FROM refused ORDER BY id LIMIT ?", (limit,)).fetchall()))
        return [RefusedRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), float(r[4])) for r in rows]

    def purge_refused(self, ids: Sequence[int] | None) -> int:
        """Delete refused messages (all when ``ids`` is None); returns how many.

        There is no retry: a refused message can never be delivered as it is (its reason says why); the
        publisher re-sends a corrected one, which intake judges afresh.
        """
        where, params = self._id_filter(ids)
        return self._db.run(lambda c: int(c.execute("DELETE FROM refused" + where, params).rowcount))

    def mark_create_sent(self, event_id: int, now: float) -> None:
        """Note that a create for this event is about to go out (its answer may be lost)."""
        self._db.run(lambda c: c.execute(
            "UPDATE events SET create_sent_at = COALESCE(create_sent_at, ?) WHERE id = ?", (now, event_id)))

    def record_ticket_ref(self, alert_id: str, ticket_ref: str) -> None:
        """Remember the desk's reference as soon as a create succeeded, before the rest of the delivery."""
        self._db.run(lambda c: c.execute("UPDATE alerts SET ticket_ref = ? WHERE alert_id = ?",
                                         (ticket_ref, alert_id)))

    def desk_states(self, desk: str, limit: int = 10_000) -> list[DeskState]:
        """Every ticket of ``desk`` the bridge tracks (unresolved, or resolved within the retention)."""
        rows = self._db.run(lambda c: list(c.execute(
            "SELECT alert_id, desk, ticket_ref, desk_status, desk_assignee, resolved_at FROM alerts"
            " WHERE desk = ? AND ticket_ref IS NOT NULL ORDER BY alert_id LIMIT ?", (desk, limit)).fetchall()))
        return [DeskState(str(r[0]), str(r[1]), str(r[2]), None if r[3] is None else str(r[3]),
                          None if r[4] is None else str(r[4]), r[5] is not None) for r in rows]

    def set_desk_state(self, alert_id: str, *, status: str | None, assignee: str | None) -> None:
        """Record what the bridge saw of the ticket in its desk (after acting on a change)."""
        self._db.run(lambda c: c.execute("UPDATE alerts SET desk_status = ?, desk_assignee = ? WHERE alert_id = ?",
                                         (status, assignee, alert_id)))

    def mark_acknowledged(self, alert_id: str) -> None:
        """Someone took the ticket in hand in the desk: the promise is kept, no SLA warning."""
        self._db.run(lambda c: c.execute("UPDATE alerts SET acknowledged = 1 WHERE alert_id = ?", (alert_id,)))

    def sync_cursor(self, desk: str) -> str | None:
        """Where the desk's last poll ended (None before the first)."""
        row = self._db.run(lambda c: c.execute("SELECT cursor_value FROM sync_cursors WHERE desk = ?",
                                               (desk,)).fetchone())
        return None if row is None else str(row[0])

    def set_sync_cursor(self, desk: str, cursor: str) -> None:
        """Remember where the desk's poll ended."""
        def op(c: _Conn) -> None:
            c.execute("DELETE FROM sync_cursors WHERE desk = ?", (desk,))
            c.execute("INSERT INTO sync_cursors (desk, cursor_value) VALUES (?, ?)", (desk, cursor))

        self._db.run(op)

    def pending(self, limit: int = 100) -> list[tuple[int, str, int, str, str, int, float, str | None]]:
        """Queued events: id, alert_id, event_seq, event_type, desk, attempts, next_attempt_at, last_error."""
        rows = self._db.run(lambda c: list(c.execute(
            "SELECT id, alert_id, event_seq, event_type, desk, attempts, next_attempt_at, last_error"
            " FROM events ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()))
        return [(int(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4]), int(r[5]), float(r[6]), r[7]) for r in rows]

    def dead_letters(self, limit: int = 100) -> list[DeadLetterRow]:
        """Dead-lettered events, oldest first."""
        rows = self._db.run(lambda c: list(c.execute(
            "SELECT id, alert_id, event_seq, event_type, desk, reason, attempts, failed_at FROM dead_letters"
            " ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()))
        return [DeadLetterRow(int(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4]), str(r[5]), int(r[6]),
                              float(r[7])) for r in rows]

    def retry_dead(self, ids: Sequence[int] | None, *, now: float) -> int:
        """Move dead letters (all when ``ids`` is None) back into the queue, due now, attempts reset."""
        where, params = self._id_filter(ids)
        def op(c: _Conn) -> int:
            rows = c.execute(
                "SELECT id, alert_id, event_seq, event_type, desk, payload FROM dead_letters" + where, params
            ).fetchall()
            for r in rows:
                c.execute(
                    "INSERT INTO events (alert_id, event_seq, event_type, desk, payload, enqueued_at, next_attempt_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id, event_seq) DO NOTHING",
                    (r[1], r[2], r[3], r[4], r[5], now, now),
                )
                c.execute("DELETE FROM dead_letters WHERE id = ?", (r[0],))
            return len(rows)

        return self._db.run(op)

    def purge_dead(self, ids: Sequence[int] | None) -> int:
        """Delete dead letters (all when ``ids`` is None); returns how many."""
        where, params = self._id_filter(ids)
        return self._db.run(lambda c: int(c.execute("DELETE FROM dead_letters" + where, params).rowcount))

    @staticmethod
    def _id_filter(ids: Sequence[int] | None) -> tuple[str, list[Any]]:
        if ids is None:
            return "", []
        if not ids:
            return " WHERE 1 = 0", []
        return " WHERE id IN (" + ", ".join("?" for _ in ids) + ")", [int(i) for i in ids]

    def ticket(self, alert_id: str) -> TicketRow | None:
        """What the bridge remembers about an alert's ticket."""
        r = self._db.run(lambda c: c.execute(
            "SELECT alert_id, desk, ticket_ref, priority, opened_at, sla_deadline, acknowledged, warned,"
            " resolved_at FROM alerts WHERE alert_id = ?",
            (alert_id,),
        ).fetchone())
        return None if r is None else _ticket_row(r)

    def open_tickets(self, limit: int = 1000) -> list[TicketRow]:
        """Delivered, unresolved, unacknowledged tickets not yet warned about: candidates for SLA warnings."""
        rows = self._db.run(lambda c: list(c.execute(
            "SELECT alert_id, desk, ticket_ref, priority, opened_at, sla_deadline, acknowledged, warned,"
            " resolved_at FROM alerts WHERE sla_deadline IS NOT NULL AND resolved_at IS NULL"
            " AND acknowledged = 0 AND warned = 0 ORDER BY sla_deadline LIMIT ?",
            (limit,),
        ).fetchall()))
        return [_ticket_row(r) for r in rows]

    def mark_warned(self, alert_id: str) -> None:
        """Record that the SLA warning for this ticket went out."""
        self._db.run(lambda c: c.execute("UPDATE alerts SET warned = 1 WHERE alert_id = ?", (alert_id,)))

    def prune_alerts(self, *, now: float) -> int:
        """Forget alerts resolved more than :data:`ALERT_RETENTION_S` ago with nothing queued."""
        return self._db.run(lambda c: int(c.execute(
            "DELETE FROM alerts WHERE resolved_at IS NOT NULL AND resolved_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.alert_id = alerts.alert_id)",
            (now - ALERT_RETENTION_S,),
        ).rowcount))


def _ticket_row(r: Sequence[Any]) -> TicketRow:
    return TicketRow(
        alert_id=str(r[0]), desk=str(r[1]), ticket_ref=None if r[2] is None else str(r[2]),
        priority=None if r[3] is None else str(r[3]), opened_at=None if r[4] is None else float(r[4]),
        sla_deadline=None if r[5] is None else float(r[5]), acknowledged=bool(r[6]), warned=bool(r[7]),
        resolved_at=None if r[8] is None else float(r[8]),
    )


def open_sqlite(path: Path, *, max_events: int, synchronous_full: bool = True,
                gap_wait_s: float = GAP_WAIT_S) -> Outbox:
    """An outbox in a SQLite file (WAL; ``synchronous=FULL`` unless told otherwise)."""
    return Outbox(_Sqlite(path, synchronous_full=synchronous_full), max_events=max_events, gap_wait_s=gap_wait_s)


def open_postgres(dsn: str, *, max_events: int, application_name: str | None = None,
                  monotonic: Callable[[], float] = time.monotonic, gap_wait_s: float = GAP_WAIT_S) -> Outbox:
    """An outbox in PostgreSQL, shareable by several replicas (psycopg 3 imported lazily).

    Args:
        dsn: libpq connection string or URI.
        max_events: the outbox bound.
        application_name: shown in ``pg_stat_activity``; default the DSN's, else
            :data:`DEFAULT_APPLICATION_NAME`.
        monotonic: seconds that pace reconnects (:data:`RECONNECT_BACKOFF`); injectable for tests.
        gap_wait_s: how long an event waits for missing lower seqs of its alert.

    Raises:
        OutboxError: the database cannot be reached or the schema cannot be created.
    """
    return Outbox(_Postgres(dsn, application_name=application_name, monotonic=monotonic), max_events=max_events,
                  gap_wait_s=gap_wait_s)
