"""Shared pieces of the agent benchmarks (bench/throughput.py, bench/startup.py).

Warm assets without hours of warm-up: one heat pump and one pump of a healthy simulated fleet are
fed through a real :class:`~edge_agent.engine.DetectionEngine` until warm, and their checkpoint
state is cloned under new asset names into a real checkpoint store, so the agent under test
restores N warm assets exactly as after a restart. The load that follows is the same simulated
fleet's later samples, renamed round-robin onto the N assets.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_agent import checkpoint  # noqa: E402
from edge_agent.checkpoint import CheckpointStore  # noqa: E402
from edge_agent.detection import DetectionSettings  # noqa: E402
from edge_agent.engine import MODEL_VERSION, DetectionEngine  # noqa: E402
from pdm_common import __version__  # noqa: E402
from pdm_common.catalog import is_operating  # noqa: E402
from pdm_common.contracts import AssetKind, Telemetry  # noqa: E402
from simulators.broker import free_port  # noqa: E402
from simulators.fleet.runner import generate  # noqa: E402
from simulators.fleet.scenario import load_scenario  # noqa: E402

__all__ = [
    "KINDS", "REPO", "SITE", "NotifySocket", "Template", "agent_config", "asset_name", "backlog", "cpu_s",
    "fill_store", "free_port", "import_floor", "pct", "rss_mib", "scrape", "spawn_agent", "stop", "templates",
]

SITE = "bench"
KINDS = ("pump", "heat_pump")
"""The built-in profiles. The pump is cut to 6 numeric channels (plus ``running``), the heat pump sends
its 10 (plus ``defrost``): the "6 and 12 metrics" of the issue, as close as the profiles come."""
PUMP_CHANNELS = ("vibration_mm_s", "bearing_temp_c", "motor_current_a", "discharge_pressure_bar", "flow_m3_h",
                 "speed_rpm", "running")
WARM_DAYS = 2.0
"""Past the default warm-up (720 operating samples and 24 h) with margin for idle hours."""

_SCENARIO = """
name = "bench"
description = "Two healthy assets for the agent benchmarks."
start = 2026-01-05T00:00:00Z
days = {days}
sample_period_s = 60
heat_pumps = 1
pumps = 1
random_cold_spells = false

[[sites]]
name = "bench"
climate = "nordic"
"""


@dataclass(frozen=True)
class Template:
    """One warm asset of a kind: its checkpoint blob and the records that follow its warm-up."""

    kind: str
    state: bytes
    records: list[dict[str, Any]]


def templates(load_days: float = 2.0) -> dict[str, Template]:
    """Warm one asset of each kind; keep ``load_days`` of later records to replay."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(_SCENARIO.format(days=WARM_DAYS + load_days), encoding="utf-8")
        run = generate(load_scenario(path), 1)
    engine = DetectionEngine(DetectionSettings(), gateway="gw-bench", agent_version=__version__)
    warm_end_ms = int(run.plan.scenario.start.timestamp() * 1000 + WARM_DAYS * 86_400_000)
    later: dict[str, list[dict[str, Any]]] = {}
    names: dict[str, str] = {}
    for rec in run.iter_records():
        if rec["kind"] == "pump":
            rec["metrics"] = {k: v for k, v in rec["metrics"].items() if k in PUMP_CHANNELS}
        if rec["ts"] < warm_end_ms:
            tel = Telemetry.from_wire(SITE, rec["asset"], json.dumps(
                {"ts": rec["ts"], "seq": rec["seq"], "kind": rec["kind"], "metrics": rec["metrics"]}).encode())
            engine.process(tel, tel.ts)
        elif rec["kind"] in later or is_operating(AssetKind(rec["kind"]), rec["metrics"]):
            later.setdefault(rec["kind"], []).append(rec)  # the replay starts while the machine runs
        names[rec["kind"]] = rec["asset"]
    refs = engine.shared_refs()
    return {kind: Template(kind, checkpoint.encode(engine.snapshot((SITE, names[kind])), refs), later.get(kind, []))
            for kind in KINDS}


def asset_name(kind: str, i: int) -> str:
    """The i-th benchmark asset of a kind."""
    return f"{'hp' if kind == 'heat_pump' else 'pump'}-{i:05d}"


def fill_store(state_dir: Path, template: Template, n: int) -> None:
    """A checkpoint store holding ``n`` warm clones of ``template`` (what a restart finds)."""
    (state_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    store = CheckpointStore(state_dir / "checkpoints" / "assets.sqlite3", model_version=MODEL_VERSION,
                            agent_version=__version__)
    engine = DetectionEngine(DetectionSettings(), gateway="gw-bench", agent_version=__version__)
    refs = engine.shared_refs()
    rows = []
    for i in range(n):
        state: Any = checkpoint.decode(template.state, refs)
        name = asset_name(template.kind, i)
        state.asset = name
        for _key, track in state.tracks():
            track.owner = f"{SITE}:{name}"
        rows.append(((SITE, name), checkpoint.encode(state, refs)))
        if len(rows) == 200:
            store.save(rows)
            rows = []
    store.save(rows)
    store.close()


def backlog(template: Template, assets: int, n: int) -> list[tuple[str, bytes, str, int]]:
    """``n`` telemetry messages round-robin over ``assets`` clones: (topic, payload, asset, ts_ms)."""
    out = []
    records = template.records
    for k in range(n):
        rec = records[(k // assets) % len(records)]
        lap = (k // assets) // len(records)
        ts = rec["ts"] + lap * len(records) * 60_000
        name = asset_name(template.kind, k % assets)
        payload = json.dumps({"ts": ts, "seq": rec["seq"] + lap * len(records), "kind": rec["kind"],
                              "metrics": rec["metrics"]}).encode()
        out.append((f"pdm/v1/{SITE}/{name}/telemetry", payload, name, ts))
    return out


def agent_config(state_dir: Path, broker_port: int, *, gateway: str, metrics_port: int, **extra: Any) -> Path:
    """A TOML config for ``edge-agent run`` against the benchmark broker."""
    lines = [f'gateway = "{gateway}"', f'site = "{SITE}"', f'state_dir = "{state_dir}"', 'clock = "telemetry"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    lines += ["[mqtt]", 'host = "127.0.0.1"', f"port = {broker_port}", 'protocol = "5"', f'client_id = "{gateway}"',
              "receive_maximum = 100", "reconnect_min_s = 0.2", "reconnect_max_s = 1.0",
              "[metrics]", "enabled = true", f"port = {metrics_port}", "[log]", 'level = "warning"']
    path = state_dir / "agent.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def spawn_agent(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The real ``edge-agent run``."""
    return subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "--config", str(config), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


def stop(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM and wait; the agent's stderr."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err.decode(errors="replace")


def scrape(port: int, name: str) -> float | None:
    """One sample of the agent's Prometheus endpoint (None while it does not answer)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident set size in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class NotifySocket:
    """A unix datagram socket that records sd_notify messages (as systemd does)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))

    def wait_for(self, text: str, timeout_s: float = 60.0) -> float:
        """Monotonic time when a datagram containing ``text`` arrived."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            self._sock.settimeout(left)
            try:
                if text in self._sock.recv(4096).decode():
                    return time.monotonic()
            except TimeoutError:
                break
        raise TimeoutError(f"no {text!r} within {timeout_s} s")

    def close(self) -> None:
        """Close and unlink."""
        self._sock.close()
        self.path.unlink(missing_ok=True)


_FLOOR = """
import time, sys
t = time.perf_counter()
import edge_agent.cli, edge_agent.app
elapsed = time.perf_counter() - t
rss = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS:')) / 1024
print(elapsed, rss)
"""


def import_floor(runs: int = 3) -> tuple[float, float]:
    """Wall seconds (interpreter start included) and RSS MiB of a process that only imports the agent."""
    walls, rss = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _FLOOR], capture_output=True, text=True, check=True, cwd=REPO)
        walls.append(time.perf_counter() - t0)
        rss.append(float(out.stdout.split()[1]))
    return sorted(walls)[len(walls) // 2], sorted(rss)[len(rss) // 2]
