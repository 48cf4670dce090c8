"""What the telemetry journal costs the agent's main loop: the same messages with and without it.

Run: ``.venv/bin/python bench/journal.py [--assets 10] [--hours 24] [--rounds 3]``

The agent (``EdgeAgent``, real outbox, checkpoints and journal on a temporary state directory, no
broker: messages go in through :meth:`EdgeAgent.receive` as from the MQTT adapter) handles the same
heat-pump telemetry twice per round, once with ``telemetry_journal = false`` (the baseline) and once
with it on, the order alternating between rounds so drift of a shared machine hits both alike. It
prints CPU and wall time per message and the ratio of the two. Loop passes take what is queued (up to
500 messages), as in a drain after a broker outage; with one message per pass every journal write is
its own fsync'ed transaction, the worst case (``--per-pass 1``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_agent.app import EdgeAgent  # noqa: E402
from edge_agent.config import AgentSettings, MetricsSettings  # noqa: E402
from pdm_common.logs import configure_logging  # noqa: E402
from pdm_common.mqtt import InboundMessage  # noqa: E402
from tests.agent_core.synthetic import HeatPumpStream, wire  # noqa: E402


def messages(assets: int, hours: float) -> list[tuple[str, bytes]]:
    """Heat-pump telemetry of ``assets`` units, one sample a minute each, in time order."""
    streams = [HeatPumpStream(seed=i, asset=f"hp-{i:04d}", site="bench").samples(hours) for i in range(assets)]
    out: list[tuple[str, bytes]] = []
    for tick in zip(*streams, strict=True):
        for tel, _ in tick:
            out.append(wire(tel))
    return out


def run(batch: list[tuple[str, bytes]], *, journal: bool, per_pass: int) -> tuple[float, float]:
    """CPU and wall seconds per message for one agent handling ``batch``."""
    with tempfile.TemporaryDirectory() as tmp:
        agent = EdgeAgent(AgentSettings(gateway="gw-bench", site="bench", state_dir=Path(tmp), clock="telemetry",
                                        telemetry_journal=journal, metrics=MetricsSettings(enabled=False)))
        now = datetime.now(UTC)
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(0, len(batch), per_pass):
            for topic, payload in batch[i:i + per_pass]:
                agent.receive(InboundMessage(topic=topic, payload=payload, qos=1, retain=False, received_at=now))
            agent.step(0.0)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        agent.shutdown()
    return cpu / len(batch), wall / len(batch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=10)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-pass", type=int, default=500)
    args = parser.parse_args()
    configure_logging(level="warning")
    batch = messages(args.assets, args.hours)
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for r in range(args.rounds):
        for journal in ((False, True) if r % 2 == 0 else (True, False)):
            results[journal].append(run(batch, journal=journal, per_pass=args.per_pass))
    med = {j: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v)) for j, v in results.items()}
    print(f"{len(batch)} messages, {args.assets} assets, {args.per_pass} per loop pass, {args.rounds} rounds (median)")
    for journal, label in ((False, "baseline: journal off"), (True, "journal on")):
        cpu, wall = med[journal]
        print(f"{label:22s} {cpu * 1e6:7.1f} µs CPU/msg  {wall * 1e6:7.1f} µs wall/msg")
    print(f"ratio on/off: CPU {med[True][0] / med[False][0]:.3f}, wall {med[True][1] / med[False][1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
