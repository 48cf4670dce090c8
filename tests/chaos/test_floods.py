"""Floods over the real agent (#14.5): made-up asset ids and fresh metric names through the shipped
broker, against the bounds of ``[detection]`` (``max_assets``, ``evict_silent_d``, ``max_channels``).

The issue measured 78 MB -> 362 MB RSS from 1,500 samples x 200 fresh metric names on one asset, and
3,000 random asset ids filling ``max_assets`` so that a genuine new asset was ignored. What must hold:
the genuine assets that arrive after the flood are scored; the agent's memory stays bounded; nothing
crashes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.rig import FAST_DETECTION, Sensors, Service, agent_config, fleet_messages, metric
from tests.rig_fixtures import Rig
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

MAX_ASSETS = 50
RSS_GROWTH_MAX_MB = 60
"""Bound on the agent's RSS growth over both floods (the unbounded agent grew by ~280 MB on the first)."""


def _rss_mb(pid: int) -> float:
    """Resident set size of a process (Linux ``/proc``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _telemetry(asset: str, ts_ms: int, seq: int, metrics: dict[str, float]) -> tuple[str, bytes]:
    body = {"ts": ts_ms, "seq": seq, "kind": "heat_pump", "metrics": metrics}
    return f"pdm/v1/oslo-north/{asset}/telemetry", json.dumps(body).encode()


def test_asset_and_metric_floods_leave_room_for_genuine_assets_and_bound_memory(rig: Rig) -> None:
    cfg, port = agent_config(rig.workdir, rig.broker, rig.keys,
                             detection={**FAST_DETECTION, "max_assets": MAX_ASSETS})
    agent = Service.agent(cfg, rig.workdir).start()
    agent.wait_ready()
    assert agent.proc is not None
    pid = agent.proc.pid
    genuine = fleet_messages(rig.workdir, seed=20260105)
    start_ms = json.loads(genuine[0][1])["ts"]
    with Sensors(rig.broker.settings("sensors.oslo-north")) as sensors:
        sensors.send(genuine[:40])  # the fleet's four assets, before the flood
        assert wait_until(lambda: (metric(port, "pdm_agent_messages_valid_total", 'channel="telemetry"') or 0) >= 40,
                          30)
        before_mb = _rss_mb(pid)
        # 1. Made-up asset ids, ten times the bound, one sample each (they never warm up).
        sensors.send(_telemetry(f"fz-{i:05d}", start_ms + i, 1, {"outdoor_temp_c": 1.0})
                     for i in range(10 * MAX_ASSETS))
        # 2. 1,500 samples, each with 200 metric names never seen before, on one asset.
        sensors.send(_telemetry("fz-names", start_ms + 60_000 * k, k,
                                {f"m{k:04d}_{j:03d}_c": float(j) for j in range(200)}) for k in range(1500))
        # 3. Then the genuine fleet goes on, and a genuine asset never seen before arrives.
        sensors.send(genuine[40:400])
        newcomer = [(t.replace("/hp-0001/", "/hp-0777/"), p) for t, p in genuine[400:800] if "/hp-0001/" in t]
        sensors.send(newcomer)
        total = 40 + 10 * MAX_ASSETS + 1500 + 360 + len(newcomer)
        assert wait_until(lambda: (metric(port, "pdm_agent_messages_received_total", 'channel="telemetry"') or 0)
                          >= total, 120), agent.log()[-3000:]
        after_mb = _rss_mb(pid)

        def held() -> dict[str, float | None]:  # the per-asset gauges follow once a second
            return {a: metric(port, "pdm_agent_asset_last_seen_timestamp_seconds", f'asset="{a}",site="oslo-north"')
                    for a in ("hp-0001", "hp-0002", "pump-0001", "hp-0777")}

        wait_until(lambda: all(v is not None for v in held().values()), 15)
        seen = held()
    code = agent.stop()
    assert code == 0 and agent.tracebacks() == 0
    assert all(v is not None for v in seen.values()), f"genuine assets not held after the flood: {seen}"
    assert after_mb - before_mb < RSS_GROWTH_MAX_MB, f"RSS {before_mb:.0f} -> {after_mb:.0f} MiB"
