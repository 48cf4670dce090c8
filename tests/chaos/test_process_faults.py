"""Process faults (#14.1): kill -9 of the real agent and the real bridge at seeded points during a
fleet run with faults, over the shipped Mosquitto (TLS, ACL, persistence) to the desk simulator.

What must hold: every alert event the agent published reaches the desk, each alert as exactly one
ticket carrying its events in order (nothing lost, nothing twice); no ``event_seq`` is reused with
other content after a crash; the models and open alerts survive (no re-warm after a restart); the
services stop cleanly at the end; and against the same fleet without kills, the same alerts per asset
(issue #16.5: kill -9 restarts set off false dropout alerts).

Two killers run at once, one per service, each ``PDM_CHAOS_KILLS`` times (20 in CI; ``make soak``
runs 100+). Every start is planned from the seed (``PDM_CHAOS_SEED``, default 20260105): half die
at a seeded moment 0.1-1.0 s after the service got ready, half at a write point — on entering their
N-th sync (``fsync``/``fdatasync``) of their outbox (:class:`tests.rig.FaultFs`), i.e. between a
write and its sync; N is seeded. The fleet's telemetry
is published in one slice per agent kill, right after the agent is ready again, so every kill lands
while it works through fresh telemetry and alerts flow to the bridge.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pdm_common.contracts import AssetState
from tests.rig import (
    FAST_DETECTION,
    READY_EVENTS,
    FaultFs,
    Sensors,
    Service,
    TicketReport,
    Watcher,
    agent_config,
    agent_drained,
    bridge_config,
    check_tickets,
    conflicting_copies,
    contiguous,
    expected_histories,
    fleet_messages,
    fleet_reference,
    metric,
    start_all,
)
from tests.rig_fixtures import Rig
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("PDM_CHAOS_SEED", "20260105"))
KILLS = int(os.environ.get("PDM_CHAOS_KILLS", "20"))
WRITE_POINT_WAIT_S = 3.0
"""How long a start planned to die at its N-th sync may run before it is killed anyway (then counted
as a timed kill): the bridge syncs only while alerts arrive."""
WRITE_POINTS = {"agent": "outbox.sqlite3", "bridge": "bridge-outbox.db"}
"""Files whose syncs a write-point kill counts (substring of the path). The agent's checkpoint store
and telemetry journal run SQLite's WAL at ``synchronous=NORMAL``: they sync only at WAL checkpoints,
too rarely for a round here, so their write points are not struck; the timed kills land while they
are written, and the restarts' restored models and replayed journals are what the tests below see."""


@dataclass
class Kill:
    """One planned death of a service start."""

    who: str
    mode: str  # "timed" or "write"
    at: float  # seconds after ready (timed) or the N-th sync (write)
    match: str = ""
    hit: str | None = None  # the file whose sync it died at (write kills that got there)
    recovery_s: float = 0.0


@dataclass
class ChaosOutcome:
    """What one faulty run produced (also what docs/reliability.md reports)."""

    report: TicketReport
    published: dict[str, list[int]]
    gaps: dict[str, list[int]]
    conflicts: list[tuple[str, int]]
    kills: list[Kill]
    rewarmed: list[str] = field(default_factory=list)
    restored: list[int] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)
    tracebacks: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def of(self, who: str, mode: str | None = None) -> list[Kill]:
        """The kills of ``who`` (of one mode)."""
        return [k for k in self.kills if k.who == who and (mode is None or k.mode == mode)]


def _plan(rng: random.Random, who: str) -> Kill:
    if rng.random() < 0.5:
        return Kill(who, "timed", round(rng.uniform(0.1, 1.0), 3))
    # The bridge syncs only while alert events arrive, a few times per start: its N is drawn lower.
    return Kill(who, "write", rng.randint(1, 6 if who == "agent" else 3), match=WRITE_POINTS[who])


class Killer(threading.Thread):
    """Kills one service ``kills`` times, each start as planned from its own seeded generator.

    Every start is given its death in advance: a write kill starts the process with the trap armed
    (it may strike during start-up, which syncs too); a timed one is killed ``at`` seconds after it
    got ready. After each death the service is started again at once; the last start is not armed.
    ``ready`` is released each time a start of the service serves (the publisher paces on it).
    """

    def __init__(self, service: Service, trap: FaultFs, *, seed: int, kills: int,
                 ready: threading.Semaphore | None = None) -> None:
        super().__init__(name=f"killer-{service.name}", daemon=True)
        self.service, self.trap, self.kills = service, trap, kills
        self.rng = random.Random(f"{seed}-{service.name}")
        self.done: list[Kill] = []
        self.errors: list[BaseException] = []
        self._ready = ready
        self.report = service.workdir / f"{service.name}.fsync-hit"

    def run(self) -> None:
        try:
            for n in range(self.kills + 1):
                plan = _plan(self.rng, self.service.name) if n < self.kills else None
                if n == 0 and self.service.alive:  # taking over a running, unarmed start: a timed kill
                    plan = Kill(self.service.name, "timed", round(self.rng.uniform(0.1, 1.0), 3))
                else:
                    armed = plan is not None and plan.mode == "write"
                    self.service.start(env=self.trap.kill_at_sync(int(plan.at), self.report, plan.match)
                                       if plan is not None and armed else None)
                    if self._serves(armed=armed) and self.done and not self.done[-1].recovery_s:
                        self.done[-1].recovery_s = round(time.monotonic() - self._killed_at, 2)
                if plan is not None:
                    self._die(plan)
                    self._killed_at = time.monotonic()
                    self.done.append(plan)
        except BaseException as exc:  # reported by the main thread
            self.errors.append(exc)
        finally:
            if self._ready is not None:
                self._ready.release(self.kills + 1)  # nothing waits for a killer that gave up

    def _serves(self, *, armed: bool) -> bool:
        """Wait until this start serves (True) or, armed, died at its write point first (False)."""
        if armed:
            assert wait_until(lambda: _ready_logged(self.service) or not self.service.alive, 60), \
                self.service.current_log()[-3000:]
            if not _ready_logged(self.service):
                return False
        else:
            self.service.wait_ready()
        if self._ready is not None:
            self._ready.release()
        return True

    def _die(self, plan: Kill) -> None:
        if plan.mode == "timed":
            time.sleep(plan.at)
            self.service.kill9()
            return
        if self.service.wait_exit(WRITE_POINT_WAIT_S) is None:
            self.service.kill9()  # never reached its N-th sync in time: a timed kill after all
            plan.mode, plan.at = "timed", WRITE_POINT_WAIT_S
            return
        plan.hit = FaultFs.hit(self.report)
        assert plan.hit is not None, f"{self.service.name} ended, not at its write point:\n" \
                                     f"{self.service.current_log()[-3000:]}"
        assert self.service.exit_codes[-1] == -9, f"{self.service.name} exit {self.service.exit_codes[-1]}"

    _killed_at = 0.0


def _ready_logged(service: Service) -> bool:
    return any(event in service.current_log() for event in READY_EVENTS.values())


def run_with_kills(rig: Rig, trap: FaultFs, *, seed: int, kills: int) -> ChaosOutcome:
    """The fleet through agent and bridge while both are killed ``kills`` times (see the module doc).

    The first 30 % of the fleet (past warm-up) goes through undisturbed and is checkpointed; the rest
    is published in ``kills`` slices, one each time the agent serves again.
    """
    began = time.monotonic()
    messages = fleet_messages(rig.workdir, seed=seed)
    calm = int(len(messages) * 0.3)
    agent_cfg, agent_port = agent_config(rig.workdir, rig.broker, rig.keys, detection=FAST_DETECTION)
    bridge_cfg, _ = bridge_config(rig.workdir, rig.broker, rig.keys, rig.desk.url)
    agent, bridge = Service.agent(agent_cfg, rig.workdir), Service.bridge(bridge_cfg, rig.workdir)
    checkpoints = rig.workdir / "agent-state" / "checkpoints"
    watcher = Watcher(rig.broker.settings("svc.cloud-bridge"), "pdm/v1/+/+/alert", "pdm/v1/+/+/state")
    with watcher, Sensors(rig.broker.settings("sensors.oslo-north")) as sensors:
        start_all(agent, bridge)
        sensors.send(messages[:calm])
        assert wait_until(lambda: _valid(agent_port) >= calm, 60), agent.log()[-3000:]
        mtime = _newest(checkpoints)
        assert wait_until(lambda: _newest(checkpoints) > mtime, 30), "no checkpoint written after the calm phase"
        agent_ready = threading.Semaphore(1)  # the agent serves now: the first slice goes at once
        killers = [Killer(agent, trap, seed=seed, kills=kills, ready=agent_ready),
                   Killer(bridge, trap, seed=seed, kills=kills)]
        for killer in killers:
            killer.start()
        rest = messages[calm:]
        for j in range(kills):
            agent_ready.acquire(timeout=120)
            sensors.send(rest[j * len(rest) // kills:(j + 1) * len(rest) // kills])
        for killer in killers:
            killer.join(600)
            assert not killer.is_alive() and not killer.errors, killer.errors
        agent.wait_ready()
        bridge.wait_ready()
        assert wait_until(lambda: agent_drained(agent_port), 60), agent.log()[-3000:]
        published = expected_histories(watcher.alerts())
        wait_until(lambda: check_tickets(rig.desk.tickets("webhook"), published).ok, 60)
        report = check_tickets(rig.desk.tickets("webhook"), published)
        latest = _latest_states(watcher)
        exit_codes = {"agent": agent.stop(), "bridge": bridge.stop()}
    restored = [int(n) for n in re.findall(r"event=agent\.starting.*?assets_restored=(\d+)", agent.log())]
    return ChaosOutcome(
        report=report, published=published, gaps=contiguous(published), conflicts=conflicting_copies(watcher.alerts()),
        kills=[k for killer in killers for k in killer.done],
        rewarmed=sorted(a for a, s in latest.items() if s.warmup_progress < 1.0), restored=restored[1:],
        exit_codes=exit_codes, tracebacks={"agent": agent.tracebacks(), "bridge": bridge.tracebacks()},
        seconds=round(time.monotonic() - began, 1),
    )


def _newest(directory: Path) -> float:
    """The newest modification time of any file under ``directory`` (0 when there is none)."""
    return max((p.stat().st_mtime for p in directory.rglob("*") if p.is_file()), default=0.0)


def _valid(port: int) -> float:
    return metric(port, "pdm_agent_messages_valid_total", 'channel="telemetry"') or 0.0


def _latest_states(watcher: Watcher) -> dict[str, AssetState]:
    latest: dict[str, AssetState] = {}
    for m in watcher.on("/state"):
        state = AssetState.from_json(m.payload, max_bytes=1 << 20)
        latest[state.asset] = state
    return latest


@pytest.fixture(scope="module")
def chaos(module_rig: Rig, fault_fs: FaultFs) -> ChaosOutcome:
    """The faulty run the tests of this module look at."""
    return run_with_kills(module_rig, fault_fs, seed=SEED, kills=KILLS)


def per_asset(histories: dict[str, list[int]]) -> Counter[str]:
    """Alerts (tickets) per asset."""
    return Counter(alert_id.split(":")[1] for alert_id in histories)


def test_kill_9_of_agent_and_bridge_loses_nothing_and_duplicates_nothing(chaos: ChaosOutcome) -> None:
    r = chaos.report
    assert len(chaos.of("agent")) == KILLS and len(chaos.of("bridge")) == KILLS
    assert chaos.published, "the fleet raised no alert: the run proves nothing"
    assert r.missing == [], f"alerts without a ticket: {r.missing}"
    assert r.duplicates == {}, f"duplicate tickets: {r.duplicates}"
    assert r.wrong_history == {}, f"ticket histories differ from the published events: {r.wrong_history}"
    assert chaos.gaps == {}, f"event_seq gaps (an event lost before it was published): {chaos.gaps}"
    assert chaos.conflicts == [], f"event_seq reused with other content after a crash: {chaos.conflicts}"
    assert chaos.exit_codes == {"agent": 0, "bridge": 0}
    assert chaos.tracebacks == {"agent": 0, "bridge": 0}


def test_kills_struck_at_write_points_of_both_outboxes(chaos: ChaosOutcome) -> None:
    # The plan is seeded; this says the run exercised what it claims (not a test of luck: with the
    # default seed each kind is hit, the agent's outbox several times).
    hits = Counter(Path(k.hit).name.split("-wal")[0] for k in chaos.kills if k.hit)
    # The bridge's syncs depend on when the agent's alerts arrive, so how many of its planned write
    # kills get there varies with the machine's load (1 under load, more on a quiet machine): at least one must.
    assert hits["outbox.sqlite3"] >= 2 and hits["bridge-outbox.db"] >= 1, hits


def test_models_and_open_alerts_survive_every_restart(chaos: ChaosOutcome) -> None:
    assert chaos.rewarmed == [], f"models re-warmed after a restart: {chaos.rewarmed}"
    assert chaos.restored and set(chaos.restored) == {4}, f"assets restored per restart: {chaos.restored}"


def _sensor_faults(histories: dict[str, list[int]]) -> set[tuple[str, str]]:
    """(asset, channel) of every sensor-fault alert."""
    return {(i.split(":")[1], i.rsplit(":", 1)[1]) for i in histories if ":sensor_fault:" in i}


def test_kill_9_restarts_raise_no_sensor_fault_of_their_own(chaos: ChaosOutcome) -> None:
    # Issue #16.5: each kill -9 restart set off a burst of ~54 false dropout tickets (174 against 15).
    # The reference is the same engine fed the same fleet in process, nothing going wrong.
    reference = fleet_reference(SEED)
    made_by_restarts = _sensor_faults(chaos.published) - _sensor_faults(reference)
    assert made_by_restarts == set(), f"sensor faults only with restarts: {sorted(made_by_restarts)}"


def test_kill_9_restarts_add_no_alert_and_miss_none(chaos: ChaosOutcome) -> None:
    # Issue #16.4: the restarts add 0 tickets against the same fleet without them. Before the
    # telemetry journal a kill rolled each model back to its last timer checkpoint while the samples
    # since were acknowledged: restarts added 1-2 machine alerts and once lost one.
    reference = fleet_reference(SEED)
    faulty, calm = per_asset(chaos.published), per_asset(reference)
    only_faulty = sorted(set(chaos.published) - set(reference))
    only_calm = sorted(set(reference) - set(chaos.published))
    assert faulty == calm, (
        f"tickets per asset {dict(faulty)} against {dict(calm)} without faults; only with faults: {only_faulty}, "
        f"only without: {only_calm}")
