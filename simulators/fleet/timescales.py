"""How long each machine fault takes, and its shape: the reference ranges the planner samples per asset.

A span is the fault's time scale from onset to failure for a typical unit in typical weather
(failure-physics.md section D, "Onset → failure"); the actual failure is wherever the physics crosses
the failure criterion, so it scatters around the span with weather, load and the unit's own build.
Tags as in failure-physics.md: [S] sourced, [S~] roughly sourced, [E] engineering assumption.
"""

from __future__ import annotations

from dataclasses import dataclass

from pdm_common.catalog import FaultCode
from simulators.fleet.scenario import Trajectory

__all__ = ["MAGNITUDE_RANGE", "TIMESCALES", "Timescale"]


@dataclass(frozen=True, slots=True)
class Timescale:
    """Reference time scale of one fault: span range in days, default shape and where it comes from."""

    span_days: tuple[float, float]
    trajectory: Trajectory
    source: str


TIMESCALES: dict[FaultCode, Timescale] = {
    FaultCode.REFRIGERANT_LEAK: Timescale(
        (14.0, 45.0), Trajectory.EXPONENTIAL,
        "D: 14-45 d, charge 100 → 45 %, knee at 15-20 % loss [E]; A2: lockout at 40-60 % loss in 2-6 weeks [E]"),
    FaultCode.COMPRESSOR_WEAR: Timescale(
        (14.0, 60.0), Trajectory.EXPONENTIAL, "D: 14-60 d, flat then exponential [E]"),
    FaultCode.FAN_MOTOR: Timescale(
        (7.0, 30.0), Trajectory.EXPONENTIAL, "D: 7-30 d, friction rises exponentially, final stall abrupt [E]"),
    FaultCode.EVAPORATOR_ICING: Timescale(
        (0.5, 3.0), Trajectory.DRIFT,
        "D: 0.5-3 d once frosty (frost-gated) [E]; the span is how fast defrosts stop working, ice needs humid air"),
    FaultCode.LOW_FLOW: Timescale(
        (7.0, 30.0), Trajectory.DRIFT, "D: circulation pump / strainer 7-30 d; A2: clogging roughly linear [E]"),
    FaultCode.EXPANSION_VALVE: Timescale(
        (1.0, 7.0), Trajectory.INTERMITTENT, "A2: step or intermittent sticking, hours-days [E]"),
    FaultCode.FOUR_WAY_VALVE_LEAK: Timescale(
        (14.0, 60.0), Trajectory.DRIFT, "D: 14-60 d, bypass 0 → 25 % [E]"),
    FaultCode.EEV_STUCK_OPEN: Timescale(
        (2.0, 10.0), Trajectory.INTERMITTENT,
        "A2: sticking hours-days [E]; compressor damage by flood-back over days (this simulator) [E]"),
    FaultCode.BEARING_WEAR: Timescale(
        (7.0, 35.0), Trajectory.EXPONENTIAL,
        "B2/B3: 7-35 d (IMS-like lab runs) [S]; first-prediction time at 50-90 % of life (B2) [S]/[E]"),
    FaultCode.CAVITATION: Timescale(
        (14.0, 60.0), Trajectory.INTERMITTENT,
        "B3/D: episodes of hours, impeller damage over weeks-months [S~]; 14-60 d here [E]"),
    FaultCode.IMPELLER_WEAR: Timescale(
        (30.0, 120.0), Trajectory.DRIFT,
        "D: 30-120 d to -10 % head, linear [E] (B3: 0.05-0.3 %/day head loss [E])"),
    FaultCode.SEAL_LEAK: Timescale((3.0, 21.0), Trajectory.EXPONENTIAL, "D: 3-21 d, leak rate up exponentially [E]"),
    FaultCode.MOTOR_OVERHEATING: Timescale((7.0, 42.0), Trajectory.DRIFT, "B3: weeks [E]"),
}
"""Span ranges sampled uniformly per asset when a scenario does not give ``span_days``."""

MAGNITUDE_RANGE = (0.75, 1.25)
"""Per-asset scale of a fault's effects when the scenario gives none: the same charge loss moves two units'
channels by different amounts (different coils, charge, pipe runs) [E]."""
