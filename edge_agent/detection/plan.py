"""What a detector needs from a machine profile, as plain picklable data.

:class:`KindPlan` is built once per asset from its :class:`~pdm_common.profiles.Profile` (with the
asset's own channels merged in). It holds only tuples, dicts, floats and these dataclasses, so a
checkpoint of a detector references nothing but the detection package, numpy and the standard
library (the checkpoint loader's allowlist is derived from exactly that, see the contract suite).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from pdm_common.profiles import ChannelRole, Profile

__all__ = ["ChannelPlan", "CriterionPlan", "KindPlan", "OperatingRule", "plan_for"]


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    """One channel as the detector treats it (see :class:`pdm_common.profiles.Channel`)."""

    name: str
    driver: bool = False
    sensor: bool = False
    impulse: bool = False
    log_scale: bool = False
    noise: float | None = None
    quantum: float | None = None
    typical: float | None = None
    scale: float | None = None
    """Typical magnitude (largest |bound| of the normal range): drivers are divided by it so RLS stays
    well conditioned whatever the unit."""
    plausible: tuple[float, float] | None = None

    @property
    def noiseless(self) -> bool:
        """A set-point: it carries no measurement noise and may legitimately hold a value for hours."""
        return self.noise == 0.0


_UNDECLARED = ChannelPlan(name="")
"""A channel the profile does not declare: measured, learned from the data, not a physical sensor."""


@dataclass(frozen=True, slots=True)
class CriterionPlan:
    """A fault's failure criterion (``metric`` crosses ``threshold``)."""

    metric: str
    direction: str
    threshold: float
    description: str


@dataclass(frozen=True, slots=True)
class OperatingRule:
    """When the machine is productive (see :class:`pdm_common.profiles.Operating`)."""

    flag: str | None = None
    off_flags: tuple[str, ...] = ()
    channel: str | None = None
    above: float = 0.0

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


@dataclass(frozen=True, slots=True)
class KindPlan:
    """A machine kind, digested for detection."""

    kind: str
    channels: dict[str, ChannelPlan] = field(default_factory=dict)
    drivers: tuple[str, ...] = ()
    operating: OperatingRule = field(default_factory=OperatingRule)
    learn_undeclared: bool = True
    transients_min: tuple[float, ...] = ()
    frost: bool = False
    lone_leads: dict[str, int] = field(default_factory=dict)
    signatures: dict[str, dict[str, float]] = field(default_factory=dict)
    criteria: dict[str, CriterionPlan] = field(default_factory=dict)

    def channel(self, name: str) -> ChannelPlan:
        """The plan of channel ``name``; an undeclared channel is a measured, non-sensor channel."""
        return self.channels.get(name) or _UNDECLARED

    def accepts(self, name: str) -> bool:
        """Whether a numeric channel ``name`` is modelled (declared, or undeclared and learned)."""
        return name in self.channels or self.learn_undeclared

    def lead_of(self, code: str) -> str:
        """The leading channel of fault ``code``'s signature."""
        sig = self.signatures[code]
        return max(sig, key=lambda m: abs(sig[m]))


def plan_for(profile: Profile) -> KindPlan:
    """Digest ``profile`` (already merged with the asset's own channels) for the detector."""
    channels: dict[str, ChannelPlan] = {}
    for name, ch in profile.channels.items():
        if ch.role is ChannelRole.FLAG:
            continue
        bounds = [abs(b) for b in (ch.normal_low, ch.normal_high) if b is not None]
        channels[name] = ChannelPlan(
            name=name,
            driver=ch.role is ChannelRole.DRIVER,
            sensor=ch.sensor,
            impulse=ch.impulse,
            log_scale=ch.log_scale,
            noise=ch.noise_sigma,
            quantum=ch.quantum,
            typical=ch.typical,
            scale=max(bounds) if bounds and max(bounds) > 0 else None,
            plausible=profile.plausible(name),
        )
    op = profile.operating
    criteria = {
        code: CriterionPlan(f.criterion.metric, f.criterion.direction, f.criterion.threshold, f.criterion.description)
        for code, f in profile.faults.items()
        if f.criterion is not None
    }
    return KindPlan(
        kind=profile.name,
        channels=channels,
        drivers=profile.drivers(),
        operating=OperatingRule(op.flag, op.off_flags, op.channel, op.above),
        learn_undeclared=profile.learn_undeclared,
        transients_min=profile.transients_min,
        frost=profile.frost,
        lone_leads=dict(profile.lone_leads),
        signatures={code: dict(f.signature) for code, f in profile.faults.items()},
        criteria=criteria,
    )


def finite_or(value: float | None, default: float) -> float:
    """``value`` when it is a finite number, else ``default``."""
    return value if value is not None and math.isfinite(value) else default
