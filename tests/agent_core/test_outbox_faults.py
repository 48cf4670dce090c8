"""The outbox when the disk or the file goes wrong: nothing accepted is lost, nothing raises, every loss is counted.

Disk full is real: the writer runs in a child process whose file-size limit (RLIMIT_FSIZE, the
kernel's answer to "no more room") is lowered below what the next write needs, then raised again,
as when an operator frees space. Corrupt files are written by hand, as a failing SD card leaves them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.outbox import Outbox, OutboxEntry, OutboxKind

ROOT = Path(__file__).resolve().parents[2]


def entry(kind: OutboxKind, n: int, size: int = 0) -> OutboxEntry:
    body = json.dumps({"event": kind, "n": n, "pad": "x" * size}).encode()
    return OutboxEntry(topic=f"pdm/v1/s/a-{n % 3}/alert", payload=body, qos=1, retain=False, kind=kind)


_DISK_FULL = """
import json, os, resource, signal, sys, time
from pathlib import Path
from edge_agent.outbox import Outbox, OutboxEntry
from pdm_common.logs import configure_logging
configure_logging()  # key=value lines on stderr, as under systemd
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
path = Path(sys.argv[1])
def rows(first, n):
    return [OutboxEntry(f"t/{k}/alert", json.dumps({"event": "opened", "n": k}).encode() + b" " * 4000, 1, False,
                        "opened") for k in range(first, first + n)]
box = Outbox(path, max_rows=10_000)
before = box.put_many(rows(0, 5))
box.commit()
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
biggest = max(p.stat().st_size for p in path.parent.iterdir() if p.name.startswith(path.name))
resource.setrlimit(resource.RLIMIT_FSIZE, (biggest, hard))  # the disk is full from now on
during = box.put_many(rows(5, 20))
held = box.health
pending = [i.id for i in box.pending(100)]
box.ack(during[0])  # the broker acknowledged one of the held events
box.ack(before[0])  # and one that is on disk (its delete cannot be written yet)
box.commit()
still = box.health
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space is back
time.sleep(1.1)  # the retry interval
box.commit()
after = box.health
box.close()
again = Outbox(path, max_rows=10_000)
print(json.dumps({
    "before": before, "during": during, "pending": pending,
    "held": [held.in_memory, held.write_error], "still": [still.in_memory, still.write_error],
    "after": [after.in_memory, after.write_error], "failures": box.write_failures,
    "reopened": [i.id for i in again.pending(100)],
}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE semantics are Linux's")
def test_disk_full_keeps_events_in_memory_and_writes_them_when_space_returns(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", _DISK_FULL, str(tmp_path / "outbox.sqlite3")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    r = json.loads(out.stdout)
    assert r["held"][0] == 20 and r["held"][1], "the refused write is held in memory with its error"
    assert r["pending"] == r["before"] + r["during"], "held events are published from memory, in order"
    assert r["still"][0] == 19, "an acknowledged held event leaves memory"
    assert r["after"] == [0, None], "written once the disk takes them"
    assert r["failures"] >= 1
    # Nothing accepted was lost: everything not acknowledged is on disk after a restart, in order.
    assert r["reopened"] == r["before"][1:] + r["during"][1:]
    assert stderr_events(out.stderr).count("outbox.write_failed") == 1, "one log line for the condition"
    assert "outbox.write_recovered" in stderr_events(out.stderr)


def stderr_events(stderr: str) -> list[str]:
    """The ``event=`` of every structured log line."""
    return [part.split("=", 1)[1].strip("'\"") for line in stderr.splitlines() for part in line.split()
            if part.startswith("event=")]


def test_an_unopenable_path_runs_in_memory_and_opens_when_it_can(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    box = Outbox(blocker / "outbox.sqlite3", max_rows=100)
    ids = box.put_many([entry("opened", 1), entry("resolved", 2)])
    assert box.health.in_memory == 2 and box.health.write_error
    assert [i.id for i in box.pending(10)] == ids
    blocker.unlink()
    blocker.mkdir()
    box._retry_at = 0.0
    box.commit()
    assert box.health.ok
    box.close()
    assert [i.id for i in Outbox(blocker / "outbox.sqlite3", max_rows=100).pending(10)] == ids


def test_memory_tier_is_bounded_and_drops_updates_first(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    box = Outbox(blocker / "outbox.sqlite3", max_rows=100, memory_max_bytes=10_000)
    box.put_many([entry("opened", 0, 2000), entry("updated", 1, 2000), entry("updated", 2, 2000)])
    box.put_many([entry("resolved", 3, 2000), entry("updated", 4, 2000), entry("opened", 5, 2000)])
    kinds = [i.kind for i in box.pending(10)]
    assert kinds == ["opened", "resolved", "updated", "opened"]
    assert box.dropped["updated"] == 2 and box.health.memory_bytes <= 10_000


def _filled(path: Path, n: int = 300) -> list[bytes]:
    box = Outbox(path, max_rows=10_000)
    batch = [entry("opened" if k % 2 else "updated", k, 1000) for k in range(n)]
    box.put_many(batch)
    box.close()  # checkpoints the WAL into the main file
    return [e.payload for e in batch]


def _salvaged(path: Path) -> tuple[Outbox, list[bytes]]:
    box = Outbox(path, max_rows=10_000)
    return box, [i.payload for i in box.pending(10_000)]


def test_a_zero_byte_outbox_is_moved_aside_and_reported(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"")
    box, rows = _salvaged(path)
    assert rows == [] and box.health.ok
    assert list(tmp_path.glob("outbox.sqlite3.corrupt-*"))
    err = capfd.readouterr().err
    assert "outbox.corrupt" in err and "empty file" in err


def test_a_truncated_outbox_is_salvaged_row_by_row(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    original = _filled(path)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size * 6 // 10)
    box, rows = _salvaged(path)
    assert rows, "the rows before the cut are still readable"
    assert set(rows) <= set(original) and rows == sorted(rows, key=original.index), "salvaged in order, unchanged"
    assert box.salvaged == len(rows)
    assert box.salvaged + box.lost <= len(original)
    box.put_many([entry("opened", 999)])  # the fresh outbox works
    assert len(box) == len(rows) + 1


def test_garbage_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(os.urandom(8192))
    box, rows = _salvaged(path)
    assert rows == [] and box.health.ok and list(tmp_path.glob("outbox.sqlite3.corrupt-*"))


def test_another_schema_is_salvaged_by_what_its_rows_say(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, topic TEXT, payload BLOB)")
    db.executemany("INSERT INTO outbox (topic, payload) VALUES (?, ?)",
                   [("pdm/v1/s/a/alert", entry("opened", 1).payload), ("pdm/v1/s/a/state", b"{}"),
                    ("pdm/v1/s/a/alert", b"neither an event nor a state")])
    db.commit()
    db.close()
    box, _rows = _salvaged(path)
    assert [i.kind for i in box.pending(10)] == ["opened", "state"]
    assert (box.salvaged, box.lost) == (2, 1)
