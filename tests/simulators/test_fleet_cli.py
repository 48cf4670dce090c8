"""The ``fleet`` sub-command writes telemetry and truth, and reports a bad scenario with exit code 2."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from simulators.fleet import GroundTruth, read_jsonl
from simulators.fleet.cli import add_fleet_parser
from tests.simulators.test_fleet_support import SEED, TINY


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_fleet_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fleet", *argv])
    code: int = args.func(args)
    return code


SMALL = """
name = "cli-small"
days = 0.5
heat_pumps = 2
pumps = 1
[[sites]]
name = "oslo-north"
[[faults]]
asset = "hp-0001"
code = "low_flow"
onset_day = -5.0
span_days = 8.0
"""


def test_fleet_writes_telemetry_and_truth(tmp_path: Path) -> None:
    scenario, out, truth = tmp_path / "s.toml", tmp_path / "t.jsonl", tmp_path / "truth.json"
    scenario.write_text(SMALL, encoding="utf-8")
    assert _run("--scenario", str(scenario), "--seed", str(SEED), "--out", str(out), "--truth", str(truth)) == 0
    loaded = GroundTruth.load(truth)
    assert loaded.seed == SEED and loaded.scenario == "cli-small"
    assert loaded.asset("hp-0001").machine_faults[0].code.value == "low_flow"
    records = list(read_jsonl(out))
    assert len(records) == 3 * 720
    assert loaded.start <= records[0].ts <= records[-1].ts < loaded.end


def test_bad_scenario_exits_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ndays = -1\n[[sites]]\nname = "s"\n', encoding="utf-8")
    assert _run("--scenario", str(bad), "--seed", "1", "--truth", str(tmp_path / "t.json")) == 2
    assert "days" in capsys.readouterr().err


def test_nothing_to_produce_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("--scenario", str(TINY), "--seed", "1") == 2
    assert "--out" in capsys.readouterr().err
