"""The durable outbox: order, bound policy, persistence across reopen and SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.errors import OutboxError
from edge_agent.outbox import Outbox, OutboxEntry, OutboxKind


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
    assert box.put_many([]) == []


def test_new_state_supersedes_older_state_of_the_same_topic(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", max_rows=100)
    box.put_many([entry("state", 1, "t/a/state"), entry("state", 2, "t/b/state")])
    box.put_many([entry("state", 3, "t/a/state")])
    assert payloads(box) == ["state-2", "state-3"]
    assert sum(box.dropped.values()) == 0


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


def test_a_file_that_is_not_a_database_is_an_outbox_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError):
        Outbox(path, max_rows=10)


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
