"""Detection benchmark: simulator scenarios, offline, through the same engine the agent runs.

For every scenario it generates the fleet (deterministic for the seed), streams each asset's samples
through :class:`edge_agent.engine.DetectionEngine` and scores the alerts against the ground truth:

* share of machine faults alerted before failure, lead time (median, p10) in hours;
* false alarms per asset-month (alerts the ground truth does not explain);
* sensor faults ticketed as machine faults, and sensor faults reported as ``sensor_fault``;
* probable-fault accuracy (the diagnosis on the last event before the failure);
* the same numbers for a plain River HalfSpaceTrees with a fixed threshold, in the same run;
* µs per sample of ``DetectionEngine.process`` on the heat-pump streams.

Usage::

    .venv/bin/python bench/detection.py                      # all four scenarios, writes docs/
    .venv/bin/python bench/detection.py --scenario mixed-faults --max-assets 30 --no-baseline

Assets are independent, so they are processed one by one (``--jobs`` in parallel), each through its
own engine, in time order.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.detection import DetectionSettings  # noqa: E402
from edge_agent.engine import DetectionEngine  # noqa: E402
from pdm_common.catalog import SENSOR_FAULT, is_operating  # noqa: E402
from pdm_common.contracts import AlertEvent, AssetKind, EventType, Telemetry  # noqa: E402
from simulators.fleet import FleetRun, generate, load_scenario  # noqa: E402
from simulators.fleet.truth import AssetTruth  # noqa: E402

SCENARIOS = ("healthy-winter", "operating-changes", "sensor-faults", "mixed-faults")
SEED = 20260105
EXPLAIN_AFTER = timedelta(days=1)
"""An alert up to a day after a fault's failure (or a sensor fault's end) is still explained by it."""

HST_TREES, HST_HEIGHT, HST_WINDOW = 25, 8, 250
"""river-notes.md measured set-up: 25 trees of height 8 after a MinMaxScaler."""
HST_WARMUP = 1440
"""Samples (one day) after which the baseline's threshold is frozen at the highest warm-up score."""

_STATE: dict[str, FleetRun] = {}
"""The generated run, shared with forked workers (copy-on-write) instead of being pickled to them."""


@dataclass
class AssetResult:
    """What one asset produced: our alerts, the baseline's alert openings, and timing."""

    asset: str
    kind: str
    samples: int
    seconds: float
    alerts: list[dict[str, Any]]
    baseline_opens: list[datetime]


def _telemetry(run: FleetRun, name: str) -> list[tuple[Telemetry, datetime]]:
    s = run.asset(name)
    names = list(s.values)
    cols = [s.values[n].tolist() for n in names]
    flag_names = list(s.flags)
    flag_cols = [s.flags[n].tolist() for n in flag_names]
    out = []
    for i in np.flatnonzero(s.present).tolist():
        metrics: dict[str, float | bool | None] = {
            n: (None if math.isnan(c[i]) else c[i]) for n, c in zip(names, cols, strict=True)
        }
        for n, c in zip(flag_names, flag_cols, strict=True):
            metrics[n] = bool(c[i])
        ts = datetime.fromtimestamp(int(s.ts_ms[i]) / 1000, tz=UTC)
        # The simulator's values are valid by construction; skip re-validation to time the core only.
        tel = Telemetry.model_construct(site=s.ref.site, asset=name, ts=ts, seq=i, kind=s.ref.kind, metrics=metrics)
        out.append((tel, ts))
    return out


class _HstBaseline:
    """River HalfSpaceTrees on scaled numeric metrics, fixed threshold, same N-of-M debounce."""

    def __init__(self, settings: DetectionSettings) -> None:
        from river import anomaly, preprocessing

        self.model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
            n_trees=HST_TREES, height=HST_HEIGHT, window_size=HST_WINDOW, seed=42
        )
        self.threshold = 0.0
        self.seen = 0
        self.window: deque[bool] = deque(maxlen=settings.debounce_m)
        self.n = settings.debounce_n
        self.open = False
        self.calm = 0
        self.calm_needed = int(settings.resolve_after_h * 60)

    def step(self, tel: Telemetry, now: datetime) -> bool:
        if not is_operating(tel.kind, tel.metrics):
            return False
        x = tel.numeric()
        score = float(self.model.score_one(x))
        self.model.learn_one(x)
        self.seen += 1
        if self.seen <= HST_WARMUP:
            if self.seen > HST_WINDOW:
                self.threshold = max(self.threshold, score)
            return False
        hit = score > self.threshold
        self.window.append(hit)
        if not self.open and sum(self.window) >= self.n:
            self.open, self.calm = True, 0
            return True
        if self.open:
            self.calm = 0 if hit else self.calm + 1
            if self.calm >= self.calm_needed:
                self.open = False
        return False


def _process_asset(args: tuple[str, bool, dict[str, Any]]) -> AssetResult:
    name, with_baseline, overrides = args
    settings = DetectionSettings.model_validate(overrides)
    samples = _telemetry(_STATE["run"], name)
    engine = DetectionEngine(settings, gateway="bench", agent_version="bench")
    events: list[AlertEvent] = []
    t0 = time.perf_counter()
    for tel, now in samples:
        for ev in engine.process(tel, now):
            if isinstance(ev, AlertEvent):
                events.append(ev)
    seconds = time.perf_counter() - t0
    opens: list[datetime] = []
    if with_baseline:
        base = _HstBaseline(settings)
        opens = [now for tel, now in samples if base.step(tel, now)]
    alerts = [
        {
            "alert_id": e.alert_id,
            "event": e.event.value,
            "code": e.probable_fault.code,
            "at": e.emitted_at or e.last_seen,
            "metric": e.contributors[0].metric if e.contributors else None,
            "ttf": e.time_to_failure_h.p50 if e.time_to_failure_h else None,
        }
        for e in events
    ]
    kind = samples[0][0].kind if samples else "?"
    return AssetResult(name, kind, len(samples), seconds, alerts, opens)


def _explained_machine(truth: AssetTruth, at: datetime) -> bool:
    return any(f.onset <= at and (f.failure is None or at <= f.failure + EXPLAIN_AFTER) for f in truth.machine_faults)


def _explained_sensor(truth: AssetTruth, at: datetime, metric: str | None) -> bool:
    return any(
        f.start <= at <= f.end + EXPLAIN_AFTER and (metric is None or f.metric == metric) for f in truth.sensor_faults
    )


def _in_sensor_fault(truth: AssetTruth, at: datetime) -> bool:
    return any(f.start <= at <= f.end + EXPLAIN_AFTER for f in truth.sensor_faults)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(values, q))


def score_scenario(run: FleetRun, results: list[AssetResult]) -> dict[str, Any]:
    """Score one scenario's alerts against its ground truth (ours and the baseline)."""
    truth = {a.asset: a for a in run.truth.assets}
    days = (run.truth.end - run.truth.start).total_seconds() / 86400
    asset_months = len(results) * days / 30
    per_fault: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    totals: dict[str, defaultdict[str, float]] = {"ours": defaultdict(float), "hst": defaultdict(float)}
    for r in results:
        t = truth[r.asset]
        opened = [a for a in r.alerts if a["event"] == EventType.OPENED.value]
        machine_opened = [a for a in opened if a["code"] != SENSOR_FAULT]
        for f in t.machine_faults:
            if f.failure is None:
                continue
            span_d = (f.failure - f.onset).total_seconds() / 86400
            first = next((a for a in machine_opened if f.onset <= a["at"] < f.failure), None)
            pf = per_fault[f.code.value]
            pf["n"].append(1)
            pf["long"].append(span_d >= 7)
            lead = (f.failure - first["at"]).total_seconds() / 3600 if first else None
            pf["lead"].append(lead)
            diag = None
            if first is not None:
                before = [a for a in r.alerts if a["alert_id"] == first["alert_id"] and a["at"] < f.failure]
                diag = before[-1]["code"] if before else first["code"]
            pf["diag_ok"].append(diag == f.code.value if first else None)
            base_first = next((o for o in r.baseline_opens if f.onset <= o < f.failure), None)
            pf["base_lead"].append((f.failure - base_first).total_seconds() / 3600 if base_first else None)
        for a in opened:
            if a["code"] == SENSOR_FAULT:
                ok = _explained_sensor(t, a["at"], a["metric"])
            else:
                ok = _explained_machine(t, a["at"])
                if not ok and _in_sensor_fault(t, a["at"]):
                    totals["ours"]["sensor_as_machine"] += 1
            if not ok:
                totals["ours"]["false_alarms"] += 1
        for o in r.baseline_opens:
            if not _explained_machine(t, o):
                totals["hst"]["false_alarms"] += 1
                if _in_sensor_fault(t, o):
                    totals["hst"]["sensor_as_machine"] += 1
        for sf in t.sensor_faults:
            totals["ours"]["sensor_faults"] += 1
            if any(
                a["code"] == SENSOR_FAULT and a["metric"] == sf.metric and sf.start <= a["at"] <= sf.end + EXPLAIN_AFTER
                for a in opened
            ):
                totals["ours"]["sensor_faults_named"] += 1
    faults: dict[str, Any] = {}
    all_lead, all_base, long_lead, long_base, diag_all = [], [], [], [], []
    n_all = 0
    for code, pf in sorted(per_fault.items()):
        leads = [x for x in pf["lead"] if x is not None]
        bleads = [x for x in pf["base_lead"] if x is not None]
        diags = [x for x in pf["diag_ok"] if x is not None]
        n = len(pf["n"])
        n_all += n
        all_lead += leads
        all_base += bleads
        diag_all += diags
        long_lead += [x for x, lg in zip(pf["lead"], pf["long"], strict=True) if lg and x is not None]
        long_base += [x for x, lg in zip(pf["base_lead"], pf["long"], strict=True) if lg and x is not None]
        faults[code] = {
            "n": n,
            "alerted": len(leads) / n,
            "lead_median_h": _pct(leads, 50),
            "lead_p10_h": _pct(leads, 10),
            "diagnosis_ok": (sum(diags) / len(diags)) if diags else None,
            "hst_alerted": len(bleads) / n,
            "hst_lead_median_h": _pct(bleads, 50),
        }
    samples = sum(r.samples for r in results)
    hp = [r for r in results if r.kind == AssetKind.HEAT_PUMP.value]
    hp_us = 1e6 * sum(r.seconds for r in hp) / max(1, sum(r.samples for r in hp))
    return {
        "assets": len(results),
        "days": days,
        "samples": samples,
        "machine_faults": n_all,
        "alerted_before_failure": (len(all_lead) / n_all) if n_all else None,
        "lead_median_h": _pct(all_lead, 50),
        "lead_p10_h": _pct(all_lead, 10),
        "lead_median_h_long": _pct(long_lead, 50),
        "diagnosis_accuracy": (sum(diag_all) / len(diag_all)) if diag_all else None,
        "false_alarms_per_asset_month": totals["ours"]["false_alarms"] / asset_months,
        "sensor_as_machine": int(totals["ours"]["sensor_as_machine"]),
        "sensor_faults": int(totals["ours"]["sensor_faults"]),
        "sensor_faults_named": int(totals["ours"]["sensor_faults_named"]),
        "hst_alerted_before_failure": (len(all_base) / n_all) if n_all else None,
        "hst_lead_median_h": _pct(all_base, 50),
        "hst_lead_median_h_long": _pct(long_base, 50),
        "hst_false_alarms_per_asset_month": totals["hst"]["false_alarms"] / asset_months,
        "hst_sensor_as_machine": int(totals["hst"]["sensor_as_machine"]),
        "us_per_sample_heat_pump": round(hp_us, 1),
        "faults": faults,
    }


def run_scenario(
    name: str, *, max_assets: int | None, jobs: int, baseline: bool, overrides: dict[str, Any]
) -> dict[str, Any]:
    """Generate ``name`` and score it; assets with faults are kept first when ``max_assets`` trims."""
    scenario = load_scenario(ROOT / "simulators" / "scenarios" / f"{name}.toml")
    run = _STATE["run"] = generate(scenario, SEED)
    assets = [a.asset for a in run.truth.assets]
    if max_assets is not None:
        busy = [a.asset for a in run.truth.assets if a.machine_faults or a.sensor_faults]
        quiet = [a for a in assets if a not in busy]
        assets = (busy + quiet)[:max_assets]
    tasks = [(a, baseline, overrides) for a in assets]
    if jobs > 1:
        with mp.get_context("fork").Pool(jobs) as pool:
            results = pool.map(_process_asset, tasks, chunksize=1)
    else:
        results = [_process_asset(t) for t in tasks]
    if max_assets is not None:
        kept = set(assets)
        run.truth = run.truth.model_copy(update={"assets": [a for a in run.truth.assets if a.asset in kept]})
    return score_scenario(run, results)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def report(results: dict[str, dict[str, Any]]) -> str:
    """Markdown tables of the results."""
    keys = [
        ("machine_faults", "machine faults"),
        ("alerted_before_failure", "alerted before failure"),
        ("lead_median_h", "lead time median (h)"),
        ("lead_p10_h", "lead time p10 (h)"),
        ("lead_median_h_long", "lead median, onset→failure ≥ 7 d (h)"),
        ("diagnosis_accuracy", "probable fault correct"),
        ("false_alarms_per_asset_month", "false alarms / asset-month"),
        ("sensor_as_machine", "sensor faults ticketed as machine faults"),
        ("sensor_faults_named", "sensor faults reported as sensor_fault"),
        ("sensor_faults", "sensor faults in truth"),
        ("hst_alerted_before_failure", "HST baseline: alerted before failure"),
        ("hst_lead_median_h", "HST baseline: lead median (h)"),
        ("hst_false_alarms_per_asset_month", "HST baseline: false alarms / asset-month"),
        ("hst_sensor_as_machine", "HST baseline: sensor faults as machine alerts"),
        ("us_per_sample_heat_pump", "µs per heat-pump sample (process)"),
    ]
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, label in keys:
        lines.append(f"| {label} | " + " | ".join(_fmt(results[n].get(key)) for n in names) + " |")
    lines += [
        "",
        "| scenario | fault | n | alerted | lead median h | lead p10 h | diagnosis ok | HST alerted | HST lead h |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        for code, f in results[n]["faults"].items():
            lines.append(
                f"| {n} | {code} | {f['n']} | {_fmt(f['alerted'])} | {_fmt(f['lead_median_h'])} | "
                f"{_fmt(f['lead_p10_h'])} | {_fmt(f['diagnosis_ok'])} | {_fmt(f['hst_alerted'])} | "
                f"{_fmt(f['hst_lead_median_h'])} |"
            )
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Lead time per fault type (ours vs the HST baseline) and false alarms per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2.2, 1]})
    faults = {code: f for r in results.values() for code, f in r["faults"].items()}
    codes = sorted(faults)
    xs = np.arange(len(codes))
    ours = [faults[c]["lead_median_h"] or 0.0 for c in codes]
    hst = [faults[c]["hst_lead_median_h"] or 0.0 for c in codes]
    ax1.bar(xs - 0.2, ours, 0.4, label="regime-rls-ewma (ours)")
    ax1.bar(xs + 0.2, hst, 0.4, label="HalfSpaceTrees, fixed threshold")
    ax1.axhline(72, color="grey", linestyle="--", linewidth=1, label="72 h target")
    ax1.set_xticks(xs, codes, rotation=35, ha="right")
    ax1.set_ylabel("median lead time before failure (h)")
    ax1.legend(fontsize=8)
    names = list(results)
    ys = np.arange(len(names))
    ax2.barh(ys - 0.2, [results[n]["false_alarms_per_asset_month"] for n in names], 0.4, label="ours")
    ax2.barh(ys + 0.2, [results[n]["hst_false_alarms_per_asset_month"] for n in names], 0.4, label="HST")
    ax2.axvline(0.05, color="grey", linestyle="--", linewidth=1)
    ax2.set_yticks(ys, names)
    ax2.set_xscale("symlog", linthresh=0.05)
    ax2.set_xlabel("false alarms per asset-month")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the tables; write JSON and the plot."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all four")
    p.add_argument("--max-assets", type=int, default=None, help="assets per scenario (faulty ones first)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="DetectionSettings override")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--plot", type=Path, default=None, help="write the PNG plot here")
    args = p.parse_args(argv)
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    results: dict[str, dict[str, Any]] = {}
    for name in args.scenario or SCENARIOS:
        t0 = time.perf_counter()
        results[name] = run_scenario(
            name, max_assets=args.max_assets, jobs=args.jobs, baseline=not args.no_baseline, overrides=overrides
        )
        print(f"# {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
