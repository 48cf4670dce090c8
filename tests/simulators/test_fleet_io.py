"""Records are time-ordered and valid Telemetry; files and truth round-trip."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from pdm_common.contracts import AssetKind
from simulators.fleet import FleetError, FleetRun, GroundTruth, generate, load_scenario, read_jsonl, write_jsonl
from tests.simulators.test_fleet_support import SEED, TINY


@pytest.fixture(scope="module")
def run() -> FleetRun:
    with_faults = load_scenario(TINY)
    short = with_faults.model_copy(
        update={"days": 3.0, "sensor_faults": [f for f in with_faults.sensor_faults if f.end_day <= 3.0]}
    )
    return generate(short, SEED)


def test_records_are_time_ordered_with_per_asset_seq(run: FleetRun) -> None:
    last_ts = 0
    last_seq: dict[str, int] = {}
    for record in run.iter_records():
        assert record["ts"] >= last_ts
        last_ts = record["ts"]
        assert record["seq"] > last_seq.get(record["asset"], -1)
        last_seq[record["asset"]] = record["seq"]
        flags = ("defrost", "dhw", "tripped") if record["kind"] == AssetKind.HEAT_PUMP.value else ("running", "tripped")
        assert all(isinstance(record["metrics"][flag], bool) for flag in flags)
    assert len(last_seq) == len(run.series)


def test_silence_leaves_a_seq_gap_and_nulls_are_none(run: FleetRun) -> None:
    seqs = [r["seq"] for r in run.iter_records() if r["asset"] == "pump-0007"]
    gaps = [b - a for a, b in itertools.pairwise(seqs) if b - a > 1]
    assert gaps == [360 + 1]  # 0.25 day of silence at 1/min
    nulls = [r for r in run.iter_records() if r["asset"] == "hp-0010" and r["metrics"]["outdoor_temp_c"] is None]
    assert nulls == []


def test_jsonl_round_trip_validates_as_telemetry(run: FleetRun, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    count = write_jsonl(run, path)
    assert count == run.n_records
    back = list(read_jsonl(path))
    assert len(back) == count
    first = next(run.iter_records())
    assert back[0].asset == first["asset"] and back[0].seq == first["seq"]
    assert back[0].metrics == {k: (float(v) if isinstance(v, float) else v) for k, v in first["metrics"].items()}
    assert int(back[0].ts.timestamp() * 1000) == first["ts"]


def test_read_jsonl_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"site": "s", "asset": "a", "ts": 1767571200000, "seq": 0, "kind": "pump", "metrics": {"running": True}}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "seq": -1}) + "\n", encoding="utf-8")
    with pytest.raises(FleetError, match=r"bad\.jsonl:2"):
        list(read_jsonl(path))


def test_truth_round_trips_and_lists_what_was_injected(run: FleetRun, tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    run.truth.dump(path)
    back = GroundTruth.load(path)
    assert back == run.truth
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["start"] == "2026-01-05T00:00:00.000Z" and raw["sample_period_s"] == 60
    hp10 = back.asset("hp-0010")
    assert {e.type.value for e in hp10.operating_events} == {"setpoint_change"}
    assert back.asset("pump-0007").sensor_faults[0].metric == "*"
    spikes = next(f for f in back.asset("hp-0010").sensor_faults if f.mode.value == "spike")
    assert spikes.parameter == 15.0


def test_truth_load_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(FleetError, match="not a ground-truth document"):
        GroundTruth.load(path)
