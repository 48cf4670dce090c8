"""Resolve a scenario and a seed into a concrete plan: every fault, sensor fault and event, with its times.

Random choices (random fault assignment, fault time scales and magnitudes, random cold spells, occupants'
set-point changes, random sensor faults and their parameters) are made here, from the seed, and nowhere
else. The ground truth is a view of the plan plus the one thing only the simulation knows: when each
faulty unit actually tripped.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from pdm_common.catalog import FAULTS_BY_KIND, METRICS, FaultCode, MetricSpec
from pdm_common.contracts import AssetKind
from simulators.fleet.clock import SECONDS_PER_DAY
from simulators.fleet.scenario import (
    AssetRef,
    OperatingEventType,
    Scenario,
    SensorFaultMode,
    SensorFaultSpec,
    SiteSpec,
    Trajectory,
)
from simulators.fleet.timescales import MAGNITUDE_RANGE, TIMESCALES
from simulators.fleet.truth import (
    AssetTruth,
    GroundTruth,
    MachineFaultTruth,
    OperatingEventTruth,
    SensorFaultTruth,
)
from simulators.fleet.weather import ColdSpell, coldness

__all__ = [
    "AssetPlan",
    "EventPlan",
    "FleetPlan",
    "MachineFaultPlan",
    "SensorFaultPlan",
    "SitePlan",
    "make_plan",
]

COLD_SPELL_DAYS = (3.0, 6.0)
"""Cold spells last several days (a blocking high) [E]."""
SETPOINT_CHANGES_PER_30D = 1.5
SETPOINT_DELTA_K = (0.5, 1.5)
"""Occupants nudge the room set-point now and then: about every three weeks, by half a degree to 1.5 K [E]."""
BEARING_FIRST_PREDICTION = (0.5, 0.9)
"""Bearing health index flat until 50-90 % of life (failure-physics.md B2: t_fpt ~ U(0.5, 0.9)·T) [S]/[E]."""


@dataclass(frozen=True, slots=True)
class MachineFaultPlan:
    """A machine fault, times in seconds since the run's start (``onset_s`` < 0: begun before the run).

    ``span_s`` is the fault's time scale (damage 1 at ``onset_s + span_s``); when the unit trips is up to
    the physics. ``magnitude`` scales its effects on this unit; ``first_prediction`` is the flat share of
    an exponential fault's span (bearings).
    """

    code: FaultCode
    onset_s: float
    span_s: float
    trajectory: Trajectory
    magnitude: float = 1.0
    first_prediction: float = 0.0


@dataclass(frozen=True, slots=True)
class SensorFaultPlan:
    """A sensor fault on one channel, times in seconds since the run's start, parameters resolved.

    Attributes:
        rate_per_day: drift rate (unit per day), for ``drift``.
        bias: step (unit), for ``bias``.
        noise_factor: noise multiplier, for ``noise``.
        spike_sigma: spike height in noise sigmas, for ``spike``.
        spikes_per_h: spike rate.
        scale: factor for ``wrong_scale``.
    """

    metric: str
    mode: SensorFaultMode
    start_s: float
    end_s: float
    rate_per_day: float = 0.0
    bias: float = 0.0
    noise_factor: float = 1.0
    spike_sigma: float = 0.0
    spikes_per_h: float = 0.5
    scale: float = 10.0


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

    def truth(
        self, trips: Mapping[str, float | None] | None = None, *, only: Collection[str] | None = None
    ) -> GroundTruth:
        """The ground truth of this plan.

        Args:
            trips: per faulty asset, when its unit tripped (seconds since the start; None: it was still
                running at the end). Only the simulation knows; without it every fault is still running.
            only: list only these assets (the ones simulated).
        """
        sc = self.scenario
        start = sc.start
        trips = trips or {}

        def at(s: float) -> object:
            return start + timedelta(seconds=s)

        assets = []
        for a in self.assets:
            if only is not None and a.ref.name not in only:
                continue
            faults = []
            if a.fault is not None:
                trip = trips.get(a.ref.name)
                faults.append(
                    MachineFaultTruth(
                        code=a.fault.code,
                        onset=at(a.fault.onset_s),
                        span_days=a.fault.span_s / SECONDS_PER_DAY,
                        nominal_failure=at(a.fault.onset_s + a.fault.span_s),
                        failure=None if trip is None else at(trip),
                        trajectory=a.fault.trajectory,
                        magnitude=a.fault.magnitude,
                    )
                )
            sensor = [
                SensorFaultTruth(
                    metric="*" if f.mode is SensorFaultMode.DROPOUT_SILENCE else f.metric,
                    mode=f.mode,
                    start=at(f.start_s),
                    end=at(f.end_s),
                    parameter=_sensor_parameter(f),
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
        t0 = scenario.start.timestamp()
        for _ in range(count):
            length = rng.uniform(*COLD_SPELL_DAYS)
            start = rng.uniform(0.0, max(scenario.days - 1.0, 0.0))
            depth = spec.climate.cold_spell_depth_k * rng.uniform(0.7, 1.3)
            # Cold spells belong to the cold half of the year (a Scandinavian high in July is a heat wave).
            if rng.random() > float(coldness(t0 + _day(start))):
                continue
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


def _fault_plan(
    code: FaultCode,
    onset_day: float | None,
    rng: np.random.Generator,
    *,
    span_days: float | None = None,
    failure_day: float | None = None,
    trajectory: Trajectory | None = None,
    magnitude: float | None = None,
) -> MachineFaultPlan:
    """A fault with its time scale drawn from the reference range unless given.

    Either ``onset_day`` or ``failure_day`` (the nominal failure: onset + span) places it in time.
    """
    ts = TIMESCALES[code]
    span = span_days if span_days is not None else float(rng.uniform(*ts.span_days))
    mag = magnitude if magnitude is not None else float(rng.uniform(*MAGNITUDE_RANGE))
    fpt = float(rng.uniform(*BEARING_FIRST_PREDICTION)) if code is FaultCode.BEARING_WEAR else 0.0
    onset = onset_day if onset_day is not None else float(failure_day or 0.0) - span
    return MachineFaultPlan(code, _day(onset), _day(span), trajectory or ts.trajectory, mag, fpt)


def _signed(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high) * rng.choice([-1.0, 1.0]))


def _sensor_plan(spec: MetricSpec, s: SensorFaultSpec | None, mode: SensorFaultMode, *, start_s: float, end_s: float,
                 rng: np.random.Generator) -> SensorFaultPlan:
    """A sensor fault with its parameters: the scenario's, or drawn from the field ranges (A3).

    Temperatures drift 0.05-0.5 K/day and step by 1-3 K; pressures by the same share of their tolerance
    (Carrier: ±1.2 K against ±0.34 bar, A1 [S]), i.e. 0.014-0.14 bar/day and 0.15-0.3 bar (A3: ±0.3 bar);
    other channels by 0.1-1 %/day and 2-6 % of their normal span [E].
    """
    span = spec.normal_high - spec.normal_low
    if spec.unit == "°C":
        rate, step = (0.05, 0.5), (1.0, 3.0)
    elif spec.unit == "bar":
        rate, step = (0.014, 0.14), (0.15, 0.3)
    else:
        rate, step = (0.001 * span, 0.01 * span), (0.02 * span, 0.06 * span)
    drawn = SensorFaultPlan(
        spec.name, mode, start_s, end_s,
        rate_per_day=_signed(rng, *rate),
        bias=_signed(rng, *step),
        noise_factor=float(rng.uniform(3.0, 10.0)),
        spike_sigma=float(rng.uniform(5.0, 20.0)),
    )
    if s is None:
        return drawn
    return SensorFaultPlan(
        spec.name, mode, start_s, end_s,
        rate_per_day=drawn.rate_per_day if s.rate_per_day is None else s.rate_per_day,
        bias=drawn.bias if s.bias is None else s.bias,
        noise_factor=drawn.noise_factor if s.noise_factor is None else s.noise_factor,
        spike_sigma=drawn.spike_sigma if s.spike_sigma is None else s.spike_sigma,
        spikes_per_h=s.spikes_per_h,
        scale=s.scale,
    )


def _sensor_parameter(f: SensorFaultPlan) -> float | None:
    """The one number that describes a sensor fault's size, for the ground truth."""
    return {
        SensorFaultMode.DRIFT: f.rate_per_day,
        SensorFaultMode.BIAS: f.bias,
        SensorFaultMode.NOISE: f.noise_factor,
        SensorFaultMode.SPIKE: f.spike_sigma,
        SensorFaultMode.WRONG_SCALE: f.scale,
    }.get(f.mode)


def _setpoint_changes(scenario: Scenario, rng: np.random.Generator) -> list[EventPlan]:
    """Occupants changing the room set-point: permanent, or for a few days (guests, a cold) [E]."""
    out = []
    for _ in range(rng.poisson(SETPOINT_CHANGES_PER_30D * scenario.days / 30.0)):
        start = rng.uniform(0.0, scenario.days)
        delta = _signed(rng, *SETPOINT_DELTA_K)
        end = start + rng.uniform(1.0, 5.0) if rng.random() < 0.5 else np.inf
        out.append(EventPlan(
            OperatingEventType.SETPOINT_CHANGE, _day(start), _day(end) if np.isfinite(end) else np.inf,
            setpoint_delta_k=delta, description=f"occupant changed the room set-point {delta:+.1f} K",
        ))
    return out


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
    kinds = {r.name: r.kind for r in refs}
    faults: dict[str, MachineFaultPlan] = {
        f.asset: _fault_plan(
            f.code, f.onset_day, np.random.default_rng([seed, 4, i]),
            span_days=f.span_days, trajectory=f.trajectory, magnitude=f.magnitude,
        )
        for i, f in enumerate(scenario.faults)
    }
    rf = scenario.random_faults
    for kind, count in ((AssetKind.HEAT_PUMP, rf.heat_pump), (AssetKind.PUMP, rf.pump)):
        free = [r.name for r in refs if r.kind is kind and r.name not in faults]
        codes = [c for c in (rf.codes or FAULTS_BY_KIND[kind]) if c in FAULTS_BY_KIND[kind]]
        if not codes:
            continue
        for name in rng.permutation(np.array(free, dtype=object))[: min(count, len(free))]:
            code = codes[int(rng.integers(len(codes)))]
            faults[str(name)] = _fault_plan(code, None, rng, failure_day=float(rng.uniform(*rf.failure_day)))

    sensor: dict[str, list[SensorFaultPlan]] = {r.name: [] for r in refs}
    for i, s in enumerate(scenario.sensor_faults):
        spec = next(m for m in METRICS[kinds[s.asset]] if m.name == s.metric)
        sensor[s.asset].append(
            _sensor_plan(spec, s, s.mode, start_s=_day(s.start_day), end_s=_day(s.end_day),
                         rng=np.random.default_rng([seed, 5, i]))
        )
    rs = scenario.random_sensor_faults
    for _ in range(rs.count):
        ref = refs[int(rng.integers(len(refs)))]
        specs = [m for m in METRICS[ref.kind] if m.noise_sigma > 0.0]
        spec = specs[int(rng.integers(len(specs)))]
        mode = rs.modes[int(rng.integers(len(rs.modes)))]
        length = min(rng.uniform(*rs.duration_days), scenario.days)
        start = rng.uniform(0.0, scenario.days - length)
        sensor[ref.name].append(
            _sensor_plan(spec, None, mode, start_s=_day(start), end_s=_day(start + length), rng=rng)
        )

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
    if scenario.random_setpoint_changes:
        for i, r in enumerate(refs):
            if r.kind is AssetKind.HEAT_PUMP:
                events[r.name] += _setpoint_changes(scenario, np.random.default_rng([seed, 6, i]))
    assets = tuple(
        AssetPlan(
            ref=r,
            seed=(seed, 2, i),
            fault=faults.get(r.name),
            sensor_faults=tuple(sensor[r.name]),
            events=tuple(sorted(events[r.name], key=lambda e: e.start_s)),
        )
        for i, r in enumerate(refs)
    )
    return FleetPlan(scenario=scenario, seed=seed, sites=sites, assets=assets)
