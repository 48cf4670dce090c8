"""The dispatcher's lease loop under the watchdog: stale while stuck or failing, live again once it recovers.

Time for the heartbeat moves only when the test says so (``FakeMonotonic``); what makes the loop stuck or
fail is real: another connection holding the SQLite outbox's write lock, or an unreadable row in it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from cloud_bridge.app import DISPATCH_STALL_S, BridgeApp
from pdm_common.systemd import Notifier, Watchdog
from simulators.desk.server import DeskSimulator
from tests.bridge.samples import alert
from tests.bridge.test_ops import WAIT_S, FakeMonotonic, _app, _wait
from tests.conftest import BrokerInfo


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def app(tmp_path: Path, desk_sim: DeskSimulator, mqtt_broker: BrokerInfo, clock: FakeMonotonic) -> Iterator[BridgeApp]:
    desk_sim.reset()
    bridge = _app(tmp_path, desk_sim, mqtt_broker, monotonic=clock)
    bridge.start()
    yield bridge
    bridge.stop()


def _dispatch_watchdog(app: BridgeApp, clock: FakeMonotonic) -> Watchdog:
    return Watchdog(Notifier({}), [p for p in app.liveness() if p.name == "dispatch"], clock=clock)


def _stale(watchdog: Watchdog, clock: FakeMonotonic) -> bool:
    """Move time past the bound; True when the loop did not stamp since (a live loop re-stamps at once)."""
    clock.now += DISPATCH_STALL_S + 1.0
    return not watchdog.beat()


def _ticket_for(desk_sim: DeskSimulator, alert_id: str) -> bool:
    return any(t["dedup_key"] == alert_id for t in desk_sim.tickets("webhook"))


def test_dispatch_probe_goes_stale_while_the_loop_is_stuck_and_recovers(
    app: BridgeApp, clock: FakeMonotonic, desk_sim: DeskSimulator
) -> None:
    watchdog = _dispatch_watchdog(app, clock)
    assert watchdog.beat(), "a freshly started loop is live"
    blocker = sqlite3.connect(app.settings.outbox.path, isolation_level=None)
    try:
        # Another writer (e.g. `cloud-bridge outbox retry`) holds the write lock: the loop's next lease
        # waits in SQLite's busy handler and stamps nothing, while nothing is in flight.
        blocker.execute("BEGIN IMMEDIATE")
        assert _wait(lambda: _stale(watchdog, clock))
        assert watchdog.problems[0].startswith("dispatch stalled for")
        assert app.dispatcher.inflight == 0, "the pool looks idle: only the dispatch probe can see this"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert _wait(watchdog.beat), "the lease returned and the loop stamped again"
    event = alert(1, alert_id="hp-0042:dispatch-stuck:refrigerant_leak")
    app.consumer.accept(event)
    assert _wait(lambda: _ticket_for(desk_sim, event.alert_id)), "the loop still delivers"


def test_unexpected_error_in_the_loop_is_logged_goes_stale_and_the_loop_survives(
    app: BridgeApp, clock: FakeMonotonic, desk_sim: DeskSimulator
) -> None:
    watchdog = _dispatch_watchdog(app, clock)
    db = sqlite3.connect(app.settings.outbox.path, isolation_level=None, timeout=WAIT_S)
    try:
        with capture_logs() as logs:
            # A row no release of the bridge could have written (text in an integer column): leasing it
            # fails outside OutboxError. (A corrupt payload is dead-lettered instead: test_outbox.py.)
            db.execute("INSERT INTO alerts (alert_id, desk, last_seq_seen) VALUES ('corrupt', 'main', 1)")
            db.execute("INSERT INTO events (alert_id, event_seq, event_type, desk, payload, enqueued_at,"
                       " next_attempt_at, attempts) VALUES ('corrupt', 1, 'opened', 'main', ?, 0, 0, 'many')",
                       (alert(1).to_json().decode(),))
            app.dispatcher.wake()
            assert _wait(lambda: any(e["event"] == "dispatch.loop_failed" for e in logs))
            assert _wait(lambda: _stale(watchdog, clock)), "a loop that keeps failing is not live"
            db.execute("DELETE FROM events WHERE alert_id = 'corrupt'")
            assert _wait(watchdog.beat), "the loop survived the error and stamps again once it works"
        failed = next(e for e in logs if e["event"] == "dispatch.loop_failed")
        assert failed["log_level"] == "error" and failed["action"] and failed["failures"] >= 1
        assert "exc_info" in failed, "the traceback is logged"
    finally:
        db.close()
    event = alert(1, alert_id="hp-0042:dispatch-failed:refrigerant_leak")
    app.consumer.accept(event)
    assert _wait(lambda: _ticket_for(desk_sim, event.alert_id)), "the same thread delivers after the error"
