"""Fleet simulator: heat pumps and industrial pumps with injected faults, for tests, demos and benchmarks.

Load a scenario, generate a run for a seed, then write it to a file or publish it over MQTT::

    scenario = load_scenario(Path("simulators/scenarios/demo.toml"))
    run = generate(scenario, seed=7)
    write_jsonl(run, Path("telemetry.jsonl"))
    run.truth.dump(Path("truth.json"))
"""

from simulators.fleet.errors import FleetError, PublishError, ScenarioError
from simulators.fleet.runner import FleetRun, generate, read_jsonl, write_jsonl
from simulators.fleet.scenario import Scenario, load_scenario
from simulators.fleet.truth import GroundTruth

__all__ = [
    "FleetError",
    "FleetRun",
    "GroundTruth",
    "PublishError",
    "Scenario",
    "ScenarioError",
    "generate",
    "load_scenario",
    "read_jsonl",
    "write_jsonl",
]
