"""Creating a SQLite store so that a crash never leaves half of one at its path."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

__all__ = ["create_atomically"]


def create_atomically(path: Path, schema: str, fill: Callable[[sqlite3.Connection], None] | None = None) -> bool:
    """Create the store at ``path``, if absent, whole: built beside it, synced, then renamed in.

    A store built in place passes through states a crash can freeze: a 0-byte file, a header with no
    tables, some of its tables (``tests/chaos/test_power_loss.py`` constructs each from a traced first
    start). The next start could not tell those from a damaged store, moved them aside and reported a
    corrupt file after every power cut during a first start, or during a salvage, where the rows read
    from the damaged file were then never queued again. Here the file appears at ``path`` only
    complete: WAL mode, ``schema`` (an SQL script) and what ``fill`` writes in one transaction, the
    file fsynced before the rename and the directory after it (the rename is durable only then).

    Returns:
        True when the file was created, False when ``path`` existed.

    Raises:
        OSError, sqlite3.Error: the file cannot be built (disk full, read-only, permissions).
    """
    if path.exists():
        return False
    side = path.with_name(f"{path.name}.creating")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{side}{suffix}").unlink(missing_ok=True)  # left by a crash during an earlier attempt
    db = sqlite3.connect(side, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)
        if fill is not None:
            db.execute("BEGIN IMMEDIATE")
            fill(db)
            db.execute("COMMIT")
    finally:
        db.close()  # the last connection's close checkpoints the WAL into the file and removes it
    _fsync(side)
    os.replace(side, path)
    _fsync(path.parent)
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
