"""Scenario files: which assets, where, for how long, with which faults and operating changes.

A scenario is a TOML file (``simulators/scenarios/*.toml``) parsed once into the frozen :class:`Scenario`.
Times inside a scenario are days after ``start`` (floats), so a file reads like a test plan; a machine
fault may have begun before the run (a negative ``onset_day``: the unit starts degraded). A fault gives
its onset and, optionally, its time scale; *when it fails* is not an input: the physics crosses the
failure criterion when it does, and the ground truth records that moment. Assets are named ``hp-0001``
… and ``pump-0001`` … and spread round-robin over the sites. Random choices are resolved from the run's
seed by :mod:`simulators.fleet.plan`, never here.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from pdm_common.catalog import FAULTS_BY_KIND, METRICS, FaultCode
from pdm_common.contracts import NAME_PATTERN, AssetKind
from simulators.fleet.errors import ScenarioError

__all__ = [
    "CLIMATE_PRESETS",
    "FIELD_SENSOR_FAULT_MODES",
    "AssetRef",
    "ClimateSpec",
    "FaultSpec",
    "OperatingEventSpec",
    "OperatingEventType",
    "RandomFaults",
    "RandomSensorFaults",
    "Scenario",
    "SensorFaultMode",
    "SensorFaultSpec",
    "SiteSpec",
    "Trajectory",
    "load_scenario",
]

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Day = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
OnsetDay = Annotated[float, Field(ge=-400.0, allow_inf_nan=False)]
"""A fault may have begun up to 400 days before the run (the longest reference time scale is 120 d)."""
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)
"""A Monday in a Nordic winter: the season in which heat-pump failures hurt most (CUSTOMER.md)."""

MAX_DAYS = 366.0
"""One year bounds memory: 100 assets x 366 days at 1/min is ~53 M samples."""


class Trajectory(StrEnum):
    """Shape of a machine fault's hidden damage over time: 0 at onset, 1 at the nominal time scale, and
    still growing after it until the physics crosses the failure criterion."""

    DRIFT = "drift"
    EXPONENTIAL = "exponential"
    INTERMITTENT = "intermittent"


class SensorFaultMode(StrEnum):
    """How a broken sensor misreports one channel (failure-physics.md A3)."""

    STUCK = "stuck"
    DRIFT = "drift"
    BIAS = "bias"
    NOISE = "noise"
    DROPOUT_NULL = "dropout_null"
    DROPOUT_SILENCE = "dropout_silence"
    SPIKE = "spike"
    WRONG_SCALE = "wrong_scale"


FIELD_SENSOR_FAULT_MODES: tuple[SensorFaultMode, ...] = (
    SensorFaultMode.STUCK,
    SensorFaultMode.DRIFT,
    SensorFaultMode.BIAS,
    SensorFaultMode.NOISE,
    SensorFaultMode.DROPOUT_NULL,
    SensorFaultMode.DROPOUT_SILENCE,
    SensorFaultMode.SPIKE,
)
"""The sensor-fault models of failure-physics.md A3 (drawn by ``random_sensor_faults`` by default); a
``wrong_scale`` (a decimal or unit slip in the configuration) is not a field failure rate and is only
injected where a scenario names it."""


class OperatingEventType(StrEnum):
    """Operating changes that are not faults and must not raise alarms."""

    COLD_SPELL = "cold_spell"
    SETPOINT_CHANGE = "setpoint_change"
    HOLIDAY = "holiday"
    PRODUCTION_CHANGE = "production_change"
    SENSOR_REPLACED = "sensor_replaced"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ClimateSpec(_Model):
    """Weather statistics of a site. Defaults are the ``nordic`` preset (Oslo-like lowland) [E].

    Attributes:
        annual_mean_c: mean of the seasonal cosine.
        seasonal_amplitude_k: half the July-January difference of monthly means.
        daily_amplitude_k: half the mean day-night swing under a half-clouded sky (clear days swing more).
        synoptic_sigma_k: standard deviation of the multi-day weather anomaly (an Ornstein-Uhlenbeck process).
        synoptic_tau_h: correlation time of that anomaly (passing highs and lows).
        cold_spells_per_30d: rate of random cold spells in the cold half of the year (truth lists them).
        cold_spell_depth_k: mean depth of a cold spell: the weather anomaly is pulled to this far below
            the seasonal normal (it replaces the anomaly, it does not add to it).
        coldest_daily_mean_c: soft floor of daily mean temperatures (about the coldest day of a normal
            winter); anomalies and spells flatten out near it instead of stacking without bound.
        humidity_mean_pct: mean relative humidity; frost on the outdoor coil needs humid air.
        latitude_deg: for the sun's height (solar gains, sunshine on the outdoor sensor, day length).
        cloud_mean: mean cloud cover 0..1.
        wind_mean_m_s: mean wind speed (infiltration losses of the houses).
        design_temp_c: the outdoor design temperature houses here are sized for (EN 12831).
    """

    annual_mean_c: float = 6.0
    seasonal_amplitude_k: float = Field(default=10.0, ge=0.0, le=30.0)
    daily_amplitude_k: float = Field(default=2.5, ge=0.0, le=15.0)
    synoptic_sigma_k: float = Field(default=4.0, ge=0.0, le=15.0)
    synoptic_tau_h: float = Field(default=60.0, gt=1.0, le=720.0)
    cold_spells_per_30d: float = Field(default=1.0, ge=0.0, le=10.0)
    cold_spell_depth_k: float = Field(default=8.0, ge=0.0, le=30.0)
    coldest_daily_mean_c: float = Field(default=-20.0, ge=-60.0, le=30.0)
    humidity_mean_pct: float = Field(default=85.0, ge=10.0, le=100.0)
    latitude_deg: float = Field(default=60.0, ge=-70.0, le=70.0)
    cloud_mean: float = Field(default=0.7, ge=0.0, le=1.0)
    wind_mean_m_s: float = Field(default=3.5, ge=0.0, le=20.0)
    design_temp_c: float = Field(default=-20.0, ge=-45.0, le=10.0)


CLIMATE_PRESETS: dict[str, ClimateSpec] = {
    # Oslo-like: Jan mean about -4 °C, July about +16 °C (met.no 1991-2020 normals, rounded) [S~]; design
    # temperature -20 °C (NS-EN 12831 DUT for Oslo ≈ -20 °C) [S~]; rest [E].
    "nordic": ClimateSpec(),
    # Central-European lowland (Berlin-like): Jan about +1 °C, July about +19 °C [S~]; design -14 °C
    # (DIN EN 12831 Berlin) [S~]; rest [E].
    "temperate": ClimateSpec(
        annual_mean_c=10.0,
        seasonal_amplitude_k=9.0,
        daily_amplitude_k=3.5,
        synoptic_sigma_k=3.0,
        cold_spells_per_30d=0.5,
        cold_spell_depth_k=6.0,
        coldest_daily_mean_c=-12.0,
        humidity_mean_pct=80.0,
        latitude_deg=52.5,
        cloud_mean=0.65,
        wind_mean_m_s=4.0,
        design_temp_c=-14.0,
    ),
    # Northern Sweden/Finland inland (Luleå-like): Jan about -11 °C, July about +16 °C [S~]; design about
    # -30 °C [S~]; rest [E]. Deep cold here reaches the heat pumps' operating limit.
    "subarctic": ClimateSpec(
        annual_mean_c=2.5,
        seasonal_amplitude_k=13.5,
        daily_amplitude_k=2.0,
        synoptic_sigma_k=6.0,
        cold_spells_per_30d=1.5,
        cold_spell_depth_k=10.0,
        coldest_daily_mean_c=-32.0,
        humidity_mean_pct=82.0,
        latitude_deg=65.6,
        cloud_mean=0.65,
        wind_mean_m_s=3.0,
        design_temp_c=-30.0,
    ),
}


class SiteSpec(_Model):
    """A site: a gateway's location, its climate, its local time and (for pumps) its plant.

    ``shifts``: ``day`` 07-16 h, ``two_shift`` 06-22 h, ``continuous_weekdays`` Monday 06 h to Saturday 06 h;
    all stop at weekends. ``process_fluid_c`` is the plant's mean pumped-fluid temperature (it sets the
    seal-chamber temperature and, through the vapour pressure, the cavitation margin).
    ``heat_pump_min_outdoor_c`` is the compressor's operating limit of the units installed here: below it
    the compressor stays off and the backup heater carries the house (monobloc datasheets: -20 to -28 °C).
    """

    name: Name
    climate: ClimateSpec = Field(default_factory=ClimateSpec)
    shifts: Literal["day", "two_shift", "continuous_weekdays"] = "two_shift"
    utc_offset_h: float = Field(default=1.0, ge=-12.0, le=14.0)
    process_fluid_c: float = Field(default=25.0, ge=5.0, le=60.0)
    heat_pump_min_outdoor_c: float = Field(default=-25.0, ge=-35.0, le=-5.0)

    @field_validator("climate", mode="before")
    @classmethod
    def _preset(cls, value: object) -> object:
        if isinstance(value, str):
            if value not in CLIMATE_PRESETS:
                raise ValueError(f"unknown climate preset {value!r}; use one of {sorted(CLIMATE_PRESETS)}")
            return CLIMATE_PRESETS[value]
        if isinstance(value, dict) and "preset" in value:
            base = value["preset"]
            if base not in CLIMATE_PRESETS:
                raise ValueError(f"unknown climate preset {base!r}; use one of {sorted(CLIMATE_PRESETS)}")
            overrides = {k: v for k, v in value.items() if k != "preset"}
            return CLIMATE_PRESETS[base].model_copy(update=overrides).model_dump()
        return value


class FaultSpec(_Model):
    """A machine fault on one named asset.

    Attributes:
        onset_day: when the hidden damage starts growing; negative when it began before the run.
        span_days: the fault's time scale, onset to failure for a typical unit in typical weather; by
            default drawn per asset from the reference range of the fault (``simulators.fleet.timescales``).
            The actual failure is where the physics crosses the criterion: earlier on a hard day, later
            on an easy one, never at all if the run ends first.
        trajectory: shape of the damage over time (default per fault code).
        magnitude: scale of the fault's effects on this unit (default drawn per asset, 0.75-1.25).
    """

    asset: Name
    code: FaultCode
    onset_day: OnsetDay
    span_days: Annotated[float, Field(gt=0.0, le=400.0)] | None = None
    trajectory: Trajectory | None = None
    magnitude: Annotated[float, Field(ge=0.3, le=3.0)] | None = None


class SensorFaultSpec(_Model):
    """A broken sensor on one channel of one asset (``dropout_silence`` silences the whole asset).

    Unset parameters are drawn per fault from the field ranges of failure-physics.md A3.

    Attributes:
        rate_per_day: ``drift`` rate in the metric's unit per day (A3: 0.05-0.5 K/day for temperatures).
        bias: ``bias`` step in the metric's unit (A3: ±1-3 K for temperatures, ±0.3 bar for pressures).
        noise_factor: ``noise`` multiplies the sensor's noise by this (A3: 3-10).
        spike_sigma: ``spike`` height in noise sigmas (A3: 5-20).
        spikes_per_h: Poisson rate of ``spike`` outliers.
        scale: factor for ``wrong_scale`` (10 = a bar/kPa-style decimal slip).
    """

    asset: Name
    metric: str
    mode: SensorFaultMode
    start_day: Day
    end_day: Day
    rate_per_day: float | None = None
    bias: float | None = None
    noise_factor: Annotated[float, Field(ge=1.0, le=50.0)] | None = None
    spike_sigma: Annotated[float, Field(gt=0.0, le=1000.0)] | None = None
    spikes_per_h: float = Field(default=0.5, gt=0.0, le=60.0)
    scale: float = 10.0

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end_day <= self.start_day:
            raise ValueError("end_day must be after start_day")
        return self


class OperatingEventSpec(_Model):
    """A change in how an asset is used that is not a fault.

    ``site`` applies the event to every asset of the site, ``asset`` to one. Per type:
    ``cold_spell`` (site) lowers the outdoor temperature by ``depth_k``; ``setpoint_change`` moves a heat
    pump's room set-point by ``setpoint_delta_k``; ``holiday`` sets heat pumps to away mode and stops
    plants; ``production_change`` runs pumps at ``load`` (fraction of design flow); ``sensor_replaced``
    swaps ``metric``'s sensor for a better-calibrated one (step of ``offset``, noise halved).
    Without ``end_day`` the change lasts to the end of the run.
    """

    type: OperatingEventType
    start_day: Day
    end_day: Day | None = None
    site: Name | None = None
    asset: Name | None = None
    depth_k: float = Field(default=10.0, ge=0.0, le=30.0)
    setpoint_delta_k: float = Field(default=1.0, ge=-6.0, le=4.0)
    load: float = Field(default=0.75, ge=0.55, le=1.05)
    metric: str | None = None
    offset: float = 0.3
    description: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _target(self) -> Self:
        if (self.site is None) == (self.asset is None):
            raise ValueError("give exactly one of site or asset")
        if self.end_day is not None and self.end_day <= self.start_day:
            raise ValueError("end_day must be after start_day")
        if self.type is OperatingEventType.SENSOR_REPLACED and (self.metric is None or self.asset is None):
            raise ValueError("sensor_replaced needs asset and metric")
        if self.type is OperatingEventType.COLD_SPELL and self.site is None:
            raise ValueError("cold_spell applies to a site")
        return self


class RandomFaults(_Model):
    """Machine faults drawn from the run's seed: how many per kind and when they are due to fail.

    Each fault's time scale is drawn from its reference range and its onset placed that long before a
    nominal failure day drawn from ``failure_day``; a long fault therefore begins before the run (the unit
    starts degraded). The actual failure is the physics' own crossing of the criterion.
    """

    heat_pump: int = Field(default=0, ge=0)
    pump: int = Field(default=0, ge=0)
    failure_day: tuple[Day, Day] = (5.0, 25.0)
    codes: list[FaultCode] | None = None


class RandomSensorFaults(_Model):
    """Sensor faults drawn from the run's seed (parameters from the field ranges, see SensorFaultSpec)."""

    count: int = Field(default=0, ge=0)
    modes: list[SensorFaultMode] = Field(default_factory=lambda: list(FIELD_SENSOR_FAULT_MODES))
    duration_days: tuple[Annotated[float, Field(gt=0.0)], Annotated[float, Field(gt=0.0)]] = (0.5, 4.0)


class AssetRef(_Model):
    """One simulated asset."""

    site: str
    name: str
    kind: AssetKind


class Scenario(_Model):
    """A fleet scenario (see ``simulators/scenarios/*.toml`` for examples)."""

    name: Name
    description: str = Field(default="", max_length=2000)
    start: datetime = DEFAULT_START
    days: Annotated[float, Field(gt=0.0, le=MAX_DAYS)]
    sample_period_s: Annotated[int, Field(ge=10, le=3600)] = 60
    sites: list[SiteSpec] = Field(min_length=1, max_length=1000)
    heat_pumps: Annotated[int, Field(ge=0, le=100_000)] = 0
    pumps: Annotated[int, Field(ge=0, le=100_000)] = 0
    random_cold_spells: bool = True
    random_setpoint_changes: bool = True
    faults: list[FaultSpec] = Field(default_factory=list)
    sensor_faults: list[SensorFaultSpec] = Field(default_factory=list)
    operating_events: list[OperatingEventSpec] = Field(default_factory=list)
    random_faults: RandomFaults = Field(default_factory=RandomFaults)
    random_sensor_faults: RandomSensorFaults = Field(default_factory=RandomSensorFaults)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs a time zone, e.g. 2026-01-05T00:00:00Z")
        return value.astimezone(UTC)

    def assets(self) -> list[AssetRef]:
        """Every asset of the scenario, heat pumps first, spread round-robin over the sites."""
        refs = [
            AssetRef(site=self.sites[i % len(self.sites)].name, name=f"hp-{i + 1:04d}", kind=AssetKind.HEAT_PUMP)
            for i in range(self.heat_pumps)
        ]
        refs += [
            AssetRef(site=self.sites[i % len(self.sites)].name, name=f"pump-{i + 1:04d}", kind=AssetKind.PUMP)
            for i in range(self.pumps)
        ]
        return refs

    def site(self, name: str) -> SiteSpec:
        """The site called ``name``."""
        return next(s for s in self.sites if s.name == name)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.heat_pumps + self.pumps == 0:
            raise ValueError("heat_pumps + pumps: a scenario needs at least one asset")
        site_names = [s.name for s in self.sites]
        if len(set(site_names)) != len(site_names):
            raise ValueError("sites: names must be unique")
        kinds = {a.name: a.kind for a in self.assets()}
        faulted: set[str] = set()
        for i, f in enumerate(self.faults):
            where = f"faults.{i}"
            if f.asset not in kinds:
                raise ValueError(f"{where}.asset: no asset {f.asset!r} (have hp-0001.. and pump-0001..)")
            if f.code not in FAULTS_BY_KIND[kinds[f.asset]]:
                raise ValueError(f"{where}.code: {f.code.value} is not a {kinds[f.asset].value} fault")
            if f.onset_day >= self.days:
                raise ValueError(f"{where}.onset_day: {f.onset_day} is not before the end of the run ({self.days})")
            if f.asset in faulted:
                raise ValueError(f"{where}.asset: {f.asset} already has a machine fault (one per asset)")
            faulted.add(f.asset)
        for i, s in enumerate(self.sensor_faults):
            where = f"sensor_faults.{i}"
            if s.asset not in kinds:
                raise ValueError(f"{where}.asset: no asset {s.asset!r}")
            names = {m.name for m in METRICS[kinds[s.asset]]}
            if s.metric not in names:
                raise ValueError(f"{where}.metric: {s.metric!r} is not a {kinds[s.asset].value} metric")
            if s.end_day > self.days:
                raise ValueError(f"{where}.end_day: {s.end_day} is after the end of the run ({self.days})")
        for i, e in enumerate(self.operating_events):
            where = f"operating_events.{i}"
            if e.site is not None and e.site not in site_names:
                raise ValueError(f"{where}.site: no site {e.site!r}")
            if e.asset is not None and e.asset not in kinds:
                raise ValueError(f"{where}.asset: no asset {e.asset!r}")
            if (
                e.metric is not None
                and e.asset is not None
                and e.metric not in {m.name for m in METRICS[kinds[e.asset]]}
            ):
                raise ValueError(f"{where}.metric: {e.metric!r} is not a metric of {e.asset}")
            if e.start_day > self.days:
                raise ValueError(f"{where}.start_day: {e.start_day} is after the end of the run ({self.days})")
        rf = self.random_faults
        if rf.failure_day[0] > rf.failure_day[1]:
            raise ValueError("random_faults.failure_day: range must be [low, high]")
        if rf.failure_day[1] > self.days and rf.heat_pump + rf.pump > 0:
            raise ValueError(
                f"random_faults.failure_day: {rf.failure_day[1]} is after the end of the run ({self.days})"
            )
        rs = self.random_sensor_faults
        if rs.duration_days[0] > rs.duration_days[1]:
            raise ValueError("random_sensor_faults.duration_days: range must be [low, high]")
        return self


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(scenario)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_scenario(raw: dict[str, Any], *, source: str = "<scenario>") -> Scenario:
    """Validate a scenario given as a mapping (as read from TOML).

    Raises:
        ScenarioError: naming ``source`` and every offending field.
    """
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {_describe(exc)}") from None


def load_scenario(path: Path) -> Scenario:
    """Read and validate a TOML scenario file.

    Raises:
        ScenarioError: the file is missing or unreadable, is not TOML, or breaks the schema; the
            message names the file and the offending field(s).
    """
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML ({exc})") from None
    return parse_scenario(raw, source=str(path))
