"""Synthetic heat-pump streams for the core tests: seeded, one sample a minute, simple physics.

Not the fleet simulator: a few lines of algebra on failure-physics.md A1 (signals follow outdoor
temperature and compressor speed) so a test can say exactly what it injects and when.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from pdm_common.contracts import AssetKind, Telemetry

T0 = datetime(2026, 1, 5, tzinfo=UTC)
"""A Monday in January; the fake clock of every test."""

def wire(tel: Telemetry) -> tuple[str, bytes]:
    """The sample as a sensor publishes it: its telemetry topic and JSON payload (epoch-ms time)."""
    body = {"ts": int(tel.ts.timestamp() * 1000), "seq": tel.seq, "kind": str(tel.kind), "metrics": tel.metrics}
    return f"pdm/v1/{tel.site}/{tel.asset}/telemetry", json.dumps(body).encode()


Injection = Callable[[float, dict[str, float | bool | None]], None]
"""Modifies a sample's metrics in place, given hours since the start of the stream."""


@dataclass
class HeatPumpStream:
    """A seeded heat pump; ``cold_spell`` lowers the outdoor temperature from ``cold_from_h``."""

    seed: int = 7
    asset: str = "hp-0001"
    site: str = "site-a"
    base_temp_c: float = 2.0
    cold_spell_k: float = 0.0
    cold_from_h: float = 1e9
    defrost: bool = True
    injections: list[Injection] = field(default_factory=list)

    def samples(self, hours: float, *, start_h: float = 0.0) -> Iterator[tuple[Telemetry, datetime]]:
        """Yield ``(telemetry, now)`` one minute apart from ``T0 + start_h``."""
        rng = np.random.default_rng(self.seed + int(start_h * 60))
        for i in range(int(hours * 60)):
            h = start_h + i / 60
            now = T0 + timedelta(hours=h)
            metrics = self.metrics(h, rng)
            for inject in self.injections:
                inject(h, metrics)
            tel = Telemetry(site=self.site, asset=self.asset, ts=now, seq=int(h * 60), kind=AssetKind.HEAT_PUMP,
                            metrics=metrics)
            yield tel, now

    def metrics(self, h: float, rng: np.random.Generator) -> dict[str, float | bool | None]:
        """One healthy sample at hour ``h``."""
        cold = self.cold_spell_k * min(1.0, max(0.0, (h - self.cold_from_h) / 12)) if h >= self.cold_from_h else 0.0
        t_oa = self.base_temp_c - cold + 4.0 * math.sin(2 * math.pi * (h - 9) / 24) + 2.0 * math.sin(h / 37)
        hz = max(25.0, min(105.0, 55.0 - 2.2 * t_oa))
        in_defrost = self.defrost and -6 < t_oa < 5 and (h % 2.0) < 0.15
        flow_t = 40.0 - 0.5 * t_oa
        n = rng.normal
        return {
            "outdoor_temp_c": round(t_oa + n(0, 0.1), 1),
            "flow_temp_c": round(flow_t + n(0, 0.1) - (4.0 if in_defrost else 0.0), 1),
            "return_temp_c": round(flow_t - 5.0 + n(0, 0.1), 1),
            "discharge_temp_c": round(t_oa + 62.0 + 0.1 * hz + n(0, 0.3), 1),
            "suction_pressure_bar": round(8.0 * math.exp(0.035 * (t_oa - 7.0)) + n(0, 0.05), 2),
            "discharge_pressure_bar": round(26.0 - 0.1 * t_oa + n(0, 0.1), 2),
            "compressor_current_a": round(2.0 + 0.1 * hz + n(0, 0.1), 1),
            "compressor_hz": round(hz),
            "fan_rpm": 0.0 if in_defrost else round(400.0 + 4.0 * hz + n(0, 5.0)),
            "flow_lpm": round(20.0 + n(0, 0.3), 1),
            "defrost": in_defrost,
        }


def leak(onset_h: float, per_day: float) -> Injection:
    """Refrigerant leak: discharge temperature up, suction and head pressure down, growing linearly."""

    def apply(h: float, m: dict[str, float | bool | None]) -> None:
        if h < onset_h:
            return
        d = (h - onset_h) / 24 * per_day
        m["discharge_temp_c"] = _num(m, "discharge_temp_c") + 6.0 * d
        m["suction_pressure_bar"] = _num(m, "suction_pressure_bar") - 0.4 * d
        m["discharge_pressure_bar"] = _num(m, "discharge_pressure_bar") - 0.5 * d

    return apply


def stuck(metric: str, from_h: float) -> Injection:
    """The sensor repeats its reading at ``from_h`` forever."""
    held: dict[str, float | bool | None] = {}

    def apply(h: float, m: dict[str, float | bool | None]) -> None:
        if h >= from_h:
            m[metric] = held.setdefault(metric, m[metric])

    return apply


def dropout(metric: str, from_h: float) -> Injection:
    """The sensor sends null from ``from_h``."""

    def apply(h: float, m: dict[str, float | bool | None]) -> None:
        if h >= from_h:
            m[metric] = None

    return apply


def spikes(metric: str, every_h: float, size: float, from_h: float) -> Injection:
    """Single-sample outliers of ``size`` every ``every_h`` hours from ``from_h``."""

    def apply(h: float, m: dict[str, float | bool | None]) -> None:
        if h >= from_h and round(h * 60) % round(every_h * 60) == 0:
            m[metric] = _num(m, metric) + size

    return apply


def drift(metric: str, from_h: float, per_day: float) -> Injection:
    """One channel drifts linearly (y = x + r (t - t0), failure-physics.md A3)."""

    def apply(h: float, m: dict[str, float | bool | None]) -> None:
        if h >= from_h:
            m[metric] = _num(m, metric) + per_day * (h - from_h) / 24

    return apply


def wrong_scale(metric: str, from_h: float, to_h: float, scale: float) -> Injection:
    """The sensor reads ``scale`` times the true value between ``from_h`` and ``to_h`` (a decimal slip)."""

    def apply(h: float, m: dict[str, float | bool | None]) -> None:
        if from_h <= h < to_h:
            m[metric] = _num(m, metric) * scale

    return apply


def _num(m: dict[str, float | bool | None], key: str) -> float:
    v = m[key]
    assert isinstance(v, float | int) and not isinstance(v, bool)
    return float(v)
