"""The profile schema: a machine kind described as data (DESIGN.md §9).

A :class:`Profile` holds everything the product knows about one kind of machine: its channels (unit,
normal and plausible range, noise floor or quantisation, role, whether it is a physical sensor), when
it is operating, its faults with their signatures, failure criteria, parts, checks and display words.
The built-in profiles are Python modules beside this one; a vendor's own kind is the same model
loaded from TOML (the agent's ``[kinds.<name>]`` section, or a bridge's declarations), so the edge
agent and the cloud bridge read one vocabulary.

Everything here is pydantic and the standard library: importing it loads neither numpy nor River.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from pdm_common.contracts import KIND_PATTERN, METRIC_PATTERN

__all__ = [
    "Advice",
    "AssetOverride",
    "Channel",
    "ChannelRole",
    "FailureCriterion",
    "Fault",
    "Operating",
    "Profile",
    "Words",
]

MetricName = Annotated[str, StringConstraints(pattern=METRIC_PATTERN)]
KindName = Annotated[str, StringConstraints(pattern=KIND_PATTERN)]
CodeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Lang = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=300)]
Words = dict[Lang, Text]
"""Display words per language (ISO 639-1), e.g. ``{"en": "heat pump", "no": "varmepumpe"}``."""

_Finite = Annotated[float, Field(allow_inf_nan=False)]
_MAX_CHANNELS = 256
"""As many channels as a telemetry message may carry (``contracts.MAX_METRICS``)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChannelRole(StrEnum):
    """What a channel is to the detector."""

    DRIVER = "driver"
    """An operating condition the machine follows (outdoor temperature, shaft speed, a set-point):
    an input of the regime model, never an anomaly by itself."""
    MEASURED = "measured"
    """A reading whose deviation from what the drivers predict is the evidence."""
    FLAG = "flag"
    """A boolean operating-state flag (``defrost``, ``running``)."""


class Channel(_Frozen):
    """One telemetry channel of a machine kind.

    Attributes:
        unit: the unit, as shown to people (``°C``, ``bar``, ``mm/s RMS``, ``-`` when dimensionless); the
            name's suffix says it too.
        role: driver, measured channel or operating flag.
        normal_low, normal_high: the normal operating range (None: not known, learned from the data).
        plausible_low, plausible_high: readings a working sensor can give; outside is a broken sensor.
            None derives them from the normal range and the failure criteria (:meth:`plausible`).
        noise_sigma: measurement noise (1 sigma) in the channel's unit; 0 for a set-point; None: learned.
        quantum: the reading's resolution (0.1 for a thermistor read in tenths); None: learned.
        sensor: a physical sensor, so the sensor-fault rules (stuck, dropout, spike, drift,
            implausible) apply. False for set-points, counters and computed values.
        impulse: an impulse statistic (kurtosis, skew, peak-to-peak, envelope): single-sample jumps are
            the machine's impacts, not a spiking sensor, so the spike rule never applies.
        log_scale: model the channel in log space (saturation pressure is exponential in temperature,
            Clausius-Clapeyron), so a drift is relative.
        words: display words per language.
    """

    unit: str = Field("", max_length=32)
    role: ChannelRole = ChannelRole.MEASURED
    normal_low: _Finite | None = None
    normal_high: _Finite | None = None
    plausible_low: _Finite | None = None
    plausible_high: _Finite | None = None
    noise_sigma: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    quantum: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    sensor: bool = True
    impulse: bool = False
    log_scale: bool = False
    words: Words = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        if self.normal_low is not None and self.normal_high is not None and self.normal_low >= self.normal_high:
            raise ValueError("normal_low must be below normal_high")
        if (
            self.plausible_low is not None
            and self.plausible_high is not None
            and self.plausible_low >= self.plausible_high
        ):
            raise ValueError("plausible_low must be below plausible_high")
        if self.log_scale and self.normal_low is not None and self.normal_low <= 0:
            raise ValueError("a log_scale channel needs a positive normal range")
        return self

    @property
    def span(self) -> float | None:
        """Width of the normal range, or None when it is not declared."""
        if self.normal_low is None or self.normal_high is None:
            return None
        return self.normal_high - self.normal_low

    @property
    def typical(self) -> float | None:
        """Middle of the normal range, or None."""
        if self.normal_low is None or self.normal_high is None:
            return None
        return (self.normal_low + self.normal_high) / 2


class FailureCriterion(_Frozen):
    """The observable event that counts as the failure: ``metric`` crosses ``threshold``.

    The simulator makes the criterion true at the ground-truth failure time; the detector projects
    its trend onto the same criterion for the time-to-failure estimate.
    """

    metric: MetricName
    direction: Literal["above", "below"]
    threshold: _Finite
    description: Text
    source: str = Field("", max_length=300)

    def crossed(self, value: float) -> bool:
        """True when ``value`` is past the failure threshold.

        Only meaningful on samples where the machine operates: a stopped pump has no head and a heat
        pump in defrost has no fan speed, and neither is a failure.
        """
        return value >= self.threshold if self.direction == "above" else value <= self.threshold


class Advice(_Frozen):
    """What a ticket says about a diagnosis: its name per customer language, parts to bring, checks.

    Attributes:
        words: the diagnosis's name per customer language.
        parts: what a technician should bring.
        checks: what to check, in order.
    """

    words: Words = Field(default_factory=dict)
    parts: tuple[Text, ...] = Field((), max_length=30)
    checks: tuple[Text, ...] = Field((), max_length=30)

    def name_in(self, language: str) -> str | None:
        """The name in ``language``, falling back to English, then to any language; None without words."""
        return self.words.get(language) or self.words.get("en") or next(iter(self.words.values()), None)


class Fault(Advice):
    """A machine fault of the kind, as the detector diagnoses it and the ticket names it.

    Attributes:
        signature: expected signed shift of each channel's residual near failure, in residual sigmas;
            the classifier compares the observed pattern with it (cosine similarity over the channels
            the asset reports).
        criterion: the failure event; None when the fault has no single observable end.
        source: where the signature and criterion come from.
    """

    signature: dict[MetricName, _Finite] = Field(min_length=1, max_length=_MAX_CHANNELS)
    criterion: FailureCriterion | None = None
    source: str = Field("", max_length=300)

    @model_validator(mode="after")
    def _nonzero(self) -> Self:
        if not any(w != 0.0 for w in self.signature.values()):
            raise ValueError("a signature needs at least one non-zero shift")
        return self

    @property
    def lead(self) -> str:
        """The channel that moves most: the fault's leading sign."""
        return max(self.signature, key=lambda m: abs(self.signature[m]))


class Operating(_Frozen):
    """When the machine is in its productive state (failure criteria and scoring apply).

    All given conditions must hold. With none, the machine counts as always operating.

    Attributes:
        flag: a boolean channel that is true while operating (``running``); when it is absent from a
            sample, ``channel`` decides.
        off_flags: boolean channels that, when true, mean not productive (``defrost``).
        channel: a numeric channel that must exceed ``above`` (``compressor_hz`` > 0).
        above: the threshold of ``channel``.
    """

    flag: MetricName | None = None
    off_flags: tuple[MetricName, ...] = ()
    channel: MetricName | None = None
    above: _Finite = 0.0

    def __call__(self, metrics: Mapping[str, float | bool | None]) -> bool:
        """True when ``metrics`` show the machine operating."""
        for name in self.off_flags:
            if metrics.get(name) is True:
                return False
        if self.flag is not None:
            running = metrics.get(self.flag)
            if isinstance(running, bool):
                return running
        if self.channel is not None:
            v = metrics.get(self.channel)
            return isinstance(v, float | int) and not isinstance(v, bool) and v > self.above
        return True

    def names(self) -> set[str]:
        """Every channel the condition reads."""
        return {n for n in (self.flag, self.channel, *self.off_flags) if n is not None}


class AssetOverride(_Frozen):
    """What one asset of a kind adds or changes: extra or different channels, another detector."""

    channels: dict[MetricName, Channel] = Field(default_factory=dict, max_length=_MAX_CHANNELS)
    detector: str | None = Field(None, max_length=64, description="detector of this asset (see [detection])")


class Profile(_Frozen):
    """A machine kind.

    Attributes:
        name: the kind as it appears in telemetry (``heat_pump``).
        words: the kind's name per language.
        channels: the declared channels by metric name.
        operating: when the machine is productive.
        faults: the faults by code.
        lone_leads: channels that are a fault's only early sign, with that fault's direction (+1 up,
            -1 down): such a channel moving alone in that direction stays a machine concern instead of
            a sensor drift (pump vibration before bearing temperature follows).
        transients_min: time constants (minutes) of the start-up transients the regime model learns;
            empty for machines without start-up dynamics worth modelling.
        frost: heat-pump style frost load between defrosts is a regime input (needs a ``defrost`` flag).
        learn_undeclared: numeric channels the profile does not declare are learned from the data as
            measured channels (not physical sensors); False ignores them.
        detector: the detector for this kind (None: the ``[detection]`` default).
        assets: per-asset additions, by asset name.
        source: where the numbers come from.
    """

    name: KindName
    words: Words = Field(default_factory=dict)
    channels: dict[MetricName, Channel] = Field(default_factory=dict, max_length=_MAX_CHANNELS)
    operating: Operating = Field(default_factory=Operating)
    faults: dict[CodeName, Fault] = Field(default_factory=dict, max_length=64)
    lone_leads: dict[MetricName, Literal[-1, 1]] = Field(default_factory=dict)
    transients_min: tuple[Annotated[float, Field(gt=0, allow_inf_nan=False)], ...] = Field((), max_length=4)
    frost: bool = False
    learn_undeclared: bool = True
    detector: str | None = Field(None, max_length=64)
    assets: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")], AssetOverride] = Field(
        default_factory=dict
    )
    source: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        declared = set(self.channels)
        for code, fault in self.faults.items():
            unknown = set(fault.signature) - declared
            if unknown and not self.learn_undeclared:
                raise ValueError(f"fault {code}: signature names undeclared channels {sorted(unknown)}")
            if fault.criterion is not None and fault.criterion.metric not in declared:
                raise ValueError(f"fault {code}: criterion channel {fault.criterion.metric} is not declared")
        for name in self.operating.names():
            if name in self.channels and self.channels[name].role is ChannelRole.MEASURED:
                raise ValueError(f"operating condition reads {name}, which is a measured channel, not a driver or flag")
        for name in self.lone_leads:
            if name not in declared:
                raise ValueError(f"lone lead {name} is not a declared channel")
        if self.frost and "defrost" not in self.operating.off_flags:
            raise ValueError("frost needs 'defrost' among operating.off_flags")
        return self

    # --- views -------------------------------------------------------------------------------------
    def for_asset(self, asset: str) -> Profile:
        """This profile with ``asset``'s own channels and detector merged in (itself when it has none)."""
        override = self.assets.get(asset)
        if override is None:
            return self
        return self.model_copy(
            update={
                "channels": {**self.channels, **override.channels},
                "detector": override.detector or self.detector,
                "assets": {},
            }
        )

    def drivers(self) -> tuple[str, ...]:
        """Numeric regime drivers, in declaration order."""
        return tuple(n for n, c in self.channels.items() if c.role is ChannelRole.DRIVER)

    def measured(self) -> tuple[str, ...]:
        """Declared measured channels, in declaration order."""
        return tuple(n for n, c in self.channels.items() if c.role is ChannelRole.MEASURED)

    def flags(self) -> tuple[str, ...]:
        """Declared operating flags."""
        return tuple(n for n, c in self.channels.items() if c.role is ChannelRole.FLAG)

    def criterion(self, code: str) -> FailureCriterion | None:
        """The failure criterion of fault ``code``, or None."""
        fault = self.faults.get(code)
        return None if fault is None else fault.criterion

    def plausible(self, name: str) -> tuple[float, float] | None:
        """Readings a working sensor of ``name`` can give, or None when nothing bounds them.

        Explicit ``plausible_low/high`` win. Otherwise half a normal span beyond the normal range, widened
        so a failing machine's readings past its failure criterion stay plausible: a bearing in ISO
        10816 zone D reads 4.5 mm/s and more, far above the normal range, and that is the fault, not a
        broken sensor. Twice an "above" criterion still catches a x10 decimal slip of a normal value.
        """
        ch = self.channels.get(name)
        if ch is None:
            return None
        span = ch.span
        low = high = None
        if span is not None:
            assert ch.normal_low is not None and ch.normal_high is not None
            low, high = ch.normal_low - span / 2, ch.normal_high + span / 2
            for fault in self.faults.values():
                crit = fault.criterion
                if crit is None or crit.metric != name:
                    continue
                if crit.direction == "above":
                    high = max(high, 2.0 * crit.threshold)
                else:
                    low = min(low, crit.threshold - span / 2)
        low = ch.plausible_low if ch.plausible_low is not None else low
        high = ch.plausible_high if ch.plausible_high is not None else high
        if low is None and high is None:
            return None
        return (-math.inf if low is None else low, math.inf if high is None else high)
