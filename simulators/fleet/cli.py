"""``pdm-sim fleet``: generate a scenario for a seed, write it to a file and/or publish it over MQTT."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from pdm_common.logs import get_logger
from simulators.fleet.errors import FleetError
from simulators.fleet.publish import publish_run
from simulators.fleet.runner import generate, write_jsonl
from simulators.fleet.scenario import load_scenario

__all__ = ["add_fleet_parser", "run_fleet"]

_log = get_logger(__name__)


def add_fleet_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``fleet`` sub-command on an ``argparse`` sub-parsers object; its handler is ``args.func``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "fleet",
        help="simulate a fleet scenario: telemetry to a JSON-lines file and/or MQTT, ground truth to JSON",
        description="Simulate heat pumps and pumps with injected faults, deterministically for a seed.",
    )
    p.add_argument("--scenario", type=Path, required=True, help="scenario TOML (see simulators/scenarios/)")
    p.add_argument("--seed", type=int, required=True, help="random seed; same seed, same data")
    p.add_argument("--out", type=Path, help="write telemetry as JSON lines to this file")
    p.add_argument("--truth", type=Path, help="write the ground truth JSON to this file")
    p.add_argument("--mqtt-host", help="publish telemetry to this MQTT broker")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--mqtt-protocol", choices=["5", "3.1.1"], default="5")
    p.add_argument("--topic-prefix", default="pdm/v1")
    p.add_argument("--qos", type=int, choices=[0, 1], default=1)
    p.add_argument("--speed", type=float, help="simulated seconds per wall second (default: as fast as possible)")
    p.set_defaults(func=run_fleet)
    return p


def run_fleet(args: argparse.Namespace) -> int:
    """Handle ``pdm-sim fleet``; returns the process exit code (0 ok, 2 bad scenario, 3 broker trouble)."""
    if args.out is None and args.mqtt_host is None and args.truth is None:
        print("pdm-sim fleet: give --out, --truth and/or --mqtt-host, or nothing is produced", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(args.scenario)
    except FleetError as exc:
        print(f"pdm-sim fleet: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    run = generate(scenario, args.seed)
    if args.truth is not None:
        run.truth.dump(args.truth)
    if args.out is not None:
        count = write_jsonl(run, args.out)
        print(f"wrote {count} records to {args.out} in {time.monotonic() - started:.1f} s")
    if args.mqtt_host is not None:

        def progress(done: int, total: int) -> None:
            if done % 10_000 == 0 or done == total:
                print(f"published {done}/{total}", file=sys.stderr)

        try:
            publish_run(
                run,
                args.mqtt_host,
                args.mqtt_port,
                protocol=args.mqtt_protocol,
                topic_prefix=args.topic_prefix,
                qos=args.qos,
                speed=args.speed,
                progress=progress,
            )
        except FleetError as exc:
            print(f"pdm-sim fleet: {exc}", file=sys.stderr)
            return 3
    return 0
