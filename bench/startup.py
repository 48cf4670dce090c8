"""Benchmark of the edge agent's cold start: to READY=1 and to subscribed, against its import floor.

Run: ``.venv/bin/python bench/startup.py [--assets 0,1000] [--runs 5]``

* import floor: wall time of a fresh interpreter that only imports what ``edge-agent run`` imports
  (``edge_agent.cli`` and ``edge_agent.app``), and its RSS; the part of a start no state can avoid;
* cold start: the real ``edge-agent run`` with a checkpoint store of N warm assets
  (bench/agentbench.py), timed from spawn to ``READY=1`` on a real sd_notify socket and to
  subscribed (its retained ``online`` status reaches a subscriber on the broker);
* ``python -X importtime``: the modules that cost most (cumulative, top-level packages);
* each registered detector's module: the import time and RSS it adds to the floor when a kind or an
  asset is configured to use it (the default needs numpy only; River's pull in scipy).

Target (issue 13): cold start with 1,000 assets <= import floor + 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import agentbench as ab
from agentbench import REPO

from simulators.broker import MosquittoBroker


def cold_start(port: int, template: ab.Template, assets: int) -> tuple[float, float]:
    """Seconds from spawn to READY=1 and to the retained online status, with ``assets`` checkpointed."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        if assets:
            ab.fill_store(state, template, assets)
        os.sync()  # the store's pages reach the disk now, not while the agent under test starts
        gateway = f"gw-start-{assets}-{time.monotonic_ns() % 10**6}"
        config = ab.agent_config(state, port, gateway=gateway, metrics_port=ab.free_port())
        online = threading.Event()
        sub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{gateway}-watch")
        sub.on_message = lambda _c, _u, msg: online.set() if b'"online"' in msg.payload else None
        sub.connect("127.0.0.1", port)
        sub.subscribe(f"pdm/v1/{ab.SITE}/gateway/{gateway}/status", qos=1)
        sub.loop_start()
        time.sleep(0.3)
        notify = ab.NotifySocket(state / "notify.sock")
        started = time.monotonic()
        proc = ab.spawn_agent(config, env={"NOTIFY_SOCKET": str(notify.path)})
        try:
            ready = notify.wait_for("READY=1") - started
            if not online.wait(60):
                raise TimeoutError("the agent never said online")
            subscribed = time.monotonic() - started
        finally:
            err = ab.stop(proc)
            notify.close()
            sub.loop_stop()
        if "Traceback" in err:
            raise RuntimeError(err[-3000:])
        return ready, subscribed


def import_offenders(top: int = 12) -> list[tuple[str, float]]:
    """Packages by import time (ms; the modules' own time summed per top-level package, no double counting)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import edge_agent.cli, edge_agent.app"],
                         capture_output=True, text=True, check=True, cwd=REPO)
    costs: dict[str, float] = {}
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| +(\S+)", line)
        if m:
            name = m.group(3).split(".")[0]
            costs[name] = costs.get(name, 0.0) + int(m.group(1)) / 1000
    return sorted(costs.items(), key=lambda kv: -kv[1])[:top]


_DETECTOR_IMPORT = """
import importlib, json, time
import edge_agent.cli, edge_agent.app
from edge_agent.detection.models import DETECTORS
def rss():
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')) / 1024
base, t = rss(), time.perf_counter()
importlib.import_module(DETECTORS[{name!r}].split(":")[0])
print(json.dumps([time.perf_counter() - t, rss() - base]))
"""


def detector_costs(runs: int) -> dict[str, tuple[float, float]]:
    """Per registered detector: seconds and MiB of RSS its module adds to the agent's imports (medians)."""
    from edge_agent.detection.models import DETECTORS

    out: dict[str, tuple[float, float]] = {}
    for name in DETECTORS:
        argv = [sys.executable, "-c", _DETECTOR_IMPORT.format(name=name)]
        rows = []
        for _ in range(runs):
            done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO)
            rows.append(json.loads(done.stdout.splitlines()[-1]))
        out[name] = (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
    return out


def main() -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default="0,1000", help="comma-separated checkpointed asset counts")
    parser.add_argument("--runs", type=int, default=5, help="starts per count (the median is reported)")
    args = parser.parse_args()
    template = ab.templates(load_days=0.5)["pump"]
    counts = [int(a) for a in args.assets.split(",")]
    floors: list[float] = []
    starts: dict[int, list[tuple[float, float]]] = {n: [] for n in counts}
    rss = 0.0
    broker = MosquittoBroker().start()
    try:
        # Interleaved, so that the load of the (shared) machine weighs on every measurement alike.
        for _ in range(args.runs):
            floor, rss = ab.import_floor(1)
            floors.append(floor)
            for n in counts:
                starts[n].append(cold_start(broker.port, template, n))
    finally:
        broker.stop()
    floor_s = statistics.median(floors)
    print(f"import floor: {floor_s:.2f} s from spawn to exit (interpreter start + imports), RSS {rss:.1f} MiB")
    for n in counts:
        ready = statistics.median(r for r, _s in starts[n])
        subscribed = statistics.median(s for _r, s in starts[n])
        print(f"cold start, {n:5d} assets checkpointed: READY=1 after {ready:.2f} s (floor + {ready - floor_s:.2f} s),"
              f" subscribed after {subscribed:.2f} s (floor + {subscribed - floor_s:.2f} s)")
    print("python -X importtime, ms by package (own time of its modules):")
    for name, ms in import_offenders():
        print(f"  {name:28s} {ms:7.1f}")
    print("detector modules, added to the import floor when configured (median of --runs):")
    for name, (seconds, mib) in detector_costs(args.runs).items():
        print(f"  {name:14s} +{seconds * 1000:6.0f} ms, +{mib:5.1f} MiB RSS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
