"""Benchmark of the cloud bridge: tickets per second and delivery latency to the local desk simulator.

Run: ``.venv/bin/python bench/bridge.py [--tickets 2000] [--rate 200]``

Three measurements in one run, against one in-process desk simulator (generic signed webhook):

1. baseline: a bare httpx POST loop (Standard Webhooks signature, one keep-alive connection, no outbox);
2. burst: N alert events accepted into the bridge at once (SQLite WAL, synchronous=FULL) and
   delivered by the workers; tickets/s = N / time until the outbox is empty. The consumer's enqueues
   and the workers' leases and completions share fsync'ed commits (group commit); the run prints how
   many operations each commit carried;
3. paced: events offered at ``--rate`` per second; latency = accepted into the outbox → desk 2xx
   recorded, p50/p99.

Targets (issue 6): >= 200 tickets/s and p99 < 100 ms without injected faults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cloud_bridge.app import BridgeApp  # noqa: E402
from cloud_bridge.config import BridgeSettings  # noqa: E402
from pdm_common.logs import configure_logging  # noqa: E402
from pdm_common.settings import load_settings  # noqa: E402
from simulators.desk.auth import webhook_headers  # noqa: E402
from simulators.desk.server import DeskSimulator  # noqa: E402
from tests.bridge.samples import alert  # noqa: E402

SECRET = "pdm-sim-webhook-secret"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def baseline(url: str, n: int) -> tuple[float, list[float]]:
    """Bare signed POSTs in a loop: requests/s and per-request latencies (s)."""
    lat: list[float] = []
    with httpx.Client(base_url=url, timeout=5.0) as client:
        start = time.perf_counter()
        for i in range(n):
            body = json.dumps({"dedup_key": f"base-{i}", "action": "opened", "title": "t", "priority": "P3"}).encode()
            t0 = time.perf_counter()
            r = client.post("/webhook", content=body, headers={
                "Content-Type": "application/json", **webhook_headers(SECRET, f"base-{i}", int(time.time()), body)})
            r.raise_for_status()
            lat.append(time.perf_counter() - t0)
        return n / (time.perf_counter() - start), lat


def make_app(url: str, outbox: Path, workers: int) -> BridgeApp:
    settings = load_settings(
        BridgeSettings, None,
        mqtt={"host": "127.0.0.1", "port": 9, "reconnect_min_s": 30.0, "reconnect_max_s": 60.0},
        registry_path=REPO / "config" / "assets.example.toml",
        fault_actions_path=REPO / "config" / "fault-actions.toml",
        desks={"main": {"kind": "webhook", "base_url": url, "path": "/webhook", "hmac_secret": SECRET}},
        require_signed_alerts=False,  # events are handed to the consumer directly, not over MQTT
        sync={"enabled": False},
        outbox={"path": outbox},
        delivery={"workers": workers, "poll_s": 0.05},
    )
    return BridgeApp(settings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    configure_logging(level="error")
    events = [alert(1, alert_id=f"hp-{i:05d}:bench:low_flow", asset=f"hp-{i:05d}") for i in range(args.tickets)]
    paced = [alert(1, alert_id=f"hp-{i:05d}:paced:low_flow", asset=f"hp-{i:05d}") for i in range(args.tickets // 2)]
    with DeskSimulator(port=0, seed=0) as sim, tempfile.TemporaryDirectory() as tmp:
        base_rate, base_lat = baseline(sim.url, args.tickets)
        sim.reset()
        app = make_app(sim.url, Path(tmp) / "outbox.db", args.workers)
        app.start()
        try:
            start = time.perf_counter()
            for e in events:
                app.consumer.accept(e)
            accepted_s = time.perf_counter() - start
            assert app.drain(300.0), "bridge did not drain"
            burst_s = time.perf_counter() - start
            burst_rate = args.tickets / burst_s
            app.dispatcher.stats.latencies_s.clear()
            interval = 1.0 / args.rate
            t0 = time.perf_counter()
            for i, e in enumerate(paced):
                delay = t0 + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                app.consumer.accept(e)
            assert app.drain(300.0), "bridge did not drain"
            lat = list(app.dispatcher.stats.latencies_s)
            operations, commits = app.outbox.commits
        finally:
            app.stop()
        tickets = sim.tickets("webhook")
        dupes = len(tickets) - len({t["dedup_key"] for t in tickets})
    print(f"baseline  bare httpx POST loop: {base_rate:8.1f} req/s   p50 {statistics.median(base_lat) * 1000:6.2f} ms"
          f"   p99 {_pct(base_lat, 0.99) * 1000:6.2f} ms")
    print(f"bridge    burst of {args.tickets}: {burst_rate:8.1f} tickets/s (accept {args.tickets / accepted_s:.0f}/s)"
          f"   ratio to baseline {burst_rate / base_rate:.2f}")
    print(f"bridge    paced {args.rate:.0f}/s, {len(lat)} tickets: p50 {statistics.median(lat) * 1000:6.2f} ms"
          f"   p99 {_pct(lat, 0.99) * 1000:6.2f} ms")
    print(f"outbox: {operations} operations in {commits} fsync'ed commits "
          f"({operations / max(commits, 1):.1f} per commit)")
    print(f"tickets at the desk: {len(tickets)}, duplicates: {dupes}")
    ok = burst_rate >= 200 and _pct(lat, 0.99) < 0.100 and dupes == 0
    print("targets (>= 200 tickets/s, p99 < 100 ms, no duplicates):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
