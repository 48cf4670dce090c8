"""Per-asset checkpoints: round trip, the outbox ledger after a crash, and files that cost one re-warm.

The safety of the format (what a checkpoint may reference, hostile files) is in
test_checkpoint_safety.py.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edge_agent import checkpoint
from edge_agent.checkpoint import CheckpointRefused, CheckpointStore
from edge_agent.engine import MODEL_VERSION, DetectionEngine
from edge_agent.errors import CheckpointError
from edge_agent.outbox import AlertRef, Outbox, OutboxEntry
from pdm_common.contracts import AlertEvent, CommandName, CommandOutcome, CommandRecord, EventType
from tests.agent_core.conftest import alerts, feed, new_engine
from tests.agent_core.synthetic import HeatPumpStream, leak

LEAK = HeatPumpStream(injections=[leak(24 * 2, 3.0)])
KEY = (LEAK.site, LEAK.asset)


@pytest.fixture(scope="module")
def with_open_alert() -> DetectionEngine:
    engine = new_engine()
    assert alerts(feed(engine, LEAK, 24 * 3.5))
    return engine


def _store(tmp_path: Path, agent_version: str = "0.3.0") -> CheckpointStore:
    return CheckpointStore(tmp_path / "assets.sqlite3", model_version=MODEL_VERSION, agent_version=agent_version)


def _save(store: CheckpointStore, engine: DetectionEngine) -> None:
    refs = engine.shared_refs()
    store.save([(k, checkpoint.encode(engine.snapshot(k), refs)) for k in engine.take_dirty()])


def _restored(store: CheckpointStore, agent_version: str = "0.3.7") -> DetectionEngine:
    engine = DetectionEngine(new_engine().settings, gateway="gw-test", agent_version=agent_version)
    for key in store.asset_keys():
        engine.restore(key, checkpoint.decode(store.load(key).state, engine.shared_refs()))
    return engine


def test_round_trip_keeps_learning_and_open_alerts(tmp_path: Path, with_open_alert: DetectionEngine) -> None:
    store = _store(tmp_path)
    with_open_alert.mark_dirty([KEY])
    _save(store, with_open_alert)
    restored = _restored(store)
    before = with_open_alert.open_alerts()
    assert [e.alert_id for e in restored.open_alerts()] == [e.alert_id for e in before]
    assert restored.asset_states()[0].warmup_progress == 1.0
    # The running engine's settings apply to the restored asset (restore re-tunes it).
    assert restored.snapshot(KEY).detector.tuning.hysteresis == restored.settings.hysteresis  # type: ignore[attr-defined]
    # After the restart the alert goes on: same id, event_seq continues, no second "opened".
    later = alerts(feed(restored, LEAK, 24 * 1.5, start_h=24 * 3.5))
    assert later and all(e.event is not EventType.OPENED for e in later)
    assert later[0].alert_id == before[0].alert_id and later[0].event_seq == before[0].event_seq + 1


def test_only_changed_assets_are_dirty() -> None:
    engine = new_engine()
    other = HeatPumpStream(asset="hp-0002", seed=9)
    feed(engine, LEAK, 2)
    feed(engine, other, 2)
    assert sorted(engine.take_dirty()) == sorted([KEY, (other.site, other.asset)])
    assert engine.take_dirty() == []
    feed(engine, other, 0.1, start_h=2)
    assert engine.take_dirty() == [(other.site, other.asset)]


def test_ledger_catches_a_stale_checkpoint_up_after_a_crash(tmp_path: Path) -> None:
    """kill -9 between two checkpoints: the restored model is behind its alert; the outbox ledger is not."""
    engine = new_engine()
    events = feed(engine, LEAK, 24 * 2.6)
    assert alerts(events), "the leak must have opened an alert by now"
    store = _store(tmp_path)
    _save(store, engine)  # the last checkpoint before the crash
    box = Outbox(tmp_path / "outbox.sqlite3", max_rows=1000)
    later = alerts(feed(engine, LEAK, 24 * 1.5, start_h=24 * 2.6))
    assert later, "the alert moved on after the checkpoint (updates), or the test proves nothing"
    box.put_many([OutboxEntry("t", ev.to_json(), 1, False, ev.event.value,
                              AlertRef(ev.alert_id, ev.site, ev.asset, ev.event_seq)) for ev in later])
    box.close()
    # --- crash: nothing of the engine survives but the checkpoint and the outbox file ---
    restored = _restored(store)
    box = Outbox(tmp_path / "outbox.sqlite3", max_rows=1000)
    for record in box.alerts():
        assert restored.adopt(AlertEvent.from_json(record.payload, max_bytes=1 << 20))
    after = alerts(feed(restored, LEAK, 24 * 1.0, start_h=24 * 4.1))
    newest = {ev.alert_id: ev.event_seq for ev in later}
    assert after, "the alert goes on after the restart"
    for ev in after:
        assert ev.event is not EventType.OPENED, f"re-opened under a new id: {ev.alert_id}"
        assert ev.alert_id in newest and ev.event_seq > newest[ev.alert_id], "an event_seq was reused"
        newest[ev.alert_id] = ev.event_seq


def test_adopting_an_event_the_checkpoint_already_has_changes_nothing(with_open_alert: DetectionEngine) -> None:
    newest = with_open_alert.open_alerts()[0]
    assert not with_open_alert.adopt(newest)


def test_corrupt_row_is_refused_and_only_that_asset_rewarms(tmp_path: Path) -> None:
    engine = new_engine()
    feed(engine, LEAK, 30)
    feed(engine, HeatPumpStream(asset="hp-0002"), 30)
    store = _store(tmp_path)
    _save(store, engine)
    db = sqlite3.connect(store.path)
    db.execute("UPDATE assets SET state = substr(state, 1, 100) WHERE asset = ?", (LEAK.asset,))
    db.commit()
    db.close()
    with pytest.raises(CheckpointRefused, match="checksum"):
        store.load(KEY)
    assert store.load(("site-a", "hp-0002")).state


@pytest.mark.parametrize(("column", "value", "running"),
                         [("format", 1, "0.3.0"), ("model", "0", "0.3.0"), ("agent_version", "0.2.9", "0.3.0")])
def test_rows_of_another_version_are_discarded_at_once(tmp_path: Path, column: str, value: object,
                                                       running: str) -> None:
    engine = new_engine()
    feed(engine, LEAK, 1)
    store = _store(tmp_path)
    _save(store, engine)
    db = sqlite3.connect(store.path)
    db.execute(f"UPDATE assets SET {column} = ?", (value,))
    db.commit()
    db.close()
    assert _store(tmp_path, running).asset_keys() == []
    assert _store(tmp_path, running).asset_keys() == []  # deleted, not refused again on every start


def test_a_file_that_is_not_a_store_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "assets.sqlite3"
    path.write_bytes(b"garbage" * 1000)
    store = CheckpointStore(path, model_version=MODEL_VERSION, agent_version="0.3.0")
    assert store.asset_keys() == []
    assert list(tmp_path.glob("assets.sqlite3.corrupt-*"))


def test_a_directory_that_is_a_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").write_text("not a directory")
    with pytest.raises(CheckpointError):
        CheckpointStore(tmp_path / "checkpoints" / "assets.sqlite3", model_version=MODEL_VERSION,
                        agent_version="0.3.0")


def test_validate_reports_what_would_be_refused(tmp_path: Path) -> None:
    engine = new_engine()
    feed(engine, LEAK, 2)
    store = _store(tmp_path)
    _save(store, engine)
    bad = b"not a pickle"
    store.save([(("site-a", "hp-bad"), bad)])
    db = sqlite3.connect(store.path)
    db.execute("UPDATE assets SET sha256 = ? WHERE asset = 'hp-bad'", (hashlib.sha256(bad).hexdigest(),))
    db.commit()
    db.close()
    report = checkpoint.validate(store.path, model_version=MODEL_VERSION)
    assert report.assets == 2
    assert [key for key, _why in report.refused] == [("site-a", "hp-bad")]
    assert checkpoint.validate(tmp_path / "absent.sqlite3").assets == 0


def test_round_trip_keeps_the_command_audit_trail_and_the_newest_sample_time(tmp_path: Path) -> None:
    # A refused checkpoint of every asset that had received a command made it re-warm after each
    # restart (the audit trail's CommandRecord was not an allowed global; found by the e2e suite).
    engine = new_engine()
    feed(engine, LEAK, 30)
    record = CommandRecord(at=engine.last_seen(KEY), command=CommandName.SNOOZE, outcome=CommandOutcome.REFUSED,
                           reason="no_active_alert", key_id="cloud-bridge", issued_by="desk:zendesk:agent-4711")
    engine.record_command(*KEY, record)
    store = _store(tmp_path)
    _save(store, engine)
    restored = _restored(store)
    assert restored.last_seen(KEY) == engine.last_seen(KEY) is not None
    assert restored.snapshot(KEY).commands == (record,)  # type: ignore[attr-defined]


def _arrays(obj: object, seen: set[int] | None = None) -> list[np.ndarray]:
    """Every numpy array reachable from ``obj`` through attributes, dicts, lists and tuples."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, str | bytes | int | float | type):
        return []
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, dict):
        children: list[object] = list(obj.values())
    elif isinstance(obj, list | tuple | set | frozenset):
        children = list(obj)
    else:
        children = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    return [a for child in children for a in _arrays(child, seen)]


def test_a_restored_asset_shares_its_kinds_plan_and_owns_its_arrays(tmp_path: Path,
                                                                    with_open_alert: DetectionEngine) -> None:
    # Memory per asset (issue 13, bench/memory.py): a restored asset drops its checkpoint's copy of
    # the kind's plan for the one every asset of the kind shares, and its arrays are not views of
    # the checkpoint's bytes (protocol 5 rebuilt each as one, ~300 bytes beside its data).
    store = _store(tmp_path)
    with_open_alert.mark_dirty([KEY])
    _save(store, with_open_alert)
    restored = _restored(store)
    other = HeatPumpStream(asset="hp-0002")
    feed(restored, other, 1.0)
    mine, theirs = restored.snapshot(KEY), restored.snapshot((other.site, other.asset))
    assert mine.detector.plan is theirs.detector.plan  # type: ignore[attr-defined]
    arrays = _arrays(mine.detector)  # type: ignore[attr-defined]
    assert arrays and all(a.flags.owndata for a in arrays), [a.shape for a in arrays if not a.flags.owndata]
