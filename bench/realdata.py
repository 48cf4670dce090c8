"""Real-data benchmark: every detector over the public run-to-failure pack, through its own scorer.

The pack (``realdata/`` in the shared design folder: NASA C-MAPSS FD002/FD003/FD004 and two NAB
series) comes with ``score.py``, which gives each run to a fresh detector one sample at a time
(``step(x, t) -> bool``, decide before learning) and applies one alert rule to every detector. Here
each detector runs through a thin adapter over the agent's own core,
:class:`edge_agent.detection.AssetDetector`, with the dataset declared as a machine kind the way an
operator declares one in ``[kinds.<name>]``:

* C-MAPSS: kind ``turbofan``, the three operational settings (altitude, Mach, throttle) declared as
  regime drivers, not physical sensors; the 21 sensors undeclared (learned from the data). ``t`` is
  the flight cycle; the adapter feeds one cycle per hour (the pack gives no clock; the agent is
  specified from 1 Hz to one sample an hour, and a flight is an hour or two).
* NAB: kind ``nab_series``, nothing declared; ``t`` is epoch seconds.

Warm-up is the scorer's (it passes each run's warm-up in samples and in time); every other setting
is the agent's default ``DetectionSettings``, the same for every dataset. The two baselines of the
pack (frozen z-score, River HalfSpaceTrees) run in the same invocation.

Usage::

    .venv/bin/python bench/realdata.py                           # all detectors, all data, docs/ outputs
    .venv/bin/python bench/realdata.py --detectors regime --datasets cmapss/FD002 --split dev
    .venv/bin/python bench/realdata.py --costs                   # import time, RSS and µs per sample

``--split dev`` scores the development half (first half of each C-MAPSS subset's engines, no NAB),
``--split holdout`` the rest; settings were chosen on ``dev`` (docs/detection.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.detection import AssetDetector, DetectionSettings, plan_for  # noqa: E402
from edge_agent.detection.models import DETECTORS  # noqa: E402
from pdm_common.profiles import ProfileRegistry  # noqa: E402

CYCLE_S = 3600.0
"""One C-MAPSS flight cycle is fed as one hour (see the module docstring)."""

KINDS: dict[str, dict[str, Any]] = {
    "turbofan": {
        "words": {"en": "turbofan engine (C-MAPSS)"},
        "channels": {
            f"setting{i}": {"role": "driver", "sensor": False} for i in (1, 2, 3)
        },
    },
    "nab_series": {"words": {"en": "NAB series"}},
}
"""The datasets as an operator would declare them under ``[kinds]`` in the agent's configuration."""

REGISTRY = ProfileRegistry.with_declared(KINDS)


def _candidates() -> list[Path]:
    env = os.environ.get("PDM_REALDATA")
    out = [Path(env)] if env else []
    return [*out, ROOT.parent / "shared" / "realdata", ROOT.parents[1] / "shared" / "realdata"]


def find_realdata() -> Path:
    """The shared real-data pack (``PDM_REALDATA`` or ``../shared/realdata`` beside the checkout)."""
    for path in _candidates():
        if (path / "score.py").is_file():
            return path
    raise SystemExit("real-data pack not found: set PDM_REALDATA to the folder holding score.py")


class Adapter:
    """``score.py``'s ``step(x, t)`` over the agent's :class:`AssetDetector`.

    Args:
        kind: the declared kind of the dataset.
        warmup: the run's warm-up in samples (from the scorer).
        warmup_t: the run's warm-up in ``t`` units (from the scorer).
        unit_s: seconds per ``t`` unit.
        detector: the registered detector's name.
        overrides: ``DetectionSettings`` fields to change (for sweeps on the development split only).
    """

    def __init__(self, kind: str, *, warmup: int, warmup_t: float, unit_s: float, detector: str,
                 overrides: dict[str, Any] | None = None) -> None:
        settings = DetectionSettings.model_validate({
            "warmup_samples": max(warmup, 10),
            "warmup_h": warmup_t * unit_s / 3600.0,
            **(overrides or {}),
        })
        self.unit_s = unit_s
        self.detector = AssetDetector(plan_for(REGISTRY.require(kind)), settings, detector=detector, seed=42)

    def step(self, x: dict[str, float], t: float) -> bool:
        """True when the detector calls the sample anomalous (it learns afterwards)."""
        return self.detector.observe(x, t * self.unit_s, alert_active=False).anomalous


def factory_for(group: str, detector: str, overrides: dict[str, Any] | None = None) -> Callable[..., Adapter]:
    """A ``score.py`` factory for dataset ``group`` and ``detector``."""
    kind, unit_s = ("turbofan", CYCLE_S) if group.startswith("cmapss") else ("nab_series", 1.0)

    def factory(warmup: int, warmup_t: float) -> Adapter:
        return Adapter(kind, warmup=warmup, warmup_t=warmup_t, unit_s=unit_s, detector=detector, overrides=overrides)

    return factory


def _split(runs: list[Any], group: str, split: str) -> list[Any]:
    if split == "all" or not group.startswith("cmapss"):
        return runs
    half = len(runs) // 2
    return runs[:half] if split == "dev" else runs[half:]


def evaluate(score: Any, detector: str, groups: list[str], split: str,
             overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score ``detector`` on ``groups`` with the pack's scorer; summaries and per-run results."""
    summaries, details = [], []
    for group in groups:
        if split == "dev" and not group.startswith("cmapss"):
            continue
        runs = _split(score.load_group(group), group, split)
        start = time.perf_counter()
        factory = factory_for(group, detector, overrides)
        results = [score.evaluate_run(run, score.stream(run, factory, {})) for run in runs]
        summary = score.summarize(group, runs[0].unit, results)
        summary["seconds"] = round(time.perf_counter() - start, 1)
        summary["samples"] = sum(r.n for r in runs)
        summaries.append(summary)
        details.extend(results)
        print(f"  {detector:12s} {group}: {len(runs)} runs, {summary['seconds']} s", file=sys.stderr)
    return {"summary": summaries, "runs": details}


def evaluate_baseline(score: Any, baselines: Any, name: str, groups: list[str], split: str) -> dict[str, Any]:
    """The pack's baseline ``name`` on the same runs."""
    factory = getattr(baselines, name)
    summaries = []
    for group in groups:
        if split == "dev" and not group.startswith("cmapss"):
            continue
        runs = _split(score.load_group(group), group, split)
        results = [score.evaluate_run(run, score.stream(run, factory, {})) for run in runs]
        summaries.append(score.summarize(group, runs[0].unit, results))
        print(f"  baseline:{name:8s} {group}: {len(runs)} runs", file=sys.stderr)
    return {"summary": summaries}


# --- costs -------------------------------------------------------------------------------------------

_COST_SNIPPET = r"""
import resource, sys, time
t0 = time.perf_counter()
import numpy  # the import floor of every detector
t1 = time.perf_counter()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
name = sys.argv[1]
if name == "bare_hst":
    from river import anomaly
else:
    from edge_agent.detection.models import detector_class
    detector_class(name)
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{(t2 - t1) * 1000:.1f} {(peak - base) / 1024:.1f} {peak / 1024:.1f}")
"""


def import_cost(name: str) -> dict[str, float]:
    """Import time and RSS a detector adds over numpy, in a fresh interpreter (best of three)."""
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", _COST_SNIPPET, name], capture_output=True, text=True,
                             cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        ms, added, peak = (float(v) for v in out.stdout.split())
        runs.append((ms, added, peak))
    ms, added, peak = min(runs)
    return {"import_ms": ms, "added_rss_mib": added, "peak_rss_mib": peak}


def per_sample_cost(name: str, n: int = 20_000) -> float:
    """µs per 6-metric sample through :class:`AssetDetector` (warm, one core), median of three."""
    import random

    registry = ProfileRegistry.with_declared({"bench6": {"channels": {"load_pct": {"role": "driver",
                                                                                    "sensor": False}}}})
    plan = plan_for(registry.require("bench6"))
    rng = random.Random(1)
    settings = DetectionSettings(warmup_samples=200, warmup_h=1.0)
    times = []
    for _ in range(3):
        det = AssetDetector(plan, settings, detector=name, seed=1)
        t = 1.7e9
        rows = []
        for i in range(n):
            load = 50 + 30 * math.sin(i / 300)
            rows.append({"load_pct": load, **{f"ch{k}_c": 20 + k + 0.1 * load + rng.gauss(0, 0.2) for k in range(5)}})
        for x in rows[: n // 4]:
            t += 60
            det.observe(x, t, alert_active=False)
        start = time.perf_counter()
        for x in rows[n // 4 :]:
            t += 60
            det.observe(x, t, alert_active=False)
        times.append((time.perf_counter() - start) / (n - n // 4) * 1e6)
    return sorted(times)[1]


def bare_hst_cost(n: int = 20_000) -> float:
    """µs per 6-feature sample of a bare River HalfSpaceTrees loop (score, then learn), median of three."""
    import random

    from river import anomaly, preprocessing

    rng = random.Random(1)
    rows = [{f"f{k}": rng.random() for k in range(6)} for _ in range(n)]
    times = []
    for _ in range(3):
        model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(n_trees=25, height=8, window_size=250, seed=42)
        start = time.perf_counter()
        for x in rows:
            model.score_one(x)
            model.learn_one(x)
        times.append((time.perf_counter() - start) / n * 1e6)
    return sorted(times)[1]


def costs(detectors: list[str]) -> dict[str, Any]:
    """Import, memory and per-sample cost of each detector, and the bare HST loop, in one run."""
    out: dict[str, Any] = {"bare_hst": {**import_cost("bare_hst"), "us_per_sample": bare_hst_cost()}}
    for name in detectors:
        out[name] = {**import_cost(name), "us_per_sample": per_sample_cost(name)}
        out[name]["vs_bare_hst"] = out[name]["us_per_sample"] / out["bare_hst"]["us_per_sample"]
        print(f"  cost {name}: {out[name]}", file=sys.stderr)
    return out


# --- output --------------------------------------------------------------------------------------------

_TARGETS = {
    "cmapss/FD002": "detected ≥ 0.90, clean ≥ 0.85, lead ≥ 50, FA ≤ 0.05",
    "cmapss/FD004": "detected ≥ 0.90, clean ≥ 0.85, lead ≥ 50, FA ≤ 0.05",
    "cmapss/FD003": "detected ≥ 0.95, clean ≥ 0.90",
    "nab/machine_temperature": "all detected, NAB > 91.2, ≤ 1 FA",
}


def table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per dataset and detector (baselines included)."""
    cols = ("dataset", "detector", "detected", "clean", "lead median", "lead p10", "false alarms", "FA rate",
            "runs with FA", "NAB")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    groups: list[str] = []
    for res in results.values():
        groups += [s["group"] for s in res["summary"] if s["group"] not in groups]
    for group in groups:
        for name, res in results.items():
            s = next((x for x in res["summary"] if x["group"] == group), None)
            if s is None:
                continue
            lines.append(
                f"| {group} | {name} | {s['detected']:.2f} | {s['clean']:.2f} | {s['lead_median']:.1f} "
                f"{s['lead_unit']} | {s['lead_p10']:.1f} | {s['false_alarms']} | {s['fa_rate']:.3f} "
                f"{'/100 cyc' if s['lead_unit'] == 'cycles' else '/1000 h'} | {s['runs_with_false_alarm']:.2f} | "
                f"{s.get('nab_score', float('nan')):.1f} |".replace("nan", "–")
            )
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Clean share and false-alarm rate per dataset and detector (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [s["group"] for s in next(iter(results.values()))["summary"]]
    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        by = {s["group"]: s for s in results[name]["summary"]}
        xs = [i + k * width for i in range(len(groups))]
        axes[0].bar(xs, [by[g]["clean"] if g in by else 0 for g in groups], width, label=name)
        axes[1].bar(xs, [by[g]["runs_with_false_alarm"] if g in by else 0 for g in groups], width, label=name)
    for ax, title in zip(axes, ("clean (detected, no false alarm before)", "share of runs with a false alarm"),
                         strict=True):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))])
        ax.set_xticklabels([g.replace("nab/", "").replace("cmapss/", "") for g in groups], rotation=20)
        ax.set_title(title)
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detectors", default=",".join(DETECTORS), help="comma list of registered detectors")
    ap.add_argument("--datasets", default="cmapss,nab", help="as score.py: cmapss, nab or a group")
    ap.add_argument("--split", choices=("dev", "holdout", "all"), default="all")
    ap.add_argument("--no-baselines", action="store_true", help="skip the pack's z-score and HST baselines")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                    help="override a DetectionSettings field (development split only)")
    ap.add_argument("--costs", action="store_true", help="also measure import, memory and µs per sample")
    ap.add_argument("--json", type=Path, help="write everything here")
    ap.add_argument("--plot", type=Path, help="write the bar chart here")
    args = ap.parse_args(argv)
    pack = find_realdata()
    sys.path.insert(0, str(pack))
    # The pack's own modules, found on its path (not packages of this repository).
    score = importlib.import_module("score")
    baselines = importlib.import_module("baselines")

    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    if overrides and args.split != "dev":
        raise SystemExit("--set is for the development split only (--split dev): held-out data is not for tuning")
    groups = score.groups_for(args.datasets.split(","))
    results: dict[str, dict[str, Any]] = {}
    for name in args.detectors.split(","):
        results[name] = evaluate(score, name, groups, args.split, overrides)
    if not args.no_baselines:
        for name in ("zscore", "hst"):
            results[f"baseline:{name}"] = evaluate_baseline(score, baselines, name, groups, args.split)
    print(table(results))
    out: dict[str, Any] = {"split": args.split, "overrides": overrides, "results": results}
    if args.costs:
        out["costs"] = costs(args.detectors.split(","))
        print(json.dumps(out["costs"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float))
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
