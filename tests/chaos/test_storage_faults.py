"""Storage faults (#14.4, #16.3): the state directory full, then read-only, under the real agent and
the real bridge, while the fleet's faults develop.

Both services keep their state on a 24 MiB tmpfs (mounting needs root; skipped otherwise), and run
with tests/fault_fs.c preloaded. One fleet run (seed 20260105), in phases:

1. calm: the first 40 % (past warm-up);
2. **disk full** (the tmpfs filled, and every write below the state directory failing with ENOSPC:
   SQLite reuses its WAL's pages, so a full disk alone fails only writes that grow a file) while the
   next 30 % is sent — the faults' first alerts happen now — then the space returns;
3. **read-only while running** (every write below the state directory fails with EROFS, as after the
   kernel remounted a failing card read-only) while the rest is sent; both services are stopped;
4. **read-only at start** (the tmpfs really remounted read-only) — both are started, as systemd
   would restart them; then writable again, both started, the backlog drains.

What must hold: no crash and no traceback; each condition reported while it holds (agent: metric
``pdm_agent_degraded{condition="outbox_disk"}`` and the retained gateway status) and cleared after; a
start on a read-only state directory ends with exit 2 and a message naming the field (no traceback)
or runs degraded; every alert event the agent accepted (its ``alert.event`` log) published, each
alert exactly one ticket with its events in order, and the same alerts per asset as the engine raises
on this fleet with nothing going wrong (the reference run).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.rig import (
    FAST_DETECTION,
    FaultFs,
    Sensors,
    Service,
    TicketReport,
    Watcher,
    agent_config,
    bridge_config,
    check_tickets,
    contiguous,
    expected_histories,
    fleet_messages,
    fleet_reference,
    metric,
    missing_events,
    per_asset,
    raised_events,
    start_all,
)
from tests.rig_fixtures import Rig
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

SEED = 20260105


@pytest.fixture(scope="module")
def small_disk(module_rig: Rig) -> Iterator[Path]:
    """A 24 MiB tmpfs for the services' state, so the test can fill it, free it and make it read-only."""
    mount = module_rig.workdir / "state"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (root needed): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path) -> Path:
    filler = mount / "filler"
    try:
        f = filler.open("wb")
    except OSError as exc:
        # Seen once in a full local run (ENOSPC on a state of about 2 MiB, not reproduced since): say
        # what held the disk, so the next occurrence explains itself.
        usage = "\n".join(subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
                          for cmd in (["df", "-k", str(mount)], ["df", "-i", str(mount)], ["du", "-ak", str(mount)]))
        raise AssertionError(f"the test disk refused a new file before it was filled: {exc}\n{usage}") from exc
    with f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass  # ENOSPC: the disk is full
    return filler


def _remount(mount: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True, capture_output=True, timeout=30)


@dataclass
class Field:
    agent: Service
    bridge: Service
    agent_port: int

    def degraded(self) -> float | None:
        return metric(self.agent_port, "pdm_agent_degraded", 'condition="outbox_disk"')

    def drained(self) -> bool:
        before = metric(self.agent_port, "pdm_agent_messages_received_total", 'channel="telemetry"')
        wait_until(lambda: False, 0.5)
        after = metric(self.agent_port, "pdm_agent_messages_received_total", 'channel="telemetry"')
        return before == after and metric(self.agent_port, "pdm_agent_outbox_depth") == 0.0 and \
            metric(self.agent_port, "pdm_agent_outbox_pending_in_memory") == 0.0


@dataclass
class Outcome:
    """What the run showed, phase by phase (docs/reliability.md reports it)."""

    report: TicketReport
    published: dict[str, list[int]]
    unpublished: dict[str, list[int]]
    reported: dict[str, bool] = field(default_factory=dict)
    cleared: bool = False
    restart_on_read_only: dict[str, tuple[int | None, bool]] = field(default_factory=dict)
    exit_codes: list[int] = field(default_factory=list)
    tracebacks: dict[str, int] = field(default_factory=dict)
    logs: str = ""


def _status_health(watcher: Watcher) -> list[dict[str, str]]:
    """The health of every retained gateway status seen that carries the outbox's."""
    out = []
    for m in watcher.on("/status"):
        checks = json.loads(m.payload).get("health") or {}
        if "outbox_writes" in checks:
            out.append(checks)
    return out


def _reported(f: Field, watcher: Watcher, since: int) -> bool:
    """The agent said so in its metric and in a gateway status published after the first ``since``."""
    return wait_until(lambda: f.degraded() == 1.0, 30) and wait_until(
        lambda: any(h["outbox_writes"].startswith("degraded") for h in _status_health(watcher)[since:]), 30)


@pytest.fixture(scope="module")
def outcome(module_rig: Rig, small_disk: Path, fault_fs: FaultFs) -> Outcome:
    rig = module_rig
    messages = fleet_messages(rig.workdir, seed=SEED)
    calm, full_end = int(len(messages) * 0.4), int(len(messages) * 0.7)
    flag = rig.workdir / "fault.flag"
    env = fault_fs.faults_below(small_disk, flag)
    agent_cfg, agent_port = agent_config(rig.workdir, rig.broker, rig.keys, detection=FAST_DETECTION,
                                         state_dir=str(small_disk / "agent"), status_interval_s=1.0)
    bridge_cfg, _ = bridge_config(rig.workdir, rig.broker, rig.keys, rig.desk.url,
                                  outbox={"path": str(small_disk / "bridge-outbox.db"), "lease_s": 10.0})
    f = Field(Service.agent(agent_cfg, rig.workdir), Service.bridge(bridge_cfg, rig.workdir), agent_port)
    watcher = Watcher(rig.broker.settings("svc.cloud-bridge"), "pdm/v1/+/+/alert", "pdm/v1/+/gateway/+/status")
    with watcher, Sensors(rig.broker.settings("sensors.oslo-north")) as sensors:
        f.agent.start(env=env)
        f.bridge.start(env=env)
        f.agent.wait_ready()
        f.bridge.wait_ready()
        sensors.send(messages[:calm])
        assert wait_until(f.drained, 60)
        assert f.degraded() == 0.0
        out = Outcome(TicketReport(0, 0, [], {}, {}, []), {}, {})

        # 2. The disk fills up while the faults' first alerts happen; then space returns. SQLite reuses
        # the pages its WAL already has, so a full tmpfs alone fails only writes that grow a file; the
        # worst case — every write fails — is the preload's ENOSPC below the state directory.
        filler = _fill(small_disk)
        FaultFs.fail(flag, "ENOSPC")
        seen = len(_status_health(watcher))
        sensors.send(messages[calm:full_end])
        out.reported["disk full"] = _reported(f, watcher, seen)
        assert wait_until(f.drained, 60), f.agent.current_log()[-3000:]
        assert f.agent.alive and f.bridge.alive
        FaultFs.heal(flag)
        filler.unlink()
        out.cleared = wait_until(lambda: f.degraded() == 0.0, 30)

        # 3. The state directory turns read-only under both running services.
        FaultFs.fail(flag, "EROFS")
        seen = len(_status_health(watcher))
        sensors.send(messages[full_end:])
        out.reported["read-only"] = _reported(f, watcher, seen)
        assert wait_until(f.drained, 60), f.agent.current_log()[-3000:]
        assert f.agent.alive and f.bridge.alive
        # Every event the agent accepted goes out, although the disk takes none of them.
        wait_until(lambda: missing_events(raised_events(f.agent.log()), expected_histories(watcher.alerts())) == {},
                   30)
        out.unpublished = missing_events(raised_events(f.agent.log()), expected_histories(watcher.alerts()))
        out.exit_codes += [f.agent.stop(), f.bridge.stop()]

        # 4. Restarted on a read-only file system, then on a writable one.
        FaultFs.heal(flag)
        _remount(small_disk, "ro")
        try:
            for service in (f.agent, f.bridge):
                service.start()
                code = service.wait_exit(30)
                named = str(small_disk) in service.current_log()
                out.restart_on_read_only[service.name] = (code, named)
                if code is None:
                    out.exit_codes.append(service.stop())
        finally:
            _remount(small_disk, "rw")
        start_all(f.agent, f.bridge)
        assert wait_until(f.drained, 60)
        published = expected_histories(watcher.alerts())
        wait_until(lambda: check_tickets(rig.desk.tickets("webhook"), published).ok, 60)
        out.report = check_tickets(rig.desk.tickets("webhook"), published)
        out.cleared = out.cleared and f.degraded() == 0.0
        out.exit_codes += [f.agent.stop(), f.bridge.stop()]
    out.published = expected_histories(watcher.alerts())
    out.unpublished = missing_events(raised_events(f.agent.log()), out.published) or out.unpublished
    out.tracebacks = {"agent": f.agent.tracebacks(), "bridge": f.bridge.tracebacks()}
    out.logs = f.agent.log() + f.bridge.log()
    return out


def test_no_accepted_alert_event_is_lost_and_each_alert_is_one_ticket(outcome: Outcome) -> None:
    assert outcome.published, "the fleet raised no alert: the run proves nothing"
    assert outcome.unpublished == {}, "alert events the agent accepted were never published"
    assert contiguous(outcome.published) == {}, "an event_seq is missing: an accepted alert event was lost"
    assert outcome.report.ok, outcome.report
    assert per_asset(outcome.published) == per_asset(fleet_reference(SEED)), "alerts differ from the run without faults"
    assert outcome.exit_codes == [0] * len(outcome.exit_codes)


def test_each_condition_is_reported_while_it_holds_and_cleared_after(outcome: Outcome) -> None:
    assert outcome.reported == {"disk full": True, "read-only": True}
    assert outcome.cleared


def test_a_start_on_a_read_only_state_directory_is_refused_clearly(outcome: Outcome) -> None:
    # Exit 2 with the directory named (what systemd's journal then shows), or a degraded run.
    for name, (code, named) in outcome.restart_on_read_only.items():
        assert code in (None, 2), f"{name} exited {code} on a read-only state directory"
        assert code is None or named, f"{name} did not name the read-only directory"


def test_no_traceback_while_the_disk_is_full_or_read_only(outcome: Outcome) -> None:
    assert outcome.tracebacks == {"agent": 0, "bridge": 0}, outcome.logs[-3000:]
