"""The durable outbox on SQLite and on the local PostgreSQL (skipped with a reason when unreachable)."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.errors import OutboxDataError, OutboxError, OutboxFullError
from cloud_bridge.outbox import CONFIG_HOLD, GAP_WAIT_S, EnqueueResult, LeasedEvent, Outbox, open_postgres, open_sqlite
from tests.bridge.samples import alert
from tests.waiting import wait_until

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_schema_dsn() -> str:
    import psycopg

    try:
        conn = psycopg.connect(PG_DSN, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"local PostgreSQL at {PG_DSN} unreachable ({type(exc).__name__}); start it to run this test")
    schema = f"bridge_{uuid.uuid4().hex[:10]}"
    with conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    conn.close()
    return f"{PG_DSN}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    opened: list[Outbox] = []
    dsn = _pg_schema_dsn() if request.param == "postgres" else ""

    def make(max_events: int = 1000, gap_wait_s: float = GAP_WAIT_S) -> Outbox:
        box = (open_postgres(dsn, max_events=max_events, gap_wait_s=gap_wait_s) if dsn
               else open_sqlite(tmp_path / "outbox.db", max_events=max_events, gap_wait_s=gap_wait_s))
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


def test_events_leave_in_seq_order_one_per_alert(make_outbox) -> None:  # type: ignore[no-untyped-def]
    box: Outbox = make_outbox()
    for seq in (1, 2, 3):
        assert box.enqueue(alert(seq), desk="main", now=1.0) is EnqueueResult.ACCEPTED
    other = alert(1, alert_id="hp-0043:x:low_flow", asset="hp-0043")
    box.enqueue(other, desk="main", now=1.0)
    first = box.lease(owner="a", now=2.0, lease_s=30, limit=10)
    assert sorted((e.alert.alert_id, e.alert.event_seq) for e in first) == sorted(
        [(alert().alert_id, 1), (other.alert_id, 1)])
    assert box.lease(owner="b", now=2.0, lease_s=30, limit=10) == []  # heads are leased; seq 2 must wait
    head = next(e for e in first if e.alert.alert_id == alert().alert_id)
    box.complete(head, owner="a", ticket_ref="T-1", priority="P2", opened_at=0.0, sla_deadline=100.0,
                 new_promise=True, acknowledged=False, resolved_at=None)
    nxt = box.lease(owner="b", now=3.0, lease_s=30, limit=10)
    assert [(e.alert.event_seq, e.ticket_ref) for e in nxt] == [(2, "T-1")]


def _deliver(box: Outbox, event: LeasedEvent, owner: str = "a") -> None:
    box.complete(event, owner=owner, ticket_ref="T-1", priority="P2", opened_at=0.0, sla_deadline=100.0,
                 new_promise=event.alert.event_seq == 1, acknowledged=False, resolved_at=None)


def _seqs(events: list[LeasedEvent]) -> list[int]:
    return [e.alert.event_seq for e in events]


def test_repeats_and_events_the_desk_has_had_are_stale(make_outbox) -> None:  # type: ignore[no-untyped-def]
    box: Outbox = make_outbox()
    assert box.enqueue(alert(1), desk="main", now=1.0) is EnqueueResult.ACCEPTED
    assert box.enqueue(alert(1), desk="main", now=1.0) is EnqueueResult.STALE  # queued already
    [first] = box.lease(owner="a", now=1.0, lease_s=30, limit=5)
    _deliver(box, first)
    assert box.enqueue(alert(1), desk="main", now=2.0) is EnqueueResult.STALE  # applied to the desk
    assert box.enqueue(alert(2), desk="main", now=2.0) is EnqueueResult.ACCEPTED
    assert box.enqueue(alert(2), desk="main", now=2.0) is EnqueueResult.STALE
    assert box.stats(2.0).depth == 1


def test_an_event_after_a_gap_waits_for_the_missing_ones_and_they_go_first(make_outbox) -> None:  # type: ignore[no-untyped-def]
    # What the broker-outage test caught: the bridge got seq 3 before the echo brought 1 and 2.
    box: Outbox = make_outbox(gap_wait_s=100.0)
    assert box.enqueue(alert(3), desk="main", now=0.0) is EnqueueResult.ACCEPTED
    assert box.lease(owner="a", now=1.0, lease_s=30, limit=5) == []  # 1 and 2 have not arrived
    assert box.enqueue(alert(1), desk="main", now=5.0) is EnqueueResult.ACCEPTED
    delivered: list[int] = []
    for now in (6.0, 7.0, 8.0):
        batch = box.lease(owner="a", now=now, lease_s=30, limit=5)
        delivered += _seqs(batch)
        for event in batch:
            _deliver(box, event)
        if now == 6.0:
            assert box.enqueue(alert(2), desk="main", now=6.5) is EnqueueResult.ACCEPTED
    assert delivered == [1, 2, 3]
    assert box.gaps_skipped == 0


def test_a_gap_not_filled_in_time_is_passed_and_its_late_events_are_stale(make_outbox) -> None:  # type: ignore[no-untyped-def]
    box: Outbox = make_outbox(gap_wait_s=100.0)
    box.enqueue(alert(1), desk="main", now=0.0)
    [first] = box.lease(owner="a", now=0.0, lease_s=30, limit=5)
    _deliver(box, first)
    box.enqueue(alert(3), desk="main", now=10.0)
    assert box.lease(owner="a", now=109.0, lease_s=30, limit=5) == []
    [late] = box.lease(owner="a", now=111.0, lease_s=30, limit=5)
    assert (late.alert.event_seq, box.gaps_skipped) == (3, 1)
    # 2 comes now: 3 is at the desk already, so 2 would arrive out of order.
    assert box.enqueue(alert(2), desk="main", now=112.0) is EnqueueResult.STALE
    _deliver(box, late)
    assert box.enqueue(alert(2), desk="main", now=113.0) is EnqueueResult.STALE
    assert box.enqueue(alert(4), desk="main", now=113.0) is EnqueueResult.ACCEPTED
    assert _seqs(box.lease(owner="a", now=113.0, lease_s=30, limit=5)) == [4]  # in order again: no wait


def test_events_after_a_dead_letter_or_a_dropped_update_do_not_wait(make_outbox) -> None:  # type: ignore[no-untyped-def]
    box: Outbox = make_outbox(max_events=10, gap_wait_s=1000.0)
    for seq in (1, 2, 3):
        box.enqueue(alert(seq), desk="main", now=0.0)
    [first] = box.lease(owner="a", now=0.0, lease_s=30, limit=5)
    box.dead_letter(first, owner="a", reason="http_400: bad field", now=0.0)
    [second] = box.lease(owner="a", now=0.0, lease_s=30, limit=5)
    box.dead_letter(second, owner="a", reason="http_400: bad field", now=0.0)
    assert _seqs(box.lease(owner="a", now=0.0, lease_s=30, limit=5)) == [3]
    # At the bound the oldest update of another alert is dropped: the next events go on at once.
    other = "hp-0043:2026-01-14T03:10:00Z:refrigerant_leak"
    for seq in range(1, 12):
        box.enqueue(alert(seq, alert_id=other, asset="hp-0043"), desk="main", now=1.0 + seq)
    assert box.dropped >= 1
    taken: list[int] = []
    for _ in range(10):
        batch = [e for e in box.lease(owner="a", now=20.0, lease_s=30, limit=5) if e.alert.asset == "hp-0043"]
        taken += _seqs(batch)
        for event in batch:
            _deliver(box, event)
    assert taken and taken == sorted(taken) and taken[-1] == 11 and box.gaps_skipped == 0


def test_expired_lease_is_taken_over_and_restart_releases_own_leases(make_outbox) -> None:  # type: ignore[no-untyped-def]
    box: Outbox = make_outbox()
    box.enqueue(alert(1), desk="main", now=0.0)
    assert len(box.lease(owner="a", now=1.0, lease_s=10, limit=5)) == 1
    assert box.lease(owner="b", now=5.0, lease_s=10, limit=5) == []
    assert len(box.lease(owner="b", now=12.0, lease_s=10, limit=5)) == 1
    assert box.release_owner("b") == 1
    assert len(box.lease(owner="a", now=12.5, lease_s=10, limit=5)) == 1


def test_a_start_makes_events_held_for_a_desk_configuration_problem_due(make_outbox) -> None:  # type: ignore[no-untyped-def]
    box: Outbox = make_outbox()
    box.enqueue(alert(1), desk="main", now=0.0)
    box.enqueue(alert(1, alert_id="hp-0043:2026-01-14T03:10:00Z:refrigerant_leak"), desk="main", now=0.0)
    held, backed_off = box.lease(owner="a", now=1.0, lease_s=10, limit=5)
    box.reschedule(held, owner="a", next_attempt_at=301.0, error=f"{CONFIG_HOLD}tls_verify_failed", count=False)
    box.reschedule(backed_off, owner="a", next_attempt_at=301.0, error="http_503", count=True)
    assert box.release_config_holds(2.0) == 1  # only the configuration hold, not the backoff
    [due] = box.lease(owner="a", now=2.0, lease_s=10, limit=5)
    assert due.alert.alert_id == held.alert.alert_id


def test_dead_letter_retry_and_purge(make_outbox) -> None:  # type: ignore[no-untyped-def]
    box: Outbox = make_outbox()
    box.enqueue(alert(1), desk="main", now=0.0)
    box.enqueue(alert(2), desk="main", now=0.0)
    (ev,) = box.lease(owner="a", now=1.0, lease_s=10, limit=5)
    box.dead_letter(ev, owner="a", reason="http_400: bad field", now=1.0)
    assert [d.reason for d in box.dead_letters()] == ["http_400: bad field"]
    (nxt,) = box.lease(owner="a", now=1.0, lease_s=10, limit=5)  # later events go on
    assert nxt.alert.event_seq == 2
    box.reschedule(nxt, owner="a", next_attempt_at=50.0, error="boom", count=True)
    assert box.retry_dead(None, now=2.0) == 1
    assert box.stats(2.0).dead_letters == 0 and box.stats(2.0).depth == 2
    (again,) = box.lease(owner="a", now=3.0, lease_s=10, limit=5)
    box.dead_letter(again, owner="a", reason="x", now=3.0)
    assert box.purge_dead(None) == 1


def test_bound_drops_oldest_update_never_open(make_outbox) -> None:  # type: ignore[no-untyped-def]
    box: Outbox = make_outbox(max_events=10)
    for i in range(9):
        box.enqueue(alert(1, alert_id=f"a{i}:x:low_flow"), desk="main", now=float(i))
    box.enqueue(alert(2, alert_id="a0:x:low_flow"), desk="main", now=9.0)
    box.enqueue(alert(1, alert_id="a10:x:low_flow"), desk="main", now=10.0)  # the update makes room
    assert box.dropped == 1 and box.stats(11.0).depth == 10
    assert all(row[3] == "opened" for row in box.pending())
    with pytest.raises(OutboxFullError):
        box.enqueue(alert(1, alert_id="a11:x:low_flow"), desk="main", now=11.0)


def test_two_replicas_never_lease_the_same_event(make_outbox) -> None:  # type: ignore[no-untyped-def]
    a: Outbox = make_outbox()
    b: Outbox = make_outbox()
    for i in range(40):
        a.enqueue(alert(1, alert_id=f"hp-{i}:x:low_flow"), desk="main", now=0.0)
    got_a = a.lease(owner="a", now=1.0, lease_s=30, limit=25)
    got_b = b.lease(owner="b", now=1.0, lease_s=30, limit=25)
    assert len(got_a) + len(got_b) == 40
    assert not {e.id for e in got_a} & {e.id for e in got_b}


class _Group:
    """Callers of one SQLite outbox queued behind a write lock another connection holds (as another process
    would, e.g. ``cloud-bridge outbox list``), released at once: they then share the next commit."""

    def __init__(self, path: Path, box: Outbox) -> None:
        self.box = box
        self.blocker = sqlite3.connect(str(path), isolation_level=None)
        self.blocker.execute("BEGIN IMMEDIATE")
        self.threads: list[threading.Thread] = []
        self.results: dict[int, object] = {}

    def call(self, fn: Callable[[], object]) -> None:
        """Start ``fn`` on its own thread; returns once it waits in the outbox."""
        backend: Any = self.box._db  # white box: the SQLite backend's leader flag and queue
        index = len(self.threads)

        def target() -> None:
            try:
                self.results[index] = fn()
            except Exception as exc:
                self.results[index] = exc

        thread = threading.Thread(target=target)
        self.threads.append(thread)
        thread.start()
        if index == 0:
            assert wait_until(lambda: backend._leading, 10.0)  # the leader waits for the write lock
        else:
            assert wait_until(lambda: len(backend._queue) == index, 10.0)

    def release(self) -> None:
        assert not self.results, "nothing may return before its commit"
        self.blocker.execute("ROLLBACK")
        for thread in self.threads:
            thread.join(10.0)
        self.blocker.close()


def _stored(path: Path) -> int:
    """Events a separate connection sees: what was committed."""
    with closing(sqlite3.connect(str(path))) as check:
        return int(check.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def test_sqlite_concurrent_operations_share_one_commit_and_none_returns_before_it(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = open_sqlite(path, max_events=1000)
    group = _Group(path, box)
    for i in range(6):
        event = alert(1, alert_id=f"hp-{i:04d}:group:low_flow", asset=f"hp-{i:04d}")
        group.call(lambda e=event: box.enqueue(e, desk="main", now=1.0))  # type: ignore[misc]
    before = box.commits
    group.release()
    assert set(group.results.values()) == {EnqueueResult.ACCEPTED}
    operations, commits = box.commits
    assert (operations - before[0], commits - before[1]) == (6, 2), "the leader alone, then the five queued together"
    assert _stored(path) == 6
    box.close()


def test_sqlite_a_failing_operation_in_a_group_is_undone_alone(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = open_sqlite(path, max_events=1000)
    box.enqueue(alert(1), desk="main", now=1.0)
    taken = _stored(path)
    group = _Group(path, box)
    backend: Any = box._db
    group.call(lambda: box.enqueue(alert(1, alert_id="hp-0001:iso:low_flow", asset="hp-0001"), desk="main", now=1.0))

    def clashing(c: Any) -> None:  # half written, then a row the database refuses (a duplicate id)
        c.execute("INSERT INTO sync_cursors (desk, cursor_value) VALUES ('zd', 'half')")
        c.execute("INSERT INTO events (id, alert_id, event_seq, event_type, desk, payload, enqueued_at,"
                  " next_attempt_at) SELECT id, alert_id, 99, event_type, desk, payload, 0, 0 FROM events LIMIT 1")

    group.call(lambda: backend.run(clashing))
    group.call(lambda: box.enqueue(alert(1, alert_id="hp-0002:iso:low_flow", asset="hp-0002"), desk="main", now=1.0))
    group.release()
    assert group.results[0] is EnqueueResult.ACCEPTED and group.results[2] is EnqueueResult.ACCEPTED
    assert isinstance(group.results[1], OutboxDataError)
    assert _stored(path) == taken + 2 and box.sync_cursor("zd") is None, "the failed operation left nothing"
    box.close()


def test_sqlite_a_group_whose_commit_fails_stores_nothing_and_tells_every_caller(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = open_sqlite(path, max_events=1000)
    group = _Group(path, box)
    backend: Any = box._db
    group.call(lambda: box.enqueue(alert(1, alert_id="hp-0009:lead:low_flow", asset="hp-0009"), desk="main", now=1.0))
    group.call(lambda: box.enqueue(alert(1, alert_id="hp-0001:lost:low_flow", asset="hp-0001"), desk="main", now=1.0))
    group.call(lambda: backend.run(lambda c: c.execute("ROLLBACK")))  # the transaction ends under the group
    group.call(lambda: box.enqueue(alert(1, alert_id="hp-0002:lost:low_flow", asset="hp-0002"), desk="main", now=1.0))
    group.release()
    assert group.results[0] is EnqueueResult.ACCEPTED  # the leader's own commit, before the others queued
    assert all(isinstance(group.results[i], OutboxError) for i in (1, 2, 3)), group.results
    assert _stored(path) == 1
    # Nothing was acknowledged as stored, so the callers retry (the consumer does; the broker redelivers).
    assert box.enqueue(alert(1, alert_id="hp-0001:lost:low_flow", asset="hp-0001"), desk="main",
                       now=2.0) is EnqueueResult.ACCEPTED
    box.close()
