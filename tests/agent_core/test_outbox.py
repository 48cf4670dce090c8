"""The durable outbox: order, bound policy, persistence across reopen and SIGKILL, batched deletes.

Disk failures and corrupt files are in test_outbox_faults.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from edge_agent.outbox import AlertRef, Outbox, OutboxEntry, OutboxKind


def entry(kind: OutboxKind, n: int, topic: str = "pdm/v1/s/a/alert") -> OutboxEntry:
    return OutboxEntry(topic=topic, payload=f"{kind}-{n}".encode(), qos=1, retain=kind == "state", kind=kind)


def payloads(box: Outbox) -> list[str]:
    return [i.payload.decode() for i in box.pending(1000)]


def test_pending_is_oldest_first_and_ack_removes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_rows=100)
    ids = box.put_many([entry("opened", 1), entry("updated", 2)])
    ids += box.put_many([entry("resolved", 3)])
    assert ids == sorted(ids)
    assert payloads(box) == ["opened-1", "updated-2", "resolved-3"]
    box.ack(ids[0])
    box.ack(ids[0])  # a second PUBACK for the same row is harmless
    assert payloads(box) == ["updated-2", "resolved-3"]
    assert [i.id for i in box.pending(1)] == [ids[1]]
    assert [i.id for i in box.pending(10, after=ids[1])] == [ids[2]]
    assert box.put_many([]) == []
    assert len(box) == 2


def test_acks_are_deleted_together_at_commit_not_one_fsync_each(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, max_rows=1000)
    ids = box.put_many([entry("updated", n) for n in range(100)])
    for row in ids[:60]:
        box.ack(row)
    assert len(box) == 40 and box.pending(1)[0].id == ids[60]  # gone from the queue at once …
    assert _rows_on_disk(path) == 100  # … but not one write per PUBACK
    box.commit()
    assert _rows_on_disk(path) == 40
    box.close()
    again = Outbox(path, max_rows=1000)
    assert len(again) == 40 and again.pending(1)[0].id == ids[60]


def _rows_on_disk(path: Path) -> int:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        (n,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
    finally:
        db.close()
    return int(n)


def test_new_state_supersedes_older_state_of_the_same_topic(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_rows=100)
    box.put_many([entry("state", 1, "t/a/state"), entry("state", 2, "t/b/state")])
    box.put_many([entry("state", 3, "t/a/state")])
    assert payloads(box) == ["state-2", "state-3"]
    assert sum(box.dropped.values()) == 0


def test_a_state_acknowledged_then_superseded_before_the_commit_is_counted_once(tmp_path: Path) -> None:
    # The PUBACK's delete waits for commit(); a newer state of the same topic deletes the row first.
    box = Outbox(tmp_path / "outbox.db", max_rows=100)
    [first] = box.put_many([entry("state", 1, "t/a/state")])
    box.ack(first)
    box.put_many([entry("state", 2, "t/a/state")])
    assert len(box) == 1 and payloads(box) == ["state-2"]
    box.commit()
    assert len(box) == 1


def test_bound_drops_updates_then_states_before_opened_or_resolved(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_rows=4)
    box.put_many([entry("opened", 1), entry("updated", 2), entry("state", 3, "t/a/state"), entry("updated", 4)])
    box.put_many([entry("resolved", 5)])
    assert payloads(box) == ["opened-1", "state-3", "updated-4", "resolved-5"]
    box.put_many([entry("updated", 6), entry("opened", 7)])
    assert payloads(box) == ["opened-1", "state-3", "resolved-5", "opened-7"]
    assert box.dropped == {"opened": 0, "updated": 3, "resolved": 0, "state": 0}
    box.put_many([entry("resolved", 8), entry("opened", 9), entry("resolved", 10)])
    # No update left: the state goes, then the oldest opened/resolved, and each drop is counted.
    assert payloads(box) == ["opened-7", "resolved-8", "opened-9", "resolved-10"]
    assert box.dropped == {"opened": 1, "updated": 3, "resolved": 1, "state": 1}
    assert len(box) == 4
    box.close()


def test_rows_survive_closing_and_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, max_rows=10)
    box.put_many([entry("opened", 1), entry("updated", 2)])
    box.close()
    again = Outbox(path, max_rows=10)
    assert payloads(again) == ["opened-1", "updated-2"]
    assert again.put_many([entry("resolved", 3)])[0] > again.pending(1)[0].id


def test_the_ledger_keeps_the_newest_event_of_each_alert_past_its_puback(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_rows=100)
    ids = box.put_many([alert_entry("opened", "s:a:T:leak", 1), alert_entry("updated", "s:a:T:leak", 2),
                        alert_entry("opened", "s:b:T:stuck:m", 1)])
    for row in ids:
        box.ack(row)
    box.commit()
    assert len(box) == 0
    assert [(r.alert_id, r.event_seq) for r in box.alerts()] == [("s:a:T:leak", 2), ("s:b:T:stuck:m", 1)]
    box.put_many([alert_entry("resolved", "s:a:T:leak", 3)])
    box.forget_resolved([("s", "a", box.last_id - 1)])  # a checkpoint taken before the resolve covers nothing
    assert len(box.alerts()) == 2
    box.forget_resolved([("s", "a", box.last_id), ("s", "b", box.last_id)])  # open alerts stay
    assert [r.alert_id for r in box.alerts()] == ["s:b:T:stuck:m"]


def alert_entry(kind: OutboxKind, alert_id: str, seq: int) -> OutboxEntry:
    site, asset = alert_id.split(":")[:2]
    return OutboxEntry(topic=f"pdm/v1/{site}/{asset}/alert", payload=f"{alert_id}#{seq}".encode(), qos=1,
                       retain=False, kind=kind, alert=AlertRef(alert_id, site, asset, seq))


def test_a_first_schema_outbox_is_migrated_with_its_rows(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "outbox.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
            qos INTEGER NOT NULL, retain INTEGER NOT NULL, kind TEXT NOT NULL,
            created_at REAL NOT NULL DEFAULT (julianday('now')));
        INSERT INTO outbox (topic, payload, qos, retain, kind) VALUES ('t', CAST('opened-1' AS BLOB), 1, 0, 'opened');
    """)
    db.close()
    box = Outbox(path, max_rows=10)
    assert payloads(box) == ["opened-1"]
    assert box.put_many([entry("updated", 2)]) == [2]


_WRITER = """
import sys
from edge_agent.outbox import Outbox, OutboxEntry
box = Outbox(sys.argv[1], max_rows=1_000_000)
n = 0
while True:
    ids = box.put_many([OutboxEntry("t/alert", b"x" * 200, 1, False, "opened") for _ in range(5)])
    print(ids[-1], flush=True)
    n += 1
"""


def test_sigkill_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.stdout is not None
    committed = [int(proc.stdout.readline()) for _ in range(50)]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    box = Outbox(path, max_rows=1_000_000)
    stored = {i.id for i in box.pending(1_000_000)}
    # Every batch the writer reported as committed is there, whole (batches are one transaction).
    assert all(last - k in stored for last in committed for k in range(5))
    assert len(stored) % 5 == 0
    box.close()
