"""Run a fleet: simulate every asset of a scenario for a seed, then stream or store its telemetry.

Each asset is simulated over the whole run in one vectorised pass (numpy; the heat pump's controller is
the one sample-by-sample loop), so 100 assets x 30 days at one sample a minute take seconds. A faulty
asset is measured by its healthy sensors, its unit trips at the first operating sample past its failure
criterion (:func:`simulators.fleet.effects.first_trip`), and it is simulated again locked out from there;
the trip is its ground-truth failure. Records are built lazily, a day at a time, merged by timestamp
across assets. The file path never builds a pydantic object per sample; :func:`read_jsonl` validates on
the way back in.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pdm_common.contracts import AssetKind, Telemetry
from pdm_common.logs import get_logger
from simulators.fleet.effects import MachineSignals, first_trip
from simulators.fleet.errors import FleetError
from simulators.fleet.heat_pump import simulate_heat_pump
from simulators.fleet.plan import AssetPlan, FleetPlan, make_plan
from simulators.fleet.pump import simulate_pump
from simulators.fleet.scenario import AssetRef, Scenario
from simulators.fleet.sensors import inject_faults, measure
from simulators.fleet.truth import GroundTruth
from simulators.fleet.weather import Weather, simulate_weather

__all__ = ["AssetSeries", "FleetRun", "generate", "read_jsonl", "site_weather", "write_jsonl"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_log = get_logger(__name__)

CHUNK_SAMPLES = 1440
"""Records are materialised a day (at 1/min) at a time: bounded memory for the Python objects."""
MAX_CLOCK_OFFSET_S = 20.0
"""Each asset samples at its own offset inside the period: unsynchronised device clocks [E]."""


@dataclass(frozen=True, slots=True)
class AssetSeries:
    """One asset's reported telemetry: timestamps, channels (NaN = null), flags, and which samples are sent.

    ``trip_index`` is the sample at which the unit tripped (None: it did not); ``mode`` the heat pump's
    controller mode per sample (empty for pumps), for diagnostics; neither is published.
    """

    ref: AssetRef
    ts_ms: npt.NDArray[np.int64]
    values: dict[str, FloatArray]
    flags: dict[str, BoolArray]
    present: BoolArray
    trip_index: int | None = None
    mode: npt.NDArray[np.int8] | None = None


class FleetRun:
    """The telemetry and ground truth of one simulated fleet."""

    def __init__(self, plan: FleetPlan, series: list[AssetSeries]) -> None:
        """Wrap simulated series; use :func:`generate` to make one."""
        self.plan = plan
        # The trip is the asset's own sample (its clock offset included), so scoring sees the same time.
        t0_ms = plan.scenario.start.timestamp() * 1000.0
        trips = {
            s.ref.name: None if s.trip_index is None else (float(s.ts_ms[s.trip_index]) - t0_ms) / 1000.0
            for s in series
        }
        self.truth: GroundTruth = plan.truth(trips, only={s.ref.name for s in series})
        # Within one sample period assets report in the order of their clock offsets.
        self.series = sorted(series, key=lambda s: (int(s.ts_ms[0]) if s.ts_ms.size else 0, s.ref.name))

    @property
    def n_records(self) -> int:
        """Number of records :meth:`iter_records` yields (silent samples are not records)."""
        return int(sum(int(s.present.sum()) for s in self.series))

    def asset(self, name: str) -> AssetSeries:
        """The series of the asset called ``name``.

        Raises:
            KeyError: no such asset.
        """
        for s in self.series:
            if s.ref.name == name:
                return s
        raise KeyError(name)

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Every record of the run, ordered by timestamp across assets.

        Yields:
            ``{"site", "asset", "ts" (epoch ms), "seq", "kind", "metrics"}``; a null reading is ``None``, a
            silent sample yields nothing (its ``seq`` is skipped, so the receiver sees the gap).
        """
        n = self.plan.n_samples
        for lo in range(0, n, CHUNK_SAMPLES):
            hi = min(n, lo + CHUNK_SAMPLES)
            columns = [_chunk_columns(s, lo, hi) for s in self.series]
            for i in range(hi - lo):
                for s, (names, cols, ts, present) in zip(self.series, columns, strict=True):
                    if not present[i]:
                        continue
                    yield {
                        "site": s.ref.site,
                        "asset": s.ref.name,
                        "ts": ts[i],
                        "seq": lo + i,
                        "kind": str(s.ref.kind),
                        "metrics": {name: col[i] for name, col in zip(names, cols, strict=True)},
                    }


def _chunk_columns(s: AssetSeries, lo: int, hi: int) -> tuple[list[str], list[list[Any]], list[int], list[bool]]:
    names: list[str] = []
    cols: list[list[Any]] = []
    for name, arr in s.values.items():
        part = arr[lo:hi]
        col: list[Any] = part.tolist()
        nulls = np.flatnonzero(np.isnan(part))
        for j in nulls.tolist():
            col[j] = None
        names.append(name)
        cols.append(col)
    for name, flag in s.flags.items():
        names.append(name)
        cols.append(flag[lo:hi].tolist())
    return names, cols, s.ts_ms[lo:hi].tolist(), s.present[lo:hi].tolist()


def _machine(
    plan: FleetPlan, asset: AssetPlan, weather: Weather, epoch_s: FloatArray, t_rel_s: FloatArray, *,
    lockout_from: int | None,
) -> MachineSignals:
    site = plan.scenario.site(asset.ref.site)
    if asset.ref.kind is AssetKind.HEAT_PUMP:
        return simulate_heat_pump(epoch_s, t_rel_s, weather, asset, site, lockout_from=lockout_from)
    return simulate_pump(epoch_s, t_rel_s, asset, site, lockout_from=lockout_from)


def _simulate_asset(
    plan: FleetPlan, asset: AssetPlan, weather: Weather, epoch_s: FloatArray, t_rel_s: FloatArray
) -> AssetSeries:
    rng = np.random.default_rng(list(asset.seed))
    offset_s = float(rng.uniform(0.0, min(MAX_CLOCK_OFFSET_S, plan.scenario.sample_period_s / 2)))
    kind = asset.ref.kind
    machine = _machine(plan, asset, weather, epoch_s, t_rel_s, lockout_from=None)
    healthy = measure(kind, machine.values, t_rel_s, events=asset.events, seed=asset.seed)
    trip = None
    if asset.fault is not None:
        onset = int(np.searchsorted(t_rel_s, asset.fault.onset_s))
        trip = first_trip(asset.fault.code, healthy, machine.operating, onset)
        if trip is not None:
            # The protection stops the unit at the crossing; from there it is locked out.
            machine = _machine(plan, asset, weather, epoch_s, t_rel_s, lockout_from=trip + 1)
            healthy = measure(kind, machine.values, t_rel_s, events=asset.events, seed=asset.seed)
    readings = inject_faults(kind, healthy, machine.values, t_rel_s, faults=asset.sensor_faults, seed=asset.seed)
    ts_ms = np.round((epoch_s + offset_s) * 1000.0).astype(np.int64)
    mode = machine.state.get("mode")
    return AssetSeries(
        ref=asset.ref, ts_ms=ts_ms, values=readings.values, flags=machine.flags, present=readings.present,
        trip_index=trip, mode=None if mode is None else np.asarray(mode, dtype=np.int8),
    )


def generate(scenario: Scenario, seed: int, *, assets: Collection[str] | None = None) -> FleetRun:
    """Simulate ``scenario`` deterministically for ``seed``.

    Args:
        scenario: a validated scenario (see :func:`simulators.fleet.scenario.load_scenario`).
        seed: any integer; the same scenario and seed give identical telemetry and truth.
        assets: simulate only these assets (each is independent of the others, so their series are
            exactly those of the full run); the truth then lists only them.

    Returns:
        The run, with ``.truth`` and ``.iter_records()``.
    """
    plan = make_plan(scenario, seed)
    n = plan.n_samples
    if n < 2:
        raise FleetError(f"scenario {scenario.name}: run shorter than two samples")
    t_rel_s = np.arange(n, dtype=np.float64) * scenario.sample_period_s
    epoch_s = scenario.start.timestamp() + t_rel_s
    weather = site_weather(plan, epoch_s)
    chosen = [a for a in plan.assets if assets is None or a.ref.name in assets]
    series = [_simulate_asset(plan, a, weather[a.ref.site], epoch_s, t_rel_s) for a in chosen]
    _log.info("fleet.generated", scenario=scenario.name, seed=seed, assets=len(series), samples_per_asset=n)
    return FleetRun(plan, series)


def site_weather(plan: FleetPlan, epoch_s: FloatArray) -> dict[str, Weather]:
    """The weather of every site of ``plan`` at ``epoch_s``."""
    return {
        name: simulate_weather(
            epoch_s, sp.spec.climate, plan.cold_spells(name), sp.spec.utc_offset_h, np.random.default_rng(list(sp.seed))
        )
        for name, sp in plan.sites.items()
    }


def write_jsonl(run: FleetRun, path: Path) -> int:
    """Write every record of ``run`` as one JSON object per line; returns the number of records."""
    count = 0
    dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    with Path(path).open("w", encoding="utf-8", buffering=1 << 20) as fh:
        for record in run.iter_records():
            fh.write(dumps(record))
            fh.write("\n")
            count += 1
    _log.info("fleet.written", path=str(path), records=count)
    return count


def read_jsonl(path: Path) -> Iterator[Telemetry]:
    """Read a file written by :func:`write_jsonl`, validating each line as :class:`Telemetry`.

    Raises:
        FleetError: a line is not JSON or not a valid Telemetry record (the line number is named).
    """
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield Telemetry.model_validate(json.loads(line))
            except ValueError as exc:
                raise FleetError(f"{path}:{lineno}: invalid telemetry record: {exc}") from None
