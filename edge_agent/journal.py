"""Telemetry journal: samples acknowledged to the broker that no model checkpoint covers yet.

Why it exists. Model state is checkpointed per asset every ``checkpoint_interval_s`` (300 s by
default; pickling every asset after every sample would cost the main loop far more than the
detection itself), while telemetry is acknowledged to the broker once per loop pass. Without the
journal, a ``kill -9`` or a power cut rolls each model back to its last checkpoint while the broker
has already forgotten the samples since: the models skip minutes of telemetry, and alert openings
move by hours against an undisturbed run (measured in tests/chaos/test_process_faults.py: restarts
added or lost machine alerts). So a sample is appended here, in one transaction per loop pass, *before*
its PUBACK, and :meth:`TelemetryJournal.rows` replays it into the restored
models at the next start. When every asset changed before a checkpoint round's start has been
written, the rows up to that point are deleted (:meth:`TelemetryJournal.forget_upto`); a clean stop
leaves the journal empty.

The write-ahead rule is the one of any database's log (ARIES; SQLite's own WAL): state that is
expensive to persist is rebuilt from a cheap sequential log of the inputs since its last image.

SQLite in WAL mode with ``synchronous=NORMAL``, as the checkpoint store: a committed row survives
``kill -9``, an OOM kill or a watchdog restart (the WAL is in the page cache), and no commit waits for
an fsync (https://www.sqlite.org/pragma.html#pragma_synchronous). ``FULL`` would fsync every loop
pass, at a gateway's usual rate one per message — ~1 ms each on the dev machine's disk
(bench/journal.py: 3× the CPU and 6× the wall time per message at one message per pass) and a
write-amplified page per sample on an SD card. A power cut may lose the rows since SQLite's last WAL
checkpoint: those samples are lost to the models, the exposure the agent had without a journal;
alert events are in the fsync'ed outbox either way. When the disk refuses a write (full,
read-only, I/O error) the agent carries on and acknowledges anyway — the alert events the samples
produced are kept by the outbox, and refusing telemetry would blind every model — so only those
samples fall back to the old exposure (a crash before the next checkpoint loses them to the
models). :attr:`TelemetryJournal.failing` says so, and the agent reports it as a health condition.
A file that is not a usable journal is moved aside as ``<name>.corrupt-<UTC time>`` and a fresh one
started: the samples in it are lost to the models, which then resume from their checkpoints.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pdm_common.logs import get_logger

__all__ = ["JOURNAL_FILE", "JournalRow", "TelemetryJournal"]

JOURNAL_FILE = "telemetry-journal.sqlite3"
"""The journal's file name in the agent's ``state_dir``."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    received_at REAL NOT NULL
)
"""
_PAGE = 1000
"""Rows read per query while replaying: bounds memory for a journal of any length."""

_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One journaled telemetry message, as received."""

    id: int
    topic: str
    payload: bytes
    received_at: datetime


class TelemetryJournal:
    """Append-only log of acknowledged telemetry, trimmed behind completed checkpoint rounds.

    Args:
        path: the SQLite file (its directory must exist).
        busy_timeout_s: how long a write waits for another connection's lock before it fails.

    One owner: the agent's main loop.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self.failing: str | None = None
        """Why the last write failed, or None while the journal works."""
        self.lost_to_corruption = False
        """True when the file found at start was unusable and was moved aside."""
        self._db: sqlite3.Connection | None = None
        self._last_id = 0
        self._rows = 0
        self._open()

    @property
    def last_id(self) -> int:
        """Id of the newest row written (0 for none): the watermark a checkpoint round starts at."""
        return self._last_id

    def __len__(self) -> int:
        return self._rows

    def append(self, messages: Sequence[tuple[str, bytes, datetime]]) -> bool:
        """Write ``(topic, payload, received_at)`` rows in one transaction; False if the disk refused."""
        if not messages:
            return True
        if self._db is None:
            self._open()
            if self._db is None:
                return False
        first = self._last_id + 1
        rows = [(first + i, topic, payload, received_at.timestamp())
                for i, (topic, payload, received_at) in enumerate(messages)]
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO journal (id, topic, payload, received_at) VALUES (?, ?, ?, ?)",
                                     rows)
        except sqlite3.Error as exc:
            self._trouble("write", exc)
            return False
        self._last_id += len(rows)
        self._rows += len(rows)
        self._recovered()
        return True

    def forget_upto(self, mark: int) -> None:
        """Delete the rows up to id ``mark``: a completed checkpoint round covers them."""
        if self._db is None or mark <= 0 or self._rows == 0:
            return
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                deleted = self._db.execute("DELETE FROM journal WHERE id <= ?", (mark,)).rowcount
        except sqlite3.Error as exc:
            self._trouble("trim", exc)  # the rows stay and are replayed (and skipped as seen) after a restart
            return
        self._rows = max(0, self._rows - deleted)

    def rows(self) -> Iterator[JournalRow]:
        """Every row in the order written (a page at a time)."""
        after = 0
        while self._db is not None:
            try:
                page = self._db.execute("SELECT id, topic, payload, received_at FROM journal WHERE id > ? "
                                        "ORDER BY id LIMIT ?", (after, _PAGE)).fetchall()
            except sqlite3.Error as exc:
                self._trouble("read", exc)
                return
            for row_id, topic, payload, received_at in page:
                yield JournalRow(int(row_id), str(topic), bytes(payload),
                                 datetime.fromtimestamp(float(received_at), UTC))
            if len(page) < _PAGE:
                return
            after = int(page[-1][0])

    def close(self) -> None:
        """Close the file (its rows stay for the next start)."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _open(self) -> None:
        try:
            db = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            self._trouble("open", exc)
            return
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            last, count = db.execute("SELECT COALESCE(MAX(id), 0), COUNT(*) FROM journal").fetchone()
        except sqlite3.DatabaseError as exc:
            db.close()
            if not self._unusable(exc):
                self._trouble("open", exc)
                return
            if self._move_aside(exc):
                self._open()
            return
        self._db, self._last_id, self._rows = db, int(last), int(count)
        self._recovered()

    @staticmethod
    def _unusable(exc: sqlite3.DatabaseError) -> bool:
        """True for a file that is not a journal (garbage, truncated, another schema), not a disk problem."""
        text = str(exc).lower()
        return "not a database" in text or "malformed" in text or "no such column" in text or "no such table" in text

    def _move_aside(self, exc: sqlite3.DatabaseError) -> bool:
        """Rename the unusable file (and its WAL) aside; False when even that fails."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        try:
            self.path.replace(aside)
        except OSError as err:
            self._trouble("open", err)
            return False
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(f"{self.path}{suffix}").replace(Path(f"{aside}{suffix}"))
        self.lost_to_corruption = True
        _log.error("journal.corrupt", path=str(self.path), moved_to=str(aside), error=str(exc)[:300],
                   action="nothing to do: a fresh journal was started; the samples since the last checkpoint are "
                          "lost to the models (they resume from their checkpoints); the old file can be deleted")
        return True

    def _trouble(self, operation: str, exc: Exception) -> None:
        detail = f"telemetry journal {operation} failed: {exc}"[:300]
        if self.failing is None:
            _log.error("journal.write_failed", path=str(self.path), operation=operation, error=str(exc)[:300],
                       action="free disk space or make the state directory writable; telemetry is still processed "
                              "and acknowledged, but a crash before the next checkpoint loses those samples to "
                              "the models")
        self.failing = detail

    def _recovered(self) -> None:
        if self.failing is not None:
            self.failing = None
            _log.info("journal.recovered", path=str(self.path))
