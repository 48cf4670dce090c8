"""Flat views of the built-in machine profiles, for code that iterates kinds, channels and faults.

Nothing is defined here: every table is derived from :mod:`pdm_common.profiles` (the one place
the vocabulary lives), so the simulators, the detector and the bridge cannot disagree. New code
should read the profiles directly; these views exist because the simulators and benchmarks work on
"every metric of a kind" and "every fault of a kind".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pdm_common.contracts import AssetKind
from pdm_common.profiles import BUILTIN, SENSOR_FAULT, UNCLASSIFIED, ChannelRole, FailureCriterion, FaultCode, Profile

__all__ = [
    "FAILURE_CRITERIA",
    "FAULTS_BY_KIND",
    "METRICS",
    "SENSOR_FAULT",
    "UNCLASSIFIED",
    "FailureCriterion",
    "FaultCode",
    "MetricSpec",
    "is_operating",
]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One numeric channel of a built-in kind: unit, normal operating range and noise (1 sigma)."""

    name: str
    unit: str
    normal_low: float
    normal_high: float
    noise_sigma: float


_PROFILES: dict[AssetKind, Profile] = {AssetKind(p.name): p for p in BUILTIN}


def _metrics(profile: Profile) -> tuple[MetricSpec, ...]:
    out = []
    for name, ch in profile.channels.items():
        if ch.role is ChannelRole.FLAG:
            continue
        # Built-in channels declare their ranges and noise (the profile contract suite checks it).
        assert ch.normal_low is not None and ch.normal_high is not None and ch.noise_sigma is not None
        out.append(MetricSpec(name, ch.unit, ch.normal_low, ch.normal_high, ch.noise_sigma))
    return tuple(out)


METRICS: dict[AssetKind, tuple[MetricSpec, ...]] = {k: _metrics(p) for k, p in _PROFILES.items()}
"""Numeric channels per built-in kind. Operating-state flags (``defrost``, ``running``) are not listed."""

FAULTS_BY_KIND: dict[AssetKind, tuple[FaultCode, ...]] = {
    k: tuple(FaultCode(code) for code in p.faults) for k, p in _PROFILES.items()
}

FAILURE_CRITERIA: dict[FaultCode, FailureCriterion] = {
    FaultCode(code): fault.criterion
    for p in _PROFILES.values()
    for code, fault in p.faults.items()
    if fault.criterion is not None
}


def is_operating(kind: str, metrics: Mapping[str, float | bool | None]) -> bool:
    """True when a built-in ``kind`` is in its productive state, where failure criteria apply.

    Heat pump: compressor running (``compressor_hz`` > 0) and not defrosting. Pump: ``running`` flag
    true, or, without the flag, shaft speed above 100 rpm. Another kind is never judged by these
    rules: use its profile's ``operating``.

    Raises:
        ValueError: ``kind`` is not a built-in kind.
    """
    return _PROFILES[AssetKind(kind)].operating(metrics)
