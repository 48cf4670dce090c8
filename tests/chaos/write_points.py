"""Seeded workloads over the four durable stores, and what each store holds after k of them.

Run as a process (``python -m tests.chaos.write_points STORE DIR SEED OPS``) it opens the store in
DIR through the real class and applies the plan, printing ``ACK <k>`` when operation k has returned
(where the service would send its PUBACK or go on). :func:`view` reads a store back through the same
class, and :func:`states` says what it must hold after each prefix of the plan, so a crash image
(``tests/chaos/crash_images.py``) can be checked against "some prefix, at least every durable one".

The stores and what an operation is:

- ``bridge_outbox`` (``cloud_bridge.outbox``, synchronous=FULL): an alert event enqueued; one alert's
  oldest event delivered (lease, complete, the others' leases given back: three transactions).
- ``agent_outbox`` (``edge_agent.outbox``, synchronous=FULL): 1–3 alert events stored; the broker's
  acknowledgement of one of them committed.
- ``checkpoint_store`` (``edge_agent.checkpoint``, synchronous=NORMAL): 1–3 assets' states saved in one
  transaction (some spill into overflow pages); one asset's row deleted.
- ``journal`` (``edge_agent.journal``, synchronous=NORMAL): 1–20 telemetry rows appended; rows up to a
  mark trimmed.

Every store can also be closed and opened again (``restart``), which checkpoints and removes its WAL.
Each open lowers ``wal_autocheckpoint`` to 4 pages so a short run passes many WAL checkpoints, the
write points a long-running service reaches every 1,000 pages.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["STORES", "Plan", "plan", "states", "view"]

STORES = ("bridge_outbox", "agent_outbox", "checkpoint_store", "journal")
UNSYNCED = "bridge_outbox_unsynced"
"""The bridge outbox opened with ``synchronous=NORMAL``: acknowledges before its fsync, so the suite must catch it."""
FILES = {"bridge_outbox": "bridge-outbox.sqlite3", "agent_outbox": "outbox.sqlite3",
         "checkpoint_store": "checkpoints.sqlite3", "journal": "telemetry-journal.sqlite3"}
_ALERTS = 4
_ASSETS = 6
_T0 = 1_768_363_800.0
_VERSIONS = {"model_version": "crash-test", "agent_version": "0.3.0"}
AUTOCHECKPOINT_PAGES = 4

Op = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """A store's seeded operations."""

    store: str
    ops: tuple[Op, ...]


def _blob(rng: random.Random, low: int, high: int) -> bytes:
    return rng.randbytes(rng.randint(low, high))


def _kind(store: str) -> str:
    return "bridge_outbox" if store == UNSYNCED else store


def plan(store: str, seed: int, n: int) -> Plan:
    """``n`` operations for ``store``, valid at every step (each delivery and ack has something to act on)."""
    store = _kind(store)
    rng = random.Random(f"{store}:{seed}")
    ops: list[Op] = []
    seqs = [0] * _ALERTS
    bridge_pending: list[list[int]] = [[] for _ in range(_ALERTS)]
    agent_pending = 0
    assets: set[int] = set()
    journal_ids: list[int] = []
    last_id = 0
    while len(ops) < n:
        roll = rng.random()
        if roll < 0.08 and ops:
            ops.append(("restart",))
            if store == "journal":
                last_id = journal_ids[-1] if journal_ids else 0
        elif store == "bridge_outbox":
            due = [a for a in range(_ALERTS) if bridge_pending[a]]
            if roll < 0.65 or not due:
                a = rng.randrange(_ALERTS)
                seqs[a] += 1
                bridge_pending[a].append(seqs[a])
                ops.append(("enqueue", a, seqs[a]))
            else:
                a = rng.choice(due)
                ops.append(("deliver", a, bridge_pending[a].pop(0)))
        elif store == "agent_outbox":
            if roll < 0.6 or agent_pending == 0:
                batch = []
                for _ in range(rng.randint(1, 3)):
                    a = rng.randrange(_ALERTS)
                    seqs[a] += 1
                    batch.append((a, seqs[a], rng.randint(200, 3000)))
                agent_pending += len(batch)
                ops.append(("put", tuple(batch)))
            else:
                ops.append(("ack", rng.randrange(agent_pending)))
                agent_pending -= 1
        elif store == "checkpoint_store":
            if roll < 0.8 or not assets:
                keys = tuple(sorted(rng.sample(range(_ASSETS), rng.randint(1, 3))))
                sizes = tuple(rng.randint(100, 12_000) for _ in keys)
                assets.update(keys)
                ops.append(("save", keys, sizes, rng.randrange(1 << 30)))
            else:
                key = rng.choice(sorted(assets))
                assets.discard(key)
                ops.append(("delete", key))
        elif store == "journal":
            if roll < 0.8 or not journal_ids:
                count = rng.randint(1, 20)
                ops.append(("append", count, rng.randrange(1 << 30)))
                journal_ids += range(last_id + 1, last_id + 1 + count)
                last_id += count
            else:
                mark = rng.choice(journal_ids)
                ops.append(("trim", mark))
                journal_ids = [i for i in journal_ids if i > mark]
        else:
            raise ValueError(f"unknown store {store!r}; one of {STORES}")
    return Plan(store, tuple(ops))


# --- what the store holds after each prefix --------------------------------------------------------

def _alert_id(a: int) -> str:
    return f"oslo-north:hp-{a:04d}:2026-01-14T03:10:00Z:refrigerant_leak"


def _rows(count: int, salt: int) -> list[tuple[str, bytes]]:
    rng = random.Random(salt)
    return [(f"pdm/v1/oslo-north/hp-{rng.randrange(_ASSETS):04d}/telemetry", _blob(rng, 50, 400))
            for _ in range(count)]


def _states(p: Plan, step: Callable[[Op], None], snap: Callable[[], Hashable]) -> list[Hashable]:
    out = [snap()]
    for op in p.ops:
        step(op)
        out.append(snap())
    return out


def states(p: Plan) -> list[Hashable]:
    """``states(p)[k]``: what :func:`view` must read after the first ``k`` operations."""
    if p.store == "bridge_outbox":
        events: set[tuple[str, int]] = set()
        alerts: dict[str, tuple[int, int]] = {}

        def bridge(op: Op) -> None:
            if op[0] == "enqueue":
                aid = _alert_id(op[1])
                events.add((aid, op[2]))
                alerts[aid] = (op[2], alerts.get(aid, (0, 0))[1])
            elif op[0] == "deliver":
                aid = _alert_id(op[1])
                events.discard((aid, op[2]))
                alerts[aid] = (alerts[aid][0], op[2])

        return _states(p, bridge, lambda: (frozenset(events), frozenset(alerts.items())))
    if p.store == "agent_outbox":
        pending: list[tuple[str, int]] = []

        def agent(op: Op) -> None:
            if op[0] == "put":
                pending.extend((_alert_id(a), s) for a, s, _ in op[1])
            elif op[0] == "ack":
                del pending[op[1]]

        return _states(p, agent, lambda: tuple(pending))
    if p.store == "checkpoint_store":
        saved: dict[tuple[str, str], str] = {}

        def checkpoint(op: Op) -> None:
            if op[0] == "save":
                for key, blob in _saved_states(op):
                    saved[key] = hashlib.sha256(blob).hexdigest()
            elif op[0] == "delete":
                saved.pop(_asset(op[1]), None)

        return _states(p, checkpoint, lambda: frozenset(saved.items()))
    rows: list[tuple[int, str, bytes]] = []
    last = [0]

    def journal(op: Op) -> None:
        if op[0] == "append":
            first = last[0] + 1
            rows.extend((first + i, t, b) for i, (t, b) in enumerate(_rows(op[1], op[2])))
            last[0] += op[1]
        elif op[0] == "trim":
            rows[:] = [r for r in rows if r[0] > op[1]]
        elif op[0] == "restart":
            last[0] = rows[-1][0] if rows else 0

    return _states(p, journal, lambda: tuple(rows))


def _asset(i: int) -> tuple[str, str]:
    return ("oslo-north", f"hp-{i:04d}")


def _saved_states(op: Op) -> list[tuple[tuple[str, str], bytes]]:
    rng = random.Random(op[3])
    return [(_asset(k), rng.randbytes(size)) for k, size in zip(op[1], op[2], strict=True)]


# --- the real stores -------------------------------------------------------------------------------

def _open(store: str, root: Path) -> Any:
    path = root / FILES[_kind(store)]
    if _kind(store) == "bridge_outbox":
        from cloud_bridge.outbox import open_sqlite
        return open_sqlite(path, max_events=10_000, synchronous_full=store != UNSYNCED)
    if store == "agent_outbox":
        from edge_agent.outbox import Outbox
        return Outbox(path, max_rows=10_000)
    if store == "checkpoint_store":
        from edge_agent.checkpoint import CheckpointStore
        return CheckpointStore(path, **_VERSIONS)
    from edge_agent.journal import TelemetryJournal
    return TelemetryJournal(path)


def _connection(store: str, handle: Any) -> sqlite3.Connection:
    # The stores keep their connection private; only this workload reaches in, to checkpoint often.
    conn = handle._db.conn if _kind(store) == "bridge_outbox" else handle._db
    assert isinstance(conn, sqlite3.Connection)
    return conn


def view(store: str, root: Path) -> Hashable:
    """What the store in ``root`` holds, read through its class as a restarted service reads it.

    Raises:
        AssertionError: the store had to salvage or move its file aside, or a row is unreadable.
    """
    handle = _open(store, root)
    store = _kind(store)
    try:
        if store == "bridge_outbox":
            assert handle.salvage is None, f"the outbox salvaged a corrupt file: {handle.salvage}"
            events = frozenset((aid, seq) for _, aid, seq, *_ in handle.pending(limit=100_000))
            conn = _connection(store, handle)
            alerts = frozenset((str(a), (int(s), int(d))) for a, s, d in conn.execute(
                "SELECT alert_id, last_seq_seen, last_seq_delivered FROM alerts"))
            assert not handle.dead_letters(), "events were dead-lettered"
            return (events, alerts)
        if store == "agent_outbox":
            assert handle.salvaged == 0 and handle.lost == 0 and handle.health.ok, \
                f"outbox salvaged {handle.salvaged}, lost {handle.lost}, health {handle.health}"
            return tuple((i.alert_id, i.event_seq) for i in handle.pending(100_000))
        if store == "checkpoint_store":
            return frozenset((key, hashlib.sha256(handle.load(key).state).hexdigest())
                             for key in handle.asset_keys())
        assert handle.failing is None and not handle.lost_to_corruption, f"journal: {handle.failing}"
        return tuple((r.id, r.topic, r.payload) for r in handle.rows())
    finally:
        handle.close()


def _apply(store: str, handle: Any, op: Op, k: int) -> None:
    now = _T0 + 10.0 * k
    store = _kind(store)
    if store == "bridge_outbox":
        from tests.bridge.samples import alert
        if op[0] == "enqueue":
            event = alert(op[2], alert_id=f"hp-{op[1]:04d}:2026-01-14T03:10:00Z:refrigerant_leak")
            result = handle.enqueue(event, desk="webhook", now=now)
            assert result.value == "accepted", result
            return
        for leased in handle.lease(owner="w", now=now, lease_s=60.0, limit=100):
            if leased.alert.alert_id == _alert_id(op[1]):
                assert leased.alert.event_seq == op[2], (leased.alert.event_seq, op)
                handle.complete(leased, owner="w", ticket_ref="T-1", priority="P2", opened_at=now,
                                sla_deadline=now + 3600, new_promise=op[2] == 1, acknowledged=False,
                                resolved_at=None)
            else:
                handle.reschedule(leased, owner="w", next_attempt_at=now, error="", count=False)
    elif store == "agent_outbox":
        from edge_agent.outbox import AlertRef, OutboxEntry
        if op[0] == "put":
            rng = random.Random(k)
            handle.put_many([OutboxEntry(f"pdm/v1/oslo-north/hp-{a:04d}/alert", rng.randbytes(size), 1, False,
                                         "opened" if s == 1 else "updated",
                                         AlertRef(_alert_id(a), "oslo-north", f"hp-{a:04d}", s))
                             for a, s, size in op[1]])
            assert handle.health.ok, handle.health
        else:
            handle.ack(handle.pending(100_000)[op[1]].id)
            handle.commit()
            assert handle.health.ok, handle.health
    elif store == "checkpoint_store":
        if op[0] == "save":
            handle.save(_saved_states(op))
        else:
            handle.delete([_asset(op[1])])
    elif op[0] == "append":
        received = datetime.fromtimestamp(now, UTC)
        assert handle.append([(t, b, received) for t, b in _rows(op[1], op[2])])
    else:
        handle.forget_upto(op[1])


def run(store: str, root: Path, seed: int, n: int) -> None:
    """Apply the plan to the store in ``root``, acknowledging each operation on stdout once it returned."""
    p = plan(store, seed, n)
    handle = _open(store, root)
    _connection(store, handle).execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    for k, op in enumerate(p.ops, start=1):
        if op[0] == "restart":
            handle.close()
            handle = _open(store, root)
            _connection(store, handle).execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        else:
            _apply(store, handle, op, k)
        os.write(1, f"ACK {k}\n".encode())  # unbuffered: the ack is a write(2) in the trace, in order
    handle.close()


if __name__ == "__main__":
    run(sys.argv[1], Path(sys.argv[2]).resolve(), int(sys.argv[3]), int(sys.argv[4]))
