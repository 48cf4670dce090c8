"""Resolve a scenario and a seed into a concrete plan: every fault, sensor fault and event, with its times.

Random choices (random fault assignment, random cold spells, random sensor faults) are made here, from
the seed, and nowhere else; the ground truth is a view of the plan, so the truth always matches the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from pdm_common.catalog import FAULTS_BY_KIND, METRICS, FaultCode
from pdm_common.contracts import AssetKind
from simulators.fleet.clock import SECONDS_PER_DAY
from simulators.fleet.scenario import (
    AssetRef,
    OperatingEventType,
    Scenario,
    SensorFaultMode,
    SiteSpec,
    Trajectory,
)
from simulators.fleet.truth import (
    AssetTruth,
    GroundTruth,
    MachineFaultTruth,
    OperatingEventTruth,
    SensorFaultTruth,
)
from simulators.fleet.weather import ColdSpell

__all__ = [
    "DEFAULT_TRAJECTORY",
    "AssetPlan",
    "EventPlan",
    "FleetPlan",
    "MachineFaultPlan",
    "SensorFaultPlan",
    "SitePlan",
    "make_plan",
]

DEFAULT_TRAJECTORY: dict[FaultCode, Trajectory] = {
    # Charge falls linearly but its effect has a knee after 15-20 % loss (Choi & Kim 2002; A2) [S~].
    FaultCode.REFRIGERANT_LEAK: Trajectory.EXPONENTIAL,
    FaultCode.COMPRESSOR_WEAR: Trajectory.EXPONENTIAL,
    FaultCode.FAN_MOTOR: Trajectory.EXPONENTIAL,
    FaultCode.EVAPORATOR_ICING: Trajectory.DRIFT,
    FaultCode.LOW_FLOW: Trajectory.DRIFT,
    FaultCode.EXPANSION_VALVE: Trajectory.INTERMITTENT,
    FaultCode.BEARING_WEAR: Trajectory.EXPONENTIAL,
    FaultCode.CAVITATION: Trajectory.INTERMITTENT,
    FaultCode.IMPELLER_WEAR: Trajectory.DRIFT,
    FaultCode.SEAL_LEAK: Trajectory.EXPONENTIAL,
    FaultCode.MOTOR_OVERHEATING: Trajectory.DRIFT,
}
"""Shape of each fault when the scenario does not say (failure-physics.md A2, B3, D)."""

COLD_SPELL_DAYS = (3.0, 6.0)
"""Cold spells last several days (a blocking high) [E]."""


@dataclass(frozen=True, slots=True)
class MachineFaultPlan:
    """A machine fault, times in seconds since the run's start."""

    code: FaultCode
    onset_s: float
    failure_s: float
    trajectory: Trajectory


@dataclass(frozen=True, slots=True)
class SensorFaultPlan:
    """A sensor fault on one channel, times in seconds since the run's start."""

    metric: str
    mode: SensorFaultMode
    start_s: float
    end_s: float
    rate_per_day: float | None
    scale: float
    spikes_per_h: float


@dataclass(frozen=True, slots=True)
class EventPlan:
    """An operating event, times in seconds since the run's start (``end_s`` is inf when open-ended)."""

    type: OperatingEventType
    start_s: float
    end_s: float
    depth_k: float = 0.0
    setpoint_delta_k: float = 0.0
    load: float = 1.0
    metric: str | None = None
    offset: float = 0.0
    description: str = ""


@dataclass(frozen=True, slots=True)
class SitePlan:
    """A site with its resolved cold spells and its own seed."""

    spec: SiteSpec
    seed: tuple[int, ...]
    cold_spells: tuple[EventPlan, ...]


@dataclass(frozen=True, slots=True)
class AssetPlan:
    """Everything to simulate for one asset."""

    ref: AssetRef
    seed: tuple[int, ...]
    fault: MachineFaultPlan | None
    sensor_faults: tuple[SensorFaultPlan, ...] = ()
    events: tuple[EventPlan, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """The resolved scenario."""

    scenario: Scenario
    seed: int
    sites: dict[str, SitePlan]
    assets: tuple[AssetPlan, ...]

    @property
    def n_samples(self) -> int:
        """Samples per asset."""
        return int(self.scenario.days * SECONDS_PER_DAY // self.scenario.sample_period_s)

    def truth(self) -> GroundTruth:
        """The ground truth of this plan."""
        sc = self.scenario
        start = sc.start

        def at(s: float) -> object:
            return start + timedelta(seconds=s)

        assets = []
        for a in self.assets:
            faults = []
            if a.fault is not None:
                faults.append(
                    MachineFaultTruth(
                        code=a.fault.code,
                        onset=at(a.fault.onset_s),
                        failure=at(a.fault.failure_s),
                        trajectory=a.fault.trajectory,
                    )
                )
            sensor = [
                SensorFaultTruth(
                    metric="*" if f.mode is SensorFaultMode.DROPOUT_SILENCE else f.metric,
                    mode=f.mode,
                    start=at(f.start_s),
                    end=at(f.end_s),
                )
                for f in a.sensor_faults
            ]
            events = [
                OperatingEventTruth(
                    type=e.type,
                    start=at(e.start_s),
                    end=None if np.isinf(e.end_s) else at(e.end_s),
                    description=e.description,
                )
                for e in (*self.sites[a.ref.site].cold_spells, *a.events)
            ]
            events.sort(key=lambda e: e.start)
            assets.append(
                AssetTruth(
                    site=a.ref.site,
                    asset=a.ref.name,
                    kind=a.ref.kind,
                    machine_faults=faults,
                    sensor_faults=sensor,
                    operating_events=events,
                )
            )
        return GroundTruth(
            scenario=sc.name,
            seed=self.seed,
            start=start,
            end=at(self.n_samples * sc.sample_period_s),
            sample_period_s=sc.sample_period_s,
            assets=assets,
        )

    def cold_spells(self, site: str) -> list[ColdSpell]:
        """The cold spells of ``site`` in epoch seconds, for the weather model."""
        t0 = self.scenario.start.timestamp()
        return [ColdSpell(t0 + e.start_s, t0 + e.end_s, e.depth_k) for e in self.sites[site].cold_spells]


def _day(d: float) -> float:
    return d * SECONDS_PER_DAY


def _event_description(
    etype: OperatingEventType,
    *,
    depth_k: float = 0.0,
    delta_k: float = 0.0,
    load: float = 1.0,
    metric: str | None = None,
    offset: float = 0.0,
) -> str:
    if etype is OperatingEventType.COLD_SPELL:
        return f"cold spell, {depth_k:.1f} K below normal"
    if etype is OperatingEventType.SETPOINT_CHANGE:
        return f"room set-point {delta_k:+.1f} K"
    if etype is OperatingEventType.HOLIDAY:
        return "holiday: heat pumps in away mode, plants stopped"
    if etype is OperatingEventType.PRODUCTION_CHANGE:
        return f"production at {load:.0%} of design flow"
    return f"{metric} sensor replaced: offset {offset:+.2f}, noise halved"


def _site_cold_spells(scenario: Scenario, spec: SiteSpec, rng: np.random.Generator) -> list[EventPlan]:
    spells = []
    if scenario.random_cold_spells and spec.climate.cold_spells_per_30d > 0:
        count = rng.poisson(spec.climate.cold_spells_per_30d * scenario.days / 30.0)
        for _ in range(count):
            length = rng.uniform(*COLD_SPELL_DAYS)
            start = rng.uniform(0.0, max(scenario.days - 1.0, 0.0))
            depth = spec.climate.cold_spell_depth_k * rng.uniform(0.7, 1.3)
            spells.append(
                EventPlan(
                    OperatingEventType.COLD_SPELL,
                    _day(start),
                    _day(start + length),
                    depth_k=depth,
                    description=_event_description(OperatingEventType.COLD_SPELL, depth_k=depth),
                )
            )
    for e in scenario.operating_events:
        if e.type is OperatingEventType.COLD_SPELL and e.site == spec.name:
            end = _day(e.end_day) if e.end_day is not None else np.inf
            spells.append(
                EventPlan(
                    e.type,
                    _day(e.start_day),
                    end,
                    depth_k=e.depth_k,
                    description=e.description or _event_description(e.type, depth_k=e.depth_k),
                )
            )
    return spells


def make_plan(scenario: Scenario, seed: int) -> FleetPlan:
    """Resolve ``scenario`` for ``seed``: the same pair always gives the same plan."""
    rng = np.random.default_rng([seed, 0])
    sites = {
        spec.name: SitePlan(
            spec=spec,
            seed=(seed, 1, i),
            cold_spells=tuple(_site_cold_spells(scenario, spec, np.random.default_rng([seed, 3, i]))),
        )
        for i, spec in enumerate(scenario.sites)
    }
    refs = scenario.assets()
    faults: dict[str, MachineFaultPlan] = {
        f.asset: MachineFaultPlan(
            f.code, _day(f.onset_day), _day(f.failure_day), f.trajectory or DEFAULT_TRAJECTORY[f.code]
        )
        for f in scenario.faults
    }
    rf = scenario.random_faults
    for kind, count in ((AssetKind.HEAT_PUMP, rf.heat_pump), (AssetKind.PUMP, rf.pump)):
        free = [r.name for r in refs if r.kind is kind and r.name not in faults]
        codes = [c for c in (rf.codes or FAULTS_BY_KIND[kind]) if c in FAULTS_BY_KIND[kind]]
        if not codes:
            continue
        for name in rng.permutation(np.array(free, dtype=object))[: min(count, len(free))]:
            code = codes[int(rng.integers(len(codes)))]
            lead = rng.uniform(*rf.lead_days)
            onset = min(rng.uniform(*rf.onset_day), scenario.days - lead)
            onset = max(onset, 0.0)
            failure = min(onset + lead, scenario.days)
            faults[str(name)] = MachineFaultPlan(code, _day(onset), _day(failure), DEFAULT_TRAJECTORY[code])

    sensor: dict[str, list[SensorFaultPlan]] = {r.name: [] for r in refs}
    for s in scenario.sensor_faults:
        sensor[s.asset].append(
            SensorFaultPlan(
                s.metric, s.mode, _day(s.start_day), _day(s.end_day), s.rate_per_day, s.scale, s.spikes_per_h
            )
        )
    rs = scenario.random_sensor_faults
    for _ in range(rs.count):
        ref = refs[int(rng.integers(len(refs)))]
        metrics = [m.name for m in METRICS[ref.kind] if m.noise_sigma > 0.0 or m.name == "compressor_hz"]
        metric = metrics[int(rng.integers(len(metrics)))]
        mode = rs.modes[int(rng.integers(len(rs.modes)))]
        length = min(rng.uniform(*rs.duration_days), scenario.days)
        start = rng.uniform(0.0, scenario.days - length)
        sensor[ref.name].append(SensorFaultPlan(metric, mode, _day(start), _day(start + length), None, 10.0, 0.5))

    events: dict[str, list[EventPlan]] = {r.name: [] for r in refs}
    for e in scenario.operating_events:
        if e.type is OperatingEventType.COLD_SPELL:
            continue
        targets = [r.name for r in refs if r.name == e.asset or r.site == e.site]
        end = _day(e.end_day) if e.end_day is not None else np.inf
        desc = e.description or _event_description(
            e.type, depth_k=e.depth_k, delta_k=e.setpoint_delta_k, load=e.load, metric=e.metric, offset=e.offset
        )
        for name in targets:
            events[name].append(
                EventPlan(
                    e.type,
                    _day(e.start_day),
                    end,
                    setpoint_delta_k=e.setpoint_delta_k,
                    load=e.load,
                    metric=e.metric,
                    offset=e.offset,
                    description=desc,
                )
            )
    assets = tuple(
        AssetPlan(
            ref=r,
            seed=(seed, 2, i),
            fault=faults.get(r.name),
            sensor_faults=tuple(sensor[r.name]),
            events=tuple(events[r.name]),
        )
        for i, r in enumerate(refs)
    )
    return FleetPlan(scenario=scenario, seed=seed, sites=sites, assets=assets)
