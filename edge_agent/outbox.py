"""Durable outbox of events to publish (DESIGN.md section 4): SQLite, WAL, ``synchronous=FULL``.

An event is committed here before anything is published and deleted only after the broker's
PUBACK. With ``synchronous=FULL`` in WAL mode every commit is fsynced, so a row that
:meth:`Outbox.put_many` stored on disk survives ``kill -9`` and power loss
(https://www.sqlite.org/pragma.html#pragma_synchronous). Acknowledgements are collected and deleted
in one transaction per :meth:`Outbox.commit` (the agent calls it once per loop pass), not one
fsync per PUBACK; a row acknowledged but not yet deleted when the process dies is published
again after the restart, which receivers drop by ``(alert_id, event_seq)``.

Alert ledger: every alert event also upserts its alert's row in the ``alerts`` table in the same
transaction (alert id, site, asset, ``event_seq``, the event), and that row outlives the PUBACK.
It is what a restart after ``kill -9`` reconciles the restored models with, so an alert is never
re-opened under a new id nor an ``event_seq`` reused although model checkpoints are taken only on a
timer. Rows of resolved alerts are forgotten once a checkpoint covers them
(:meth:`Outbox.forget_resolved`); rows of open alerts stay, so an asset whose checkpoint cannot be
restored still knows its open alerts.

When the disk refuses a write (full, read-only, I/O error) nothing accepted is lost: the events
stay in a bounded memory tier, in order, are published from there, and are written as soon as
the disk takes them again (retried at most once a second). :attr:`Outbox.health` says so.

A file that is not a usable outbox (empty, truncated, garbage, another schema) is moved aside as
``<name>.corrupt-<UTC time>``; every row that can still be read is salvaged into a fresh outbox,
and the count of salvaged and unreadable rows is logged and kept in :attr:`Outbox.salvaged` and
:attr:`Outbox.lost`.

Bound and drop policy, on disk (``max_rows``) and in memory (``memory_max_bytes``):

1. a new retained ``state`` row supersedes older pending ``state`` rows of the same topic: those are
   deleted at once (a retained message only matters in its latest version; not counted as a drop);
2. then the oldest ``updated`` rows are dropped (a later update or the resolve carries the news);
3. then the oldest ``state`` rows;
4. only then the oldest ``opened``/``resolved`` rows, logged as errors: losing one breaks a ticket.

Drops are counted per kind in :attr:`Outbox.dropped` and logged. One owner: the agent's main loop.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pdm_common.logs import get_logger
from pdm_common.sqlite_files import create_atomically

__all__ = ["AlertRecord", "AlertRef", "Outbox", "OutboxEntry", "OutboxHealth", "OutboxItem", "OutboxKind"]

OutboxKind = Literal["opened", "updated", "resolved", "state"]
_KINDS: tuple[OutboxKind, ...] = ("opened", "updated", "resolved", "state")
_EVENT_KINDS: tuple[OutboxKind, ...] = ("opened", "updated", "resolved")
_DROP_ORDER: tuple[tuple[OutboxKind, ...], ...] = (("updated",), ("state",), ("opened", "resolved"))

_BUSY_TIMEOUT_S = 5.0
"""How long a write waits for another connection's lock before failing (sqlite3 ``timeout``)."""
_RETRY_S = 1.0
"""Least time between two attempts to write the memory tier (or reopen the file) after a failure."""
_SQL_VARS = 500
"""Ids per ``IN (…)`` list: below SQLite's default limit of 999 host parameters on old builds."""
_SCHEMA_VERSION = 2
"""``PRAGMA user_version``: 0 = the first schema (no alert columns, no ledger), 2 = this one."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
    retain INTEGER NOT NULL CHECK (retain IN (0, 1)),
    kind TEXT NOT NULL CHECK (kind IN ('opened', 'updated', 'resolved', 'state')),
    created_at REAL NOT NULL DEFAULT (julianday('now')),
    alert_id TEXT,
    event_seq INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (kind, id);
CREATE INDEX IF NOT EXISTS outbox_state_topic ON outbox (topic) WHERE kind = 'state';
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    asset TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    ord INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_asset ON alerts (site, asset);
"""
_SCHEMA_SCRIPT = f"{_SCHEMA}\nPRAGMA user_version = {_SCHEMA_VERSION};"
"""The outbox's tables and schema version, idempotent: builds a new file and brings an existing one up to date."""
_REQUIRED_COLUMNS = {"id", "topic", "payload", "qos", "retain", "kind", "created_at"}
_LEGACY_COLUMNS = (("alert_id", "TEXT"), ("event_seq", "INTEGER"))

_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AlertRef:
    """Which alert event an outbox row carries (for the ledger)."""

    alert_id: str
    site: str
    asset: str
    event_seq: int


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An event to store: where to publish it and what it is."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: OutboxKind
    alert: AlertRef | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A stored event with its id (the handle for :meth:`Outbox.ack`)."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: OutboxKind
    alert_id: str | None = None
    """The alert an alert event belongs to, and its ``event_seq`` (None for states)."""
    event_seq: int | None = None


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """The newest event of one alert, as the ledger holds it; ``ord`` orders records by recency."""

    alert_id: str
    site: str
    asset: str
    event_seq: int
    kind: OutboxKind
    payload: bytes
    ord: int


@dataclass(frozen=True, slots=True)
class OutboxHealth:
    """What the outbox can say about itself: events held in memory, and why."""

    in_memory: int
    memory_bytes: int
    write_error: str | None

    @property
    def ok(self) -> bool:
        """Everything accepted is on disk."""
        return self.write_error is None and self.in_memory == 0


@dataclass(slots=True)
class _Held:
    """An event kept in memory while the disk refuses writes."""

    id: int
    entry: OutboxEntry
    created_at: float = field(default_factory=time.time)


class Outbox:
    """A bounded, durable FIFO of events awaiting the broker's acknowledgement.

    Args:
        path: the SQLite file (created with its directory's permissions).
        max_rows: the bound on disk; see the module docstring for what is dropped first.
        memory_max_bytes: the bound of the memory tier (payload bytes) while the disk refuses writes.

    Never raises for a disk or file problem: those are logged once per condition and reported in
    :attr:`health`.
    """

    def __init__(self, path: Path | str, *, max_rows: int, memory_max_bytes: int = 16 * 1024 * 1024) -> None:
        if max_rows < 1 or memory_max_bytes < 1:
            raise ValueError("max_rows and memory_max_bytes must be at least 1")
        self.path = Path(path)
        self.max_rows = max_rows
        self.memory_max_bytes = memory_max_bytes
        self.dropped: dict[str, int] = dict.fromkeys(_KINDS, 0)
        self.write_failures = 0
        self.salvaged = 0
        self.lost = 0
        self._db: sqlite3.Connection | None = None
        self._count = 0  # rows on disk, acknowledged-but-not-yet-deleted ones included
        self._next_id = 1
        self._acked: set[int] = set()  # on disk, acknowledged, delete not yet committed
        self._held: list[_Held] = []  # memory tier, oldest first; always newer than every disk row
        self._held_bytes = 0
        self._error: str | None = None
        self._retry_at = 0.0
        self._open()

    # --- public surface ---------------------------------------------------------------------------

    def put_many(self, items: Iterable[OutboxEntry]) -> list[int]:
        """Store events in order, on disk in one transaction or else in memory; returns their ids."""
        batch = list(items)
        if not batch:
            return []
        ids = list(range(self._next_id, self._next_id + len(batch)))
        self._next_id += len(batch)
        rows = [_Held(i, e) for i, e in zip(ids, batch, strict=True)]
        if self._held or not self._write(rows):
            # Once anything waits in memory, newer events queue behind it: order is kept.
            self._hold(rows)
            self._retry()
        return ids

    def pending(self, limit: int, *, after: int = 0) -> list[OutboxItem]:
        """Up to ``limit`` unacknowledged events with an id above ``after``, oldest first."""
        out: list[OutboxItem] = []
        if self._db is not None and self._count > len(self._acked):
            try:
                rows = self._db.execute(
                    "SELECT id, topic, payload, qos, retain, kind, alert_id, event_seq FROM outbox WHERE id > ?"
                    " ORDER BY id LIMIT ?",
                    (after, limit + len(self._acked)),
                ).fetchall()
            except sqlite3.Error as exc:
                self._failed("read", exc)
                rows = []
            out = [OutboxItem(int(i), t, bytes(p), int(q), bool(r), k, a, None if s is None else int(s))
                   for i, t, p, q, r, k, a, s in rows if int(i) not in self._acked][:limit]
        for h in self._held:
            if len(out) >= limit:
                break
            if h.id > after:
                e = h.entry
                ref = e.alert
                out.append(OutboxItem(h.id, e.topic, e.payload, e.qos, e.retain, e.kind,
                                      ref.alert_id if ref else None, ref.event_seq if ref else None))
        return out

    def ack(self, item_id: int) -> None:
        """Mark an event the broker acknowledged; deleted on the next :meth:`commit` (unknown ids are ignored)."""
        for k, h in enumerate(self._held):
            if h.id == item_id:
                del self._held[k]
                self._held_bytes -= len(h.entry.payload)
                return
        if item_id < self._next_id:
            self._acked.add(item_id)

    def commit(self) -> None:
        """Delete what was acknowledged (one transaction) and retry writing the memory tier."""
        self._retry()
        if not self._acked or self._db is None:
            return
        done = sorted(self._acked)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            deleted = 0
            for chunk in _chunks(done, _SQL_VARS):
                cur = self._db.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})", chunk)
                deleted += cur.rowcount
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._failed("delete", exc)  # kept in _acked: never re-sent in this run, deleted later
            return
        self._count -= deleted
        self._acked.clear()
        if deleted:
            # A transaction that changed nothing wrote nothing: it proves nothing about the disk
            # (a read-only state directory "recovered" that way between two failed writes).
            self._recovered()

    def alerts(self) -> list[AlertRecord]:
        """The newest event of every alert in the ledger, oldest first."""
        records: dict[str, AlertRecord] = {}
        if self._db is not None:
            try:
                rows = self._db.execute(
                    "SELECT alert_id, site, asset, event_seq, kind, payload, ord FROM alerts ORDER BY ord"
                ).fetchall()
            except sqlite3.Error as exc:
                self._failed("read", exc)
                rows = []
            for a, s, asset, seq, k, p, o in rows:
                records[a] = AlertRecord(a, s, asset, int(seq), k, bytes(p), int(o))
        for h in self._held:  # events still in memory are newer than the ledger on disk
            ref = h.entry.alert
            if ref is not None:
                records[ref.alert_id] = AlertRecord(ref.alert_id, ref.site, ref.asset, ref.event_seq, h.entry.kind,
                                                    h.entry.payload, h.id)
        return sorted(records.values(), key=lambda r: r.ord)

    def forget_resolved(self, covered: Iterable[tuple[str, str, int]]) -> None:
        """Drop ledger rows of resolved alerts that a saved checkpoint covers.

        Args:
            covered: ``(site, asset, last_id)``: the asset's checkpoint was taken when the outbox
                had assigned ids up to ``last_id`` (see :attr:`last_id`).
        """
        todo = list(covered)
        if not todo or self._db is None:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "DELETE FROM alerts WHERE site = ? AND asset = ? AND ord <= ? AND kind = 'resolved'", todo
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._failed("delete", exc)

    @property
    def last_id(self) -> int:
        """The id of the newest event stored (0 before the first)."""
        return self._next_id - 1

    @property
    def health(self) -> OutboxHealth:
        """Events held in memory and the current write error, if any."""
        return OutboxHealth(len(self._held), self._held_bytes, self._error)

    def oldest_age_s(self) -> float | None:
        """Seconds the oldest waiting event has been stored (None when empty), for the age metric."""
        age_d = None
        if self._db is not None and self._count > len(self._acked):
            try:
                (age_d,) = self._db.execute("SELECT julianday('now') - MIN(created_at) FROM outbox").fetchone()
            except sqlite3.Error as exc:
                self._failed("read", exc)
        if age_d is not None:
            return max(0.0, float(age_d) * 86_400.0)
        return max(0.0, time.time() - self._held[0].created_at) if self._held else None

    def __len__(self) -> int:
        return self._count - len(self._acked) + len(self._held)

    def close(self) -> None:
        """Commit acknowledgements, try the memory tier a last time, close (idempotent)."""
        if self._db is None:
            return
        self._retry_at = 0.0
        self.commit()
        if self._held:
            _log.error("outbox.unwritten_at_exit", events=len(self._held), error=self._error,
                       action="free space or fix permissions of the state directory; these events were published "
                              "if the broker acknowledged them, the rest are lost with this process")
        self._db.close()
        self._db = None

    # --- writing ----------------------------------------------------------------------------------

    def _write(self, rows: list[_Held]) -> bool:
        """Insert ``rows`` (ids assigned) with their ledger rows in one transaction; False on failure."""
        if self._db is None:
            return False
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            superseded_ids: list[int] = []
            for topic in {h.entry.topic for h in rows if h.entry.kind == "state"}:
                superseded_ids += [int(r[0]) for r in db.execute(
                    "SELECT id FROM outbox WHERE kind = 'state' AND topic = ?", (topic,)).fetchall()]
                db.execute("DELETE FROM outbox WHERE kind = 'state' AND topic = ?", (topic,))
            superseded = len(superseded_ids)
            db.executemany(
                "INSERT INTO outbox (id, topic, payload, qos, retain, kind, created_at, alert_id, event_seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(h.id, h.entry.topic, h.entry.payload, h.entry.qos, int(h.entry.retain), h.entry.kind,
                  _julian(h.created_at), h.entry.alert.alert_id if h.entry.alert else None,
                  h.entry.alert.event_seq if h.entry.alert else None) for h in rows],
            )
            ledger = [(h.entry.alert.alert_id, h.entry.alert.site, h.entry.alert.asset, h.entry.alert.event_seq,
                       h.entry.kind, h.entry.payload, h.id) for h in rows if h.entry.alert is not None]
            if ledger:
                db.executemany(
                    "INSERT INTO alerts (alert_id, site, asset, event_seq, kind, payload, ord)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id) DO UPDATE SET"
                    " event_seq = excluded.event_seq, kind = excluded.kind, payload = excluded.payload,"
                    " ord = excluded.ord WHERE excluded.event_seq >= alerts.event_seq",
                    ledger,
                )
            count = self._count + len(rows) - superseded
            drops = self._enforce_bound(count) if count > self.max_rows else {}
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            self._failed("write", exc)
            return False
        self._count = count - sum(drops.values())
        # A superseded row may have been acknowledged already (its delete waits for commit()): it is
        # gone now, so it must not be subtracted a second time (len() went negative in a test).
        self._acked.difference_update(superseded_ids)
        self._report_drops(drops, "disk")
        self._recovered()
        return True

    def _enforce_bound(self, count: int) -> dict[str, int]:
        assert self._db is not None
        drops: dict[str, int] = {}
        excess = count - self.max_rows
        for kinds in _DROP_ORDER:
            if excess <= 0:
                break
            marks = ",".join("?" * len(kinds))
            victims = self._db.execute(
                f"SELECT id, kind FROM outbox WHERE kind IN ({marks}) ORDER BY id LIMIT ?", (*kinds, excess)
            ).fetchall()
            for chunk in _chunks([int(i) for i, _k in victims], _SQL_VARS):
                self._db.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            for _id, kind in victims:
                drops[kind] = drops.get(kind, 0) + 1
            self._acked.difference_update(int(i) for i, _k in victims)
            excess -= len(victims)
        return drops

    def _hold(self, rows: list[_Held]) -> None:
        states = {h.entry.topic for h in rows if h.entry.kind == "state"}
        if states:
            kept = [h for h in self._held if not (h.entry.kind == "state" and h.entry.topic in states)]
            self._held_bytes -= sum(len(h.entry.payload) for h in self._held) - sum(len(h.entry.payload) for h in kept)
            self._held = kept
        self._held += rows
        self._held_bytes += sum(len(h.entry.payload) for h in rows)
        drops: dict[str, int] = {}
        for kinds in _DROP_ORDER:
            while self._held_bytes > self.memory_max_bytes:
                victim = next((h for h in self._held if h.entry.kind in kinds), None)
                if victim is None:
                    break
                self._held.remove(victim)
                self._held_bytes -= len(victim.entry.payload)
                drops[victim.entry.kind] = drops.get(victim.entry.kind, 0) + 1
        self._report_drops(drops, "memory")

    def _retry(self) -> None:
        now = time.monotonic()
        if not (self._held or self._db is None or self._error is not None) or now < self._retry_at:
            return
        self._retry_at = now + _RETRY_S
        if self._db is None:
            self._open()
        if self._db is not None and self._held and self._write(self._held):
            _log.info("outbox.memory_written", events=len(self._held))
            self._held, self._held_bytes = [], 0
        elif self._db is not None and not self._held and self._error is not None and self._probe():
            self._recovered()  # nothing waits to be written, and the disk takes writes again

    def _probe(self) -> bool:
        """One real write (the header's user_version, rewritten as it is): does the disk take writes?"""
        assert self._db is not None
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            return False
        return True

    def _report_drops(self, drops: dict[str, int], where: str) -> None:
        for kind, n in drops.items():
            self.dropped[kind] += n
            log = _log.error if kind in ("opened", "resolved") else _log.warning
            log("outbox.dropped", kind=kind, rows=n, total=self.dropped[kind], where=where,
                max_rows=self.max_rows, memory_max_bytes=self.memory_max_bytes,
                action="the broker is unreachable for long; check the uplink or raise outbox_max_rows"
                if where == "disk" else "the state directory refuses writes: free space or fix its permissions")

    # --- conditions -------------------------------------------------------------------------------

    def _failed(self, what: str, exc: sqlite3.Error | OSError) -> None:
        if what == "write":
            self.write_failures += 1
        error = f"{what}: {exc}"
        if self._error is None:
            # One line per condition (and one when it clears), not one per retry.
            event = {"open": "outbox.unavailable", "read": "outbox.read_failed"}.get(what, "outbox.write_failed")
            _log.error(event, path=str(self.path),
                       error=error, kept_in_memory=len(self._held),
                       action="free disk space or make the state directory writable (doctor names it); "
                              "events are kept in memory, published, and written when the disk takes them")
        self._error = error

    def _recovered(self) -> None:
        if self._error is not None:
            _log.info("outbox.write_recovered", path=str(self.path), previous_error=self._error)
            self._error = None

    def _rollback(self) -> None:
        if self._db is None:
            return
        # Nothing may have begun, or the failed statement already rolled it back.
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    # --- opening, migration, salvage --------------------------------------------------------------

    def _open(self) -> None:
        try:
            problem = _unusable(self.path)
            if problem is not None:
                self._salvage(problem)
            create_atomically(self.path, _SCHEMA_SCRIPT)
            self._db = _connect(self.path)
            self._db.executescript(_SCHEMA_SCRIPT)  # an existing file: the tables it may lack, this version
            (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            (top,) = self._db.execute(
                "SELECT MAX(m) FROM (SELECT MAX(id) AS m FROM outbox UNION ALL "
                "SELECT seq FROM sqlite_sequence WHERE name = 'outbox' UNION ALL SELECT MAX(ord) FROM alerts)"
            ).fetchone()
        except (sqlite3.Error, OSError) as exc:
            if self._db is not None:
                self._db.close()
            self._db = None
            self._failed("open", exc)
            return
        self._count = int(count)
        self._next_id = max(self._next_id, int(top or 0) + 1)
        self._recovered()

    def _salvage(self, problem: str) -> None:
        """Move an unusable file aside and copy every readable row into a fresh outbox."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.replace(Path(f"{aside}{suffix}"))
        rows, ledger, unreadable, top = _read_what_you_can(_readable_copy(aside))

        def copy(fresh: sqlite3.Connection) -> None:
            fresh.executemany(
                "INSERT OR IGNORE INTO outbox (id, topic, payload, qos, retain, kind, created_at, alert_id,"
                " event_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            fresh.executemany(
                "INSERT OR IGNORE INTO alerts (alert_id, site, asset, event_seq, kind, payload, ord)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", ledger)

        create_atomically(self.path, _SCHEMA_SCRIPT, copy)
        self.salvaged += len(rows)
        self.lost += unreadable or 0
        _log.error("outbox.corrupt", path=str(self.path), problem=problem, moved_to=str(aside),
                   salvaged=len(rows), alerts_salvaged=len(ledger),
                   lost=unreadable if unreadable is not None else (
                       f"unknown, at most {max(0, top - len(rows))} (ids up to {top} were assigned)" if top is not None
                       else "unknown: the file does not say how many it held"),
                   action="nothing to do for the salvaged events; check the disk (dmesg, SMART) and keep "
                          f"{aside.name} for a post-mortem")


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error:
        db.close()
        raise
    return db


def _unusable(path: Path) -> str | None:
    """Why an existing file cannot be used as it is (None: absent, or fine, or migratable)."""
    if not path.exists():
        return None
    empty = path.stat().st_size == 0  # only a valid -wal beside it can still hold the outbox
    try:
        # Read-write: a read-only handle cannot roll back the hot journal or rebuild the WAL index a
        # crash leaves, and calls that healthy file unreadable (tests/chaos/test_power_loss.py).
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=_BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        return f"cannot open: {exc}"
    try:
        (check,) = db.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            return f"integrity check: {str(check)[:200]}"
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "outbox" not in tables:
            if empty:
                return "empty file"  # 0 bytes, and no WAL (or a garbage one) to recover it from
            return "no outbox table" if tables else None  # an empty database is a fresh outbox
        columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
        if not columns >= _REQUIRED_COLUMNS:
            return f"another schema (columns {sorted(columns)[:12]})"
    except sqlite3.Error as exc:
        return f"unreadable: {exc}"
    finally:
        db.close()
    _migrate(path, columns)
    return None


def _migrate(path: Path, columns: set[str]) -> None:
    """Bring a first-schema outbox up to date in place (its rows are kept)."""
    missing = [(name, kind) for name, kind in _LEGACY_COLUMNS if name not in columns]
    if not missing:
        return
    db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        for name, kind in missing:
            db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
    finally:
        db.close()
    _log.info("outbox.migrated", path=str(path), added=[name for name, _ in missing])


_Row = tuple[int, str, bytes, int, int, str, float, str | None, int | None]
_LedgerRow = tuple[str, str, str, int, str, bytes, int]


def _readable_copy(aside: Path) -> Path:
    """A copy of a damaged file that SQLite will open: its header's page count cut to the pages present.

    A file cut short (a torn write, a full disk) still claims its old size in the header (bytes 28-31,
    https://www.sqlite.org/fileformat.html#the_database_header) and SQLite refuses the whole file;
    with the count fixed, every page that is there can be read. Returns ``aside`` itself when it is
    not a SQLite file or the copy cannot be written.
    """
    try:
        blob = bytearray(aside.read_bytes())
    except OSError:
        return aside
    if not blob.startswith(b"SQLite format 3\x00") or len(blob) < 100:
        return aside
    page = int.from_bytes(blob[16:18], "big")
    page = 65_536 if page == 1 else page
    pages = len(blob) // page if page >= 512 else 0
    if pages == 0 or int.from_bytes(blob[28:32], "big") <= pages:
        return aside
    blob[28:32] = pages.to_bytes(4, "big")
    copy = aside.with_name(aside.name + ".salvage")
    try:
        copy.write_bytes(bytes(blob[: pages * page]))
    except OSError:
        return aside
    return copy


def _read_what_you_can(path: Path) -> tuple[list[_Row], list[_LedgerRow], int | None, int | None]:
    """Rows of a damaged outbox that can still be read, its ledger, how many rows could not be, and its top id.

    The count of unreadable rows is None when the file does not say how many it held (an empty
    file, garbage, a table whose pages are gone); the highest id ever assigned, when readable,
    bounds it.
    """
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S)
    except sqlite3.Error:
        return [], [], None, None
    try:
        try:
            columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
        except sqlite3.Error:
            return [], [], None, None
        if not {"id", "topic", "payload"} <= columns:
            return [], [], None if not columns else 0, None
        rows, invalid = _scan(db, columns)
        try:
            (count,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            lost: int | None = max(0, int(count) - len(rows))
        except sqlite3.Error:
            lost = invalid or None  # the rows we saw but could not use; the rest of the count is unknown
        return rows, _scan_ledger(db), lost, _highest_id(db)
    finally:
        db.close()
        if path.name.endswith(".salvage"):
            path.unlink(missing_ok=True)


def _highest_id(db: sqlite3.Connection) -> int | None:
    try:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


_SKIP_CAP = 1 << 40
"""Ids beyond this are not probed when skipping damaged pages (row ids grow by one per event)."""


def _scan(db: sqlite3.Connection, columns: set[str]) -> tuple[list[_Row], int]:
    """Read the outbox table in id order, skipping pages that fail; returns the rows and the invalid ones.

    A damaged page stops a scan; the next readable id is found by probing ahead in growing steps,
    then narrowing back (a probe seeks the B-tree to one id: it fails only if that id's page is bad).
    """
    select = ", ".join(c if c in columns else d for c, d in (
        ("id", "id"), ("topic", "topic"), ("payload", "payload"), ("qos", "1"), ("retain", "0"), ("kind", "NULL"),
        ("created_at", "julianday('now')"), ("alert_id", "NULL"), ("event_seq", "NULL")))

    def readable(after: int) -> bool:
        try:
            db.execute("SELECT id FROM outbox WHERE id > ? ORDER BY id LIMIT 1", (after,)).fetchone()
        except sqlite3.Error:
            return False
        return True

    rows: list[_Row] = []
    invalid = 0
    after = 0
    while after < _SKIP_CAP:
        try:
            for row in db.execute(f"SELECT {select} FROM outbox WHERE id > ? ORDER BY id", (after,)):
                after = int(row[0])
                fixed = _valid_row(row)
                if fixed is None:
                    invalid += 1
                else:
                    rows.append(fixed)
            break
        except sqlite3.Error:
            step = 1
            while after + step < _SKIP_CAP and not readable(after + step):
                step *= 2
            lo, hi = after + step // 2, after + step  # lo fails (or is the last row read), hi reads
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if readable(mid) else (mid, hi)
            after = hi
    return rows, invalid


def _valid_row(row: tuple[object, ...]) -> _Row | None:
    """A salvaged row made consistent (kind read from the payload when the schema lacked it), or None."""
    row_id, topic, payload, qos, retain, kind, created, alert_id, seq = row
    if not isinstance(row_id, int) or not isinstance(topic, str) or not isinstance(payload, bytes | str):
        return None
    body = payload.encode() if isinstance(payload, str) else payload
    if kind not in _KINDS:
        kind = "state" if topic.endswith("/state") else _event_kind(body)
        if kind is None:
            return None
    return (row_id, topic, body, qos if qos in (0, 1, 2) else 1, 1 if retain else 0, str(kind),
            float(created) if isinstance(created, int | float) and math.isfinite(created) else _julian(time.time()),
            alert_id if isinstance(alert_id, str) else None, seq if isinstance(seq, int) else None)


def _event_kind(payload: bytes) -> OutboxKind | None:
    for kind in _EVENT_KINDS:
        if f'"event":"{kind}"'.encode() in payload or f'"event": "{kind}"'.encode() in payload:
            return kind
    return None


def _scan_ledger(db: sqlite3.Connection) -> list[_LedgerRow]:
    try:
        rows = db.execute("SELECT alert_id, site, asset, event_seq, kind, payload, ord FROM alerts").fetchall()
    except sqlite3.Error:
        return []
    return [(a, s, x, int(q), k, bytes(p), int(o)) for a, s, x, q, k, p, o in rows if k in _KINDS]


def _julian(epoch_s: float) -> float:
    """Unix time as a Julian day number, the unit of ``julianday('now')``."""
    return epoch_s / 86_400.0 + 2_440_587.5


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    it = iter(ids)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
