"""Durable outbox of events to publish (DESIGN.md section 4): SQLite, WAL, ``synchronous=FULL``.

An event is committed here before anything is published and deleted (:meth:`Outbox.ack`) only
after the broker's PUBACK; the app keeps the PUBACK ``mid`` -> outbox ``id`` map, not this module.
With ``synchronous=FULL`` in WAL mode every commit is fsynced, so a row that :meth:`put_many`
returned survives ``kill -9`` and power loss (https://www.sqlite.org/pragma.html#pragma_synchronous).

Bound and drop policy, when a put would exceed ``max_rows``:

1. a new retained ``state`` row supersedes older pending ``state`` rows of the same topic: those are
   deleted at once (a retained message only matters in its latest version; not counted as a drop);
2. then the oldest ``updated`` rows are dropped (a later update or the resolve carries the news);
3. then the oldest ``state`` rows;
4. only then the oldest ``opened``/``resolved`` rows, logged as errors: losing one breaks a ticket.

Drops are counted per kind in :attr:`Outbox.dropped` and logged.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge_agent.errors import OutboxError
from pdm_common.logs import get_logger

__all__ = ["Outbox", "OutboxEntry", "OutboxItem", "OutboxKind"]

OutboxKind = Literal["opened", "updated", "resolved", "state"]
_KINDS = ("opened", "updated", "resolved", "state")
_DROP_ORDER: tuple[tuple[str, ...], ...] = (("updated",), ("state",), ("opened", "resolved"))

_BUSY_TIMEOUT_S = 5.0
"""How long a write waits for another connection's lock before failing (sqlite3 ``timeout``)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL CHECK (qos IN (0, 1, 2)),
    retain INTEGER NOT NULL CHECK (retain IN (0, 1)),
    kind TEXT NOT NULL CHECK (kind IN ('opened', 'updated', 'resolved', 'state')),
    created_at REAL NOT NULL DEFAULT (julianday('now'))
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (kind, id);
"""

_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An event to store: where to publish it and what it is."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: OutboxKind


@dataclass(frozen=True, slots=True)
class OutboxItem(OutboxEntry):
    """A stored event with its row id (the handle for :meth:`Outbox.ack`)."""

    id: int


class Outbox:
    """A bounded, durable FIFO of events awaiting the broker's acknowledgement.

    Thread-safe: the MQTT client thread may call :meth:`ack` while the app thread puts.

    Args:
        path: the SQLite file (created with its directory's permissions).
        max_rows: the bound; see the module docstring for what is dropped first.

    Raises:
        OutboxError: the file cannot be opened or is not a usable database.
    """

    def __init__(self, path: Path | str, *, max_rows: int) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self.path = Path(path)
        self.max_rows = max_rows
        self.dropped: dict[str, int] = dict.fromkeys(_KINDS, 0)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc

    def put_many(self, items: Iterable[OutboxEntry]) -> list[int]:
        """Store events in one transaction, in order; returns their ids.

        Raises:
            OutboxError: the transaction failed; nothing was stored.
        """
        batch = list(items)
        if not batch:
            return []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for topic in {e.topic for e in batch if e.kind == "state"}:
                    self._db.execute("DELETE FROM outbox WHERE kind = 'state' AND topic = ?", (topic,))
                ids = [
                    int(
                        self._db.execute(
                            "INSERT INTO outbox (topic, payload, qos, retain, kind) VALUES (?, ?, ?, ?, ?)",
                            (e.topic, e.payload, e.qos, int(e.retain), e.kind),
                        ).lastrowid
                        or 0
                    )
                    for e in batch
                ]
                drops = self._enforce_bound()
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"cannot write to outbox {self.path}: {exc}") from exc
        for kind, n in drops.items():
            self.dropped[kind] += n
            log = _log.error if kind in ("opened", "resolved") else _log.warning
            log("outbox.dropped", kind=kind, rows=n, total=self.dropped[kind], max_rows=self.max_rows,
                action="the broker is unreachable for long; check the uplink or raise max_rows")
        return ids

    def _enforce_bound(self) -> dict[str, int]:
        drops: dict[str, int] = {}
        (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        excess = int(count) - self.max_rows
        for kinds in _DROP_ORDER:
            if excess <= 0:
                break
            marks = ",".join("?" * len(kinds))
            victims = self._db.execute(
                f"SELECT id, kind FROM outbox WHERE kind IN ({marks}) ORDER BY id LIMIT ?", (*kinds, excess)
            ).fetchall()
            for row_id, kind in victims:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
                drops[kind] = drops.get(kind, 0) + 1
            excess -= len(victims)
        return drops

    def pending(self, limit: int) -> list[OutboxItem]:
        """Up to ``limit`` stored events, oldest first."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT id, topic, payload, qos, retain, kind FROM outbox ORDER BY id LIMIT ?", (limit,)
                ).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot read outbox {self.path}: {exc}") from exc
        return [
            OutboxItem(topic=t, payload=bytes(p), qos=int(q), retain=bool(r), kind=k, id=int(i))
            for i, t, p, q, r, k in rows
        ]

    def ack(self, item_id: int) -> None:
        """Delete an event the broker acknowledged (unknown ids are ignored: already dropped or acked)."""
        with self._lock:
            try:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (item_id,))
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot ack in outbox {self.path}: {exc}") from exc

    def oldest_age_s(self) -> float | None:
        """Seconds the oldest waiting event has been stored (None when empty), for the age metric."""
        with self._lock:
            try:
                (age_d,) = self._db.execute("SELECT julianday('now') - MIN(created_at) FROM outbox").fetchone()
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot read outbox {self.path}: {exc}") from exc
        return None if age_d is None else max(0.0, float(age_d) * 86_400.0)

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            _log.warning("outbox.rollback_failed", path=str(self.path))
