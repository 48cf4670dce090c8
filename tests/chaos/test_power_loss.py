"""Power loss and hard stops at every write point of the four durable stores (issue #14.4).

Each store runs a seeded workload once under strace (``tests/chaos/write_points.py``); from the
recorded writes and syncs ``tests/chaos/crash_images.py`` builds the files a crash would leave between
any two of them — a kill -9 (everything written survives), a power cut (only what was synced) and a
power cut with torn, reordered unsynced sectors — and each image is opened through the store's own
class, as the restarted service would. Checked for every image:

- the store opens without calling its file corrupt (nothing moved aside, nothing salvaged);
- it holds the state after some prefix of the operations that includes every *durable* one (an
  operation is durable once every file it wrote was synced after its last write);
- for the two outboxes, every *acknowledged* operation was durable before it was acknowledged: an
  event the broker got a PUBACK for, or the agent handed on, survives a power cut.

The checkpoint store and the telemetry journal are ``synchronous=NORMAL`` by design (docs/reliability.md):
a power cut may take their last acknowledged operations, never their consistency; the test reports how
many. ``PDM_POWER_OPS`` (operations per store, 60 in CI), ``PDM_POWER_CUTS`` (images checked per model
after the first start, which is checked whole: 60 in CI; 0 for all) and ``PDM_CHAOS_SEED`` size a run;
``make soak`` checks every cut of longer runs.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from collections.abc import Hashable
from pathlib import Path

import pytest

from tests.chaos import crash_images, write_points
from tests.chaos.crash_images import Crash, Trace
from tests.rig import REPO

OPS = int(os.environ.get("PDM_POWER_OPS", "60"))
CUTS = int(os.environ.get("PDM_POWER_CUTS", "60"))
SEED = int(os.environ.get("PDM_CHAOS_SEED", "20260105"))
MODELS: tuple[crash_images.Model, ...] = ("kill", "power", "torn")
OUTBOXES = ("bridge_outbox", "agent_outbox")
REAL_KILLS = 3
"""Write points per store where a real SIGKILL is compared with the image built for that point."""

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (apt-get install strace)")]


def _argv(store: str, root: Path) -> list[str]:
    return [sys.executable, "-m", "tests.chaos.write_points", store, str(root), str(SEED), str(OPS)]


def _trace(store: str, tmp: Path) -> Trace:
    root = tmp / "state"
    root.mkdir()
    return crash_images.trace(_argv(store, root), root, cwd=REPO)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trace]:
    """One traced run per store (and of the unsynced variant), shared by this module's tests."""
    return {store: _trace(store, tmp_path_factory.mktemp(store))
            for store in (*write_points.STORES, write_points.UNSYNCED)}


def _cuts(tr: Trace) -> list[int]:
    """Every cut of the first start (until the first acknowledgement), then ``CUTS`` of the rest (seeded).

    The first start is where a store passes through its half-built states (the bugs this suite found
    were there); the rest repeats the same few write patterns.
    """
    every = list(range(len(tr.ops) + 1))
    first = next((i for i, op in enumerate(tr.ops) if op.kind == "ack"), len(tr.ops))
    rest = every[first + 1:]
    if CUTS <= 0 or len(rest) <= CUTS:
        return every
    return every[:first + 1] + sorted(random.Random(SEED).sample(rest, CUTS))


def _check(store: str, tr: Trace, crash: Crash, into: Path, states: list[Hashable]) -> str | None:
    """Why this crash image is wrong, or None."""
    crash_images.materialize(crash, tr.root, into)
    try:
        seen = write_points.view(store, into)
    except Exception as exc:  # the finding is the message: any refusal to open is a failure here
        return f"does not open cleanly: {exc!r}"[:300]
    aside = sorted(p.name for p in into.iterdir() if ".corrupt" in p.name)
    if aside:
        return f"moved aside as corrupt: {aside}"
    high = min(crash.acked + 1, len(states) - 1)
    if seen not in states[crash.durable:high + 1]:
        matches = [k for k, s in enumerate(states) if s == seen]
        return (f"holds the state after {matches or 'no'} operations; expected {crash.durable}..{high}"
                f" ({crash.acked} acknowledged, {crash.durable} durable)")
    return None


@pytest.mark.parametrize("store", write_points.STORES)
def test_every_crash_image_opens_and_keeps_every_durable_operation(
        store: str, traced: dict[str, Trace], tmp_path: Path) -> None:
    tr = traced[store]
    assert tr.acks == OPS, tr.stdout[-500:]
    states = write_points.states(write_points.plan(store, SEED, OPS))
    failures: list[str] = []
    checked = 0
    for n, crash in enumerate(crash_images.images(tr, _cuts(tr), MODELS, SEED)):
        why = _check(store, tr, crash, tmp_path / str(n), states)
        checked += 1
        if why is not None:
            failures.append(f"cut {crash.cut}/{len(tr.ops)} ({crash.model}, after {crash.last_op}): {why}"[:400])
    assert not failures, f"{len(failures)} of {checked} images wrong:\n" + "\n".join(failures[:10])


def _unsynced(tr: Trace) -> dict[int, int]:
    """Per cut, the acknowledged operations a power cut there would take (0 where all were synced)."""
    every = range(len(tr.ops) + 1)
    return {c.cut: c.acked - c.durable for c in crash_images.images(tr, every, ("power",), SEED)}


@pytest.mark.parametrize("store", OUTBOXES)
def test_an_outbox_acknowledges_nothing_a_power_cut_can_take(store: str, traced: dict[str, Trace]) -> None:
    exposed = [(cut, gap) for cut, gap in _unsynced(traced[store]).items() if gap > 0]
    assert not exposed, f"acknowledged but not yet synced at {len(exposed)} cuts, e.g. {exposed[:5]}"


def test_the_suite_catches_a_store_that_acknowledges_before_it_syncs(traced: dict[str, Trace]) -> None:
    """The same bridge outbox with ``synchronous=NORMAL``: its acknowledgements outrun its fsyncs."""
    worst = max(_unsynced(traced[write_points.UNSYNCED]).values())
    assert worst > 0, "the power model found no acknowledged-but-unsynced operation in an unsynced store"


@pytest.mark.parametrize("store", ["checkpoint_store", "journal"])
def test_a_normal_sync_store_loses_at_most_what_it_has_not_synced(store: str, traced: dict[str, Trace]) -> None:
    """By design (synchronous=NORMAL) these may lose their newest operations to a power cut; say how many."""
    gaps = list(_unsynced(traced[store]).values())
    print(f"{store}: a power cut takes at most {max(gaps)} of {OPS} acknowledged operations "
          f"(WAL synced at checkpoints every {write_points.AUTOCHECKPOINT_PAGES} pages in this run)")
    assert max(gaps) < OPS  # the WAL checkpoints sync it: not everything is exposed


@pytest.mark.parametrize("store", write_points.STORES)
def test_a_real_sigkill_at_a_write_point_leaves_what_the_kill_image_says(
        store: str, traced: dict[str, Trace], tmp_path: Path) -> None:
    tr = traced[store]
    points = [i for i, op in enumerate(tr.ops) if op.kind in ("write", "sync", "truncate")]
    states = write_points.states(write_points.plan(store, SEED, OPS))
    for n, at in enumerate(sorted(random.Random(SEED).sample(points, REAL_KILLS))):
        root = tmp_path / f"real-{n}" / "state"
        root.mkdir(parents=True)
        code = crash_images.kill_at(_argv(store, root), tr.ops[at], cwd=REPO)
        assert code in (-9, 137), f"the run was not killed at op {at} ({tr.ops[at].call})"
        (image,) = crash_images.images(tr, [at], ("kill",), SEED)
        rebuilt = tmp_path / f"image-{n}"
        assert _check(store, tr, image, rebuilt, states) is None
        assert write_points.view(store, root) == write_points.view(store, rebuilt), f"op {at}: {tr.ops[at].call}"
