"""Checkpoints: atomic round trip, and corrupt or incompatible files re-warm instead of crashing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent import checkpoint
from edge_agent.engine import DetectionEngine
from edge_agent.errors import CheckpointError
from pdm_common.contracts import EventType
from tests.agent_core.conftest import alerts, feed, new_engine
from tests.agent_core.synthetic import HeatPumpStream, leak

LEAK = HeatPumpStream(injections=[leak(24 * 2, 3.0)])


@pytest.fixture(scope="module")
def with_open_alert() -> DetectionEngine:
    engine = new_engine()
    assert alerts(feed(engine, LEAK, 24 * 3.5))
    return engine


def test_round_trip_keeps_learning_and_open_alerts(tmp_path: Path, with_open_alert: DetectionEngine) -> None:
    path = tmp_path / "engine.ckpt"
    size = checkpoint.save(path, with_open_alert)
    assert size == path.stat().st_size and not (tmp_path / "engine.ckpt.tmp").exists()
    restored = checkpoint.load(path, agent_version="0.3.7")
    assert restored is not None
    assert restored.agent_version == "0.3.7"
    before = with_open_alert.open_alerts()
    assert [e.alert_id for e in restored.open_alerts()] == [e.alert_id for e in before]
    assert restored.asset_states()[0].warmup_progress == 1.0
    # After the restart the alert goes on: same id, event_seq continues, no second "opened".
    later = alerts(feed(restored, LEAK, 24 * 1.5, start_h=24 * 3.5))
    assert later and all(e.event is not EventType.OPENED for e in later)
    assert later[0].alert_id == before[0].alert_id and later[0].event_seq == before[0].event_seq + 1


def test_missing_checkpoint_is_none(tmp_path: Path) -> None:
    assert checkpoint.load(tmp_path / "absent.ckpt") is None


@pytest.mark.parametrize("damage", ["flip_payload", "truncate", "garbage", "bad_header"])
def test_corrupt_checkpoint_is_none_and_the_asset_rewarms(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "engine.ckpt"
    engine = new_engine()
    feed(engine, HeatPumpStream(), 30)
    checkpoint.save(path, engine)
    blob = bytearray(path.read_bytes())
    if damage == "flip_payload":
        blob[-10] ^= 0xFF
    elif damage == "truncate":
        del blob[len(blob) // 2 :]
    elif damage == "garbage":
        blob = bytearray(b"\x00" * 64)
    else:
        blob[len(checkpoint.MAGIC)] = ord("[")
    path.write_bytes(bytes(blob))
    assert checkpoint.load(path) is None
    fresh = new_engine()  # what the app does on None: start over; the asset warms up again
    feed(fresh, HeatPumpStream(), 1)
    assert fresh.asset_states()[0].warmup_progress < 1.0


def _rewrite_header(path: Path, **changes: object) -> None:
    blob = path.read_bytes()
    start = len(checkpoint.MAGIC)
    end = blob.index(b"\n", start)
    header = json.loads(blob[start:end])
    header.update(changes)
    path.write_bytes(blob[:start] + json.dumps(header).encode() + blob[end:])


@pytest.mark.parametrize(
    ("changes", "running"),
    [({"format": 99}, None), ({"model": "0"}, None), ({"agent_version": "0.2.9"}, "0.3.0")],
)
def test_version_mismatch_is_none(tmp_path: Path, changes: dict[str, object], running: str | None) -> None:
    path = tmp_path / "engine.ckpt"
    engine = new_engine()
    feed(engine, HeatPumpStream(), 1)
    checkpoint.save(path, engine)
    _rewrite_header(path, **changes)
    assert checkpoint.load(path, agent_version=running) is None


def test_unwritable_directory_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        checkpoint.save(tmp_path / "missing-dir" / "engine.ckpt", new_engine())
