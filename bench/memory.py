"""In-process benchmark of the edge agent's memory per asset, and where it goes.

Run: ``.venv/bin/python bench/memory.py [--assets 100,1000,2000] [--samples 10]``

Seconds instead of bench/throughput.py's minutes, and without the runtime around the engine (MQTT,
queues, stores): for each kind (bench/agentbench.py's warm pump and warm heat pump) and asset count,
a fresh interpreter restores that many clones of the warm asset from their checkpoint blobs exactly
as the agent does (:func:`edge_agent.checkpoint.decode`, ``DetectionEngine.restore``), feeds each
``--samples`` later samples, and reports the RSS added per asset. Then the bytes one warm asset holds
that no other asset shares, per part of its state (a deep ``sys.getsizeof`` walk; numpy arrays with
their data; objects reachable from another asset or from the engine's shared references excluded).
The per-asset target of issue 13 is <= 60 KiB per added asset.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agentbench as ab
from agentbench import REPO


def _restore(engine: Any, template: ab.Template, names: list[str], samples: int) -> None:
    """Restore ``names`` as clones of ``template`` and feed each of them ``samples`` later samples."""
    from edge_agent import checkpoint
    from pdm_common.contracts import Telemetry

    refs = engine.shared_refs()
    for name in names:
        state: Any = checkpoint.decode(template.state, refs)
        state.asset = name
        for _key, track in state.tracks():
            track.owner = f"{ab.SITE}:{name}"
        engine.restore((ab.SITE, name), state)
    for rec in template.records[:samples]:
        for name in names:
            body = {"ts": rec["ts"], "seq": rec["seq"], "kind": rec["kind"], "metrics": rec["metrics"]}
            tel = Telemetry.from_wire(ab.SITE, name, json.dumps(body).encode())
            engine.process(tel, tel.ts)


def _deep(obj: object, seen: set[int]) -> int:
    """Bytes of ``obj`` and what it references, skipping objects in ``seen`` (then adds them)."""
    import numpy as np

    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, type):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, np.ndarray):
            if o.base is not None:
                stack.append(o.base)
        elif isinstance(o, dict):
            stack += list(o.keys()) + list(o.values())
        elif isinstance(o, list | tuple | set | frozenset | deque):
            stack += list(o)
        elif isinstance(o, memoryview):
            stack.append(o.obj)  # an array unpickled as a view: its data is the pickle's bytearray
        elif not isinstance(o, str | bytes | bytearray | int | float):
            stack += [getattr(o, s) for c in type(o).__mro__ for s in c.__dict__.get("__slots__", ())
                      if hasattr(o, s)]
            if hasattr(o, "__dict__"):
                stack.append(o.__dict__)
    return total


def breakdown(engine: Any, key: tuple[str, str], other: tuple[str, str]) -> dict[str, int]:
    """Bytes of asset ``key``'s state by part, counting nothing ``other`` or the engine shares."""
    seen: set[int] = set()
    for shared in (*engine.shared_refs().values(), engine.profiles, engine.snapshot(other)):
        _deep(shared, seen)
    a: Any = engine.snapshot(key)
    d = a.detector
    parts = {"plan": d.plan, "model": d.model, "sensor watch": d.watch, "plot series": d.series,
             "hourly trend": d.trend, "last evidence": d._last_ev, "detector, rest": d, "alert tracks": a.tracks(),
             "asset, rest": a}
    return {name: _deep(part, seen) for name, part in parts.items()}


def child(template_path: Path, kind: str, counts: list[int], samples: int) -> dict[str, Any]:
    """One kind in this (fresh) interpreter: RSS as the engine grows to each of ``counts`` assets."""
    from edge_agent.detection import DetectionSettings
    from edge_agent.engine import DetectionEngine
    from pdm_common import __version__

    template: ab.Template = pickle.loads(template_path.read_bytes())[kind]
    engine = DetectionEngine(DetectionSettings(), gateway="gw-bench", agent_version=__version__)
    _restore(engine, template, ["first", "second"], samples)  # imports, caches, the first arena pages
    gc.collect()
    rss = [ab.rss_mib(os.getpid())]
    held = 0
    for count in counts:
        _restore(engine, template, [ab.asset_name(kind, i) for i in range(held, count)], samples)
        held = count
        gc.collect()
        rss.append(ab.rss_mib(os.getpid()))
    return {"rss_mib": rss, "parts": breakdown(engine, (ab.SITE, "second"), (ab.SITE, "first"))}


def main() -> int:
    """Measure each kind at each asset count in a fresh interpreter and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default="100,1000,2000", help="comma-separated asset counts")
    parser.add_argument("--samples", type=int, default=10, help="samples fed to each asset after its restore")
    parser.add_argument("--kinds", default=",".join(ab.KINDS))
    parser.add_argument("--child", nargs=4, metavar=("TEMPLATES", "KIND", "COUNTS", "SAMPLES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, kind, counts, samples = args.child
        print(json.dumps(child(Path(path), kind, [int(c) for c in counts.split(",")], int(samples))))
        return 0
    counts = sorted(int(a) for a in args.assets.split(","))
    templates = ab.templates(load_days=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "templates.pickle"
        path.write_bytes(pickle.dumps(templates))
        for kind in args.kinds.split(","):
            out = subprocess.run([sys.executable, __file__, "--child", str(path), kind, ",".join(map(str, counts)),
                                  str(args.samples)], capture_output=True, text=True, check=True, cwd=REPO)
            r = json.loads(out.stdout.splitlines()[-1])
            rss, parts = r["rss_mib"], r["parts"]
            print(f"{kind}: checkpoint blob {len(templates[kind].state) / 1024:.1f} KiB")
            held = 0
            for k, count in enumerate(counts):
                per = (rss[k + 1] - rss[k]) * 1024 / (count - held)
                print(f"  assets {held:5d} -> {count:5d}: RSS +{rss[k + 1] - rss[k]:6.1f} MiB, {per:5.1f} KiB per "
                      "added asset (target <= 60 KiB)")
                held = count
            print(f"  one asset's own state, {sum(parts.values()) / 1024:.1f} KiB: "
                  + ", ".join(f"{k} {v / 1024:.1f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
