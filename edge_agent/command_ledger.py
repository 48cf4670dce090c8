"""The command replay ledger: message ids of accepted commands, kept across restarts.

A signed command is fresh for ``[commands] tolerance_s`` (300 s) either way of the gateway's clock,
and :class:`~pdm_common.signing.ReplayGuard` refuses an ``auth.msg_id`` seen again within twice that
window. Kept in memory only, the window would be forgotten by a restart: a command captured in the
five minutes before a restart could be replayed once after it (and a crash-looping agent would
accept it again on every start). The ledger keeps each accepted id with its acceptance time in
``{state_dir}/commands.sqlite3`` (WAL, ``synchronous=FULL``), written before the command is applied,
and loads the ids still inside the window at start.

If the file cannot be opened or written (disk full, read-only state directory), the guard keeps
working in memory and says so once in the log: refusing every command because of a disk problem
would take away the operators' way to act on alerts, while the risk left — a replay across a
restart that happens during the disk problem and within five minutes of the capture — is bounded.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from pdm_common.logs import get_logger
from pdm_common.signing import ReplayGuard

__all__ = ["COMMAND_LEDGER", "DurableReplayGuard"]

COMMAND_LEDGER = "commands.sqlite3"
"""The ledger's file name in the agent's ``state_dir``."""

_SCHEMA = "CREATE TABLE IF NOT EXISTS accepted (msg_id TEXT PRIMARY KEY, at REAL NOT NULL)"

_log = get_logger(__name__)


class DurableReplayGuard(ReplayGuard):
    """A :class:`ReplayGuard` whose accepted ids survive a restart.

    Args:
        path: the SQLite file (its directory is created).
        window_s: how long an id is remembered, seconds (twice the freshness tolerance).
        now_s: the gateway's wall clock at start, epoch seconds: ids older than the window are dropped.
        max_ids: bound of ids kept, in memory and on disk.
    """

    def __init__(self, path: Path, *, window_s: float, now_s: float, max_ids: int = 100_000) -> None:
        super().__init__(window_s=window_s, max_ids=max_ids)
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._failing = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(_SCHEMA)
            rows = db.execute("SELECT msg_id, at FROM accepted WHERE at >= ? ORDER BY at LIMIT ?",
                              (now_s - window_s, max_ids)).fetchall()
        except (OSError, sqlite3.Error) as exc:
            self._trouble("open", exc)
            return
        self._db = db
        for msg_id, at in rows:
            super().accept(str(msg_id), float(at))
        _log.info("commands.ledger_loaded", path=str(path), ids_in_window=len(rows))

    def accept(self, msg_id: str, now_s: float) -> bool:
        """Record ``msg_id`` (on disk, then in memory) and return True, or False if seen within the window."""
        if not super().accept(msg_id, now_s):
            return False
        if self._db is not None:
            try:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.execute("INSERT OR REPLACE INTO accepted (msg_id, at) VALUES (?, ?)", (msg_id, now_s))
                    self._db.execute("DELETE FROM accepted WHERE at < ?", (now_s - self.window_s,))
            except sqlite3.Error as exc:
                self._trouble("write", exc)
            else:
                if self._failing:
                    self._failing = False
                    _log.info("commands.ledger_recovered", path=str(self.path))
        return True

    def close(self) -> None:
        """Close the file (the ids on disk stay for the next start)."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _trouble(self, operation: str, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            _log.error("commands.ledger_failed", path=str(self.path), operation=operation, error=str(exc)[:300],
                       action="free disk space or make the state directory writable; replays are refused in "
                              "memory meanwhile, but one accepted just before a restart could be accepted again")
