"""A corrupt SQLite outbox is moved aside and what can be read is salvaged into a fresh one.

Checked once, when the outbox opens (:func:`salvage_if_corrupt`). Corrupt means: a 0-byte file
(SQLite never leaves one behind), a file that is not a database, a failing ``PRAGMA quick_check``
(truncation, torn pages), or a schema without the outbox's tables. The file and its ``-wal``/``-shm``
companions are renamed ``<name>.corrupt-<UTC stamp>`` (kept as evidence, never modified); rows are
read from a scratch copy of them (so committed WAL frames count), table by table, bisecting by
rowid around unreadable pages, and handed back for the fresh file. Whatever could not be read is
counted — an upper bound, since a damaged page hides whether its rowids held rows — and the caller
logs it and exports it as a metric: a loss is never silent and never a traceback.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["SALVAGED_TABLES", "SalvageReport", "salvage_if_corrupt"]

SALVAGED_TABLES = ("alerts", "events", "dead_letters", "refused", "sync_cursors")
"""Tables copied into the fresh file, in this order (events refer to alerts)."""

REQUIRED_TABLES = frozenset({"alerts", "events", "dead_letters"})
"""Without these the file is not an outbox of ours (a wrong file at the configured path)."""

MAX_PROBES = 100_000
"""Bound on range reads while bisecting around damaged pages: a file that needs more is read no further."""


@dataclass(slots=True)
class SalvageReport:
    """What happened to a corrupt outbox file."""

    reason: str
    moved_to: Path
    rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = field(default_factory=dict)
    """Per table: its column names and the rows read."""
    unreadable: int = 0
    """Rowids that could not be read (upper bound of rows lost), over all tables."""
    unknown_loss: bool = False
    """True when nothing could be read at all (empty file, not a database): the loss has no count."""

    def salvaged(self, table: str) -> int:
        """Rows of ``table`` read back."""
        return len(self.rows.get(table, ([], []))[1])


def _problem(path: Path) -> str | None:
    """Why the file is not a healthy outbox, or None."""
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    try:
        # Read-write, not mode=ro: after a crash SQLite must roll back a hot journal or rebuild the
        # WAL index before it can read, and a read-only handle reports that as "attempt to write a
        # readonly database", which is a healthy file (found by tests/chaos/test_power_loss.py).
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
    except sqlite3.Error as exc:
        return f"cannot be opened: {exc}"
    try:
        result = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
        if result != ["ok"]:
            return "integrity check failed: " + "; ".join(result)[:300]
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = sorted(REQUIRED_TABLES - tables)
        if missing:
            return f"not an outbox: tables {missing} are missing"
    except sqlite3.Error as exc:
        return f"unreadable: {exc}"
    finally:
        conn.close()
    return None


def _move_aside(path: Path, now: datetime) -> Path:
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{target}{suffix}"))
    return target


def _read_table(
    conn: sqlite3.Connection, table: str, budget: list[int]
) -> tuple[list[str], list[tuple[Any, ...]], int]:
    """Columns, readable rows and the count of unreadable rowids of one table."""
    try:
        columns = [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})").fetchall()]
    except sqlite3.DatabaseError:
        return [], [], 0
    if not columns:
        return [], [], 0
    cols = ", ".join(columns)
    try:
        return columns, list(conn.execute(f"SELECT {cols} FROM {table}").fetchall()), 0
    except sqlite3.DatabaseError:
        pass
    try:
        lo, hi = conn.execute(f"SELECT MIN(rowid), MAX(rowid) FROM {table}").fetchone()
    except sqlite3.DatabaseError:
        return columns, [], 1
    if lo is None:
        return columns, [], 0
    rows: list[tuple[Any, ...]] = []
    unreadable = 0
    pending = [(int(lo), int(hi))]
    while pending:
        a, b = pending.pop()
        budget[0] -= 1
        if budget[0] < 0:
            unreadable += b - a + 1
            continue
        try:
            rows += conn.execute(f"SELECT {cols} FROM {table} WHERE rowid BETWEEN ? AND ?", (a, b)).fetchall()
        except sqlite3.DatabaseError:
            if a == b:
                unreadable += 1
            else:
                middle = (a + b) // 2
                pending += [(middle + 1, b), (a, middle)]
    return columns, rows, unreadable


_HEADER = b"SQLite format 3\x00"


def _fit_header(copy: Path) -> None:
    """Make a truncated copy readable: cut it to whole pages and set the header's page count to match.

    SQLite refuses a file shorter than its header's "database size in pages" (offset 28, SQLite file
    format §1.3.7) as malformed, which would hide the pages that did survive.
    """
    data = bytearray(copy.read_bytes())
    if len(data) < 100 or not data.startswith(_HEADER):
        return
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512:
        return
    pages = len(data) // page_size
    del data[pages * page_size:]
    data[28:32] = pages.to_bytes(4, "big")
    copy.write_bytes(bytes(data))


def _salvage(aside: Path, tables: Sequence[str], report: SalvageReport) -> None:
    with tempfile.TemporaryDirectory(prefix="pdm-outbox-salvage-") as scratch:
        copy = Path(scratch) / "copy.db"
        for suffix in ("", "-wal"):
            source = Path(f"{aside}{suffix}")
            if source.exists():
                shutil.copyfile(source, Path(f"{copy}{suffix}"))
        _fit_header(copy)
        try:
            conn = sqlite3.connect(str(copy))
        except sqlite3.Error:
            report.unknown_loss = True
            return
        try:
            names = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError:
            conn.close()
            report.unknown_loss = True
            return
        budget = [MAX_PROBES]
        try:
            for table in tables:
                if table in names:
                    columns, rows, unreadable = _read_table(conn, table, budget)
                    report.rows[table] = (columns, rows)
                    report.unreadable += unreadable
        finally:
            conn.close()
        if not names:
            report.unknown_loss = True


def salvage_if_corrupt(path: Path, *, now: datetime | None = None) -> SalvageReport | None:
    """Check the outbox file; if it is corrupt, move it aside and read what can be read.

    Returns:
        None for a missing or healthy file; otherwise the report with the rows to copy into a fresh file.

    Raises:
        OSError: the file cannot be renamed (the caller reports it as an outbox error).
    """
    if str(path) == ":memory:" or not path.exists():
        return None
    reason = _problem(path)
    if reason is None:
        return None
    report = SalvageReport(reason=reason, moved_to=_move_aside(path, now or datetime.now(UTC)))
    if report.moved_to.stat().st_size == 0 and not Path(f"{report.moved_to}-wal").exists():
        report.unknown_loss = True
        return report
    _salvage(report.moved_to, SALVAGED_TABLES, report)
    return report
