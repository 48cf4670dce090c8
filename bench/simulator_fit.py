"""How well the detector's regime regression fits the simulator's healthy world, before and after issue #15.

Fits :mod:`simulators.fleet.regime_fit` (the detector's regime features at commit 7459ec8) per asset on
days 1-11 of ``healthy-winter`` and judges it on days 11-21: held-out residual RMS in sensor sigmas and
the lag-1 autocorrelation of hourly mean residuals, per channel (median over assets).

Usage (the old simulator from git, then the current one with the comparison plot)::

    mkdir -p /tmp/sim-before && git archive 7459ec8 simulators pdm_common | tar -x -C /tmp/sim-before
    .venv/bin/python bench/simulator_fit.py --tree /tmp/sim-before --json /tmp/fit-before.json
    .venv/bin/python bench/simulator_fit.py --json docs/simulator-fit.json --before /tmp/fit-before.json \\
        --plot docs/simulator-fit.png
    .venv/bin/python bench/simulator_fit.py --trips --seed 1 --seed 2 --seed 3   # trip time / time scale
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAIN_DAYS = (1.0, 11.0)
TEST_DAYS = (11.0, 21.0)
SEED = 20260105
EXAMPLE = ("heat_pump", "discharge_temp_c")
"""Channel whose held-out residual the plot shows over three days."""


def _fit_module() -> ModuleType:
    """This tree's regime_fit, loaded by path so it can measure another tree's simulator."""
    spec = importlib.util.spec_from_file_location("regime_fit", ROOT / "simulators" / "fleet" / "regime_fit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["regime_fit"] = module
    spec.loader.exec_module(module)
    return module


def measure(tree: Path, seed: int) -> dict[str, Any]:
    """Generate ``healthy-winter`` with the simulator of ``tree`` and fit every asset."""
    sys.path.insert(0, str(tree))
    rf = _fit_module()
    from simulators.fleet import generate, load_scenario

    scenario = load_scenario(tree / "simulators" / "scenarios" / "healthy-winter.toml")
    t0 = time.perf_counter()
    run = generate(scenario, seed)
    start_ms = scenario.start.timestamp() * 1000.0
    fits: dict[str, list[Any]] = {}
    example: list[list[float]] = []
    for series in run.series:
        kind = str(series.ref.kind.value)
        fits.setdefault(kind, []).extend(
            rf.fit_asset(kind, series, train_days=TRAIN_DAYS, test_days=TEST_DAYS, start_ms=start_ms)
        )
        if not example and kind == EXAMPLE[0]:
            ts, residual = rf.held_out_residuals(
                kind, series, train_days=TRAIN_DAYS, test_days=TEST_DAYS, start_ms=start_ms
            )[EXAMPLE[1]]
            days = (ts - start_ms) / 86_400_000.0
            keep = days < TEST_DAYS[0] + 3.0
            example = [days[keep].tolist(), residual[keep].tolist()]
    return {
        "tree": str(tree),
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "summary": {kind: rf.summarise(f) for kind, f in fits.items()},
        "example": {"asset": EXAMPLE[0], "metric": EXAMPLE[1], "days": example[0], "residual": example[1]},
    }


def table(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    """Markdown table: ratio and hourly AC1 per channel, before and after."""
    lines = [
        "| kind | channel | residual / sigma before | after | hourly AC1 before | after |",
        "|---|---|---|---|---|---|",
    ]
    for kind, channels in after["summary"].items():
        for metric, v in channels.items():
            b = (before or {}).get("summary", {}).get(kind, {}).get(metric)
            lines.append(
                f"| {kind} | {metric} | {b['ratio']:.2f} | {v['ratio']:.2f} | {b['ac1']:.2f} | {v['ac1']:.2f} |"
                if b else f"| {kind} | {metric} | – | {v['ratio']:.2f} | – | {v['ac1']:.2f} |"
            )
    return "\n".join(lines)


def plot(before: dict[str, Any], after: dict[str, Any], path: Path) -> None:
    """Residual/sigma and AC1 per channel, before and after, plus an example held-out residual."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig = plt.figure(figsize=(13, 8))
    grid = fig.add_gridspec(2, 2, height_ratios=[1.3, 1])
    rows = [(k, m) for k, ch in after["summary"].items() for m in ch]
    labels = [f"{m}\n({'HP' if k == 'heat_pump' else 'pump'})" for k, m in rows]
    xs = np.arange(len(rows))
    for col, key, title in ((0, "ratio", "held-out residual RMS / sensor sigma"), (1, "ac1", "hourly AC1 of residual")):
        ax = fig.add_subplot(grid[0, col])
        old = [before["summary"].get(k, {}).get(m, {}).get(key, np.nan) for k, m in rows]
        new = [after["summary"][k][m][key] for k, m in rows]
        ax.bar(xs - 0.2, old, 0.4, label="before (7459ec8)")
        ax.bar(xs + 0.2, new, 0.4, label="after (issue #15)")
        ax.set_xticks(xs, labels, rotation=70, fontsize=7)
        ax.set_title(title)
        if key == "ratio":
            ax.axhline(1.0, color="grey", lw=1, ls="--")
        ax.legend(fontsize=8)
    ax = fig.add_subplot(grid[1, :])
    for run, name in ((before, "before"), (after, "after")):
        ex = run["example"]
        ax.plot(ex["days"], ex["residual"], lw=0.6, label=f"{name}: {ex['metric']} of the first heat pump")
    ax.set_xlabel("day of the run (held-out days)")
    ax.set_ylabel("residual (°C)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def trips(seeds: list[int]) -> str:
    """Per fault code: when units of ``fault-timescales`` tripped, as a share of their drawn time scale."""
    from simulators.fleet import generate, load_scenario

    scenario = load_scenario(ROOT / "simulators" / "scenarios" / "fault-timescales.toml")
    ratios: dict[str, list[float]] = {}
    untripped: dict[str, int] = {}
    for seed in seeds:
        for a in generate(scenario, seed).truth.assets:
            for f in a.machine_faults:
                if f.failure is None:
                    untripped[f.code.value] = untripped.get(f.code.value, 0) + 1
                    ratios.setdefault(f.code.value, [])
                else:
                    ratios.setdefault(f.code.value, []).append(
                        (f.failure - f.onset).total_seconds() / 86400 / f.span_days
                    )
    lines = ["| fault | units | tripped | trip / time scale: min | median | max |", "|---|---|---|---|---|---|"]
    for code, rs in sorted(ratios.items()):
        n = len(rs) + untripped.get(code, 0)
        cells = [f"{min(rs):.2f}", f"{sorted(rs)[len(rs) // 2]:.2f}", f"{max(rs):.2f}"] if rs else ["–"] * 3
        lines.append(f"| {code} | {n} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure one tree; print the table; write JSON and, with ``--before``, the comparison plot."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, default=ROOT, help="repository tree whose simulator to measure")
    p.add_argument("--seed", type=int, action="append", help=f"seed (default {SEED}; --trips: several)")
    p.add_argument("--trips", action="store_true", help="report trip times against time scales instead")
    p.add_argument("--json", type=Path, help="write the measurement here")
    p.add_argument("--before", type=Path, help="an earlier --json measurement to compare with")
    p.add_argument("--plot", type=Path, help="write the comparison plot here (needs --before)")
    args = p.parse_args(argv)
    if args.trips:
        print(trips(args.seed or [SEED]))
        return 0
    after = measure(args.tree.resolve(), (args.seed or [SEED])[0])
    before = json.loads(args.before.read_text(encoding="utf-8")) if args.before else None
    print(table(before, after))
    if args.json:
        args.json.write_text(json.dumps(after, indent=1) + "\n", encoding="utf-8")
    if args.plot and before:
        plot(before, after, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
