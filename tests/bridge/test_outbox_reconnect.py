"""The PostgreSQL outbox survives losing its connection: the server ends the bridge's backend, the next
operation reconnects and succeeds (local PostgreSQL; skipped with a reason when unreachable)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from cloud_bridge.errors import OutboxError
from cloud_bridge.outbox import RECONNECT_BACKOFF, EnqueueResult, Outbox, open_postgres
from tests.bridge.samples import alert
from tests.bridge.test_outbox import PG_DSN, _pg_schema_dsn

pytestmark = pytest.mark.postgres

WAIT_S = 10.0
"""Upper bound for the server to reap a terminated backend (not a timing assertion)."""


@pytest.fixture
def admin() -> Iterator[Any]:
    import psycopg

    try:
        conn = psycopg.connect(PG_DSN, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"local PostgreSQL at {PG_DSN} unreachable ({type(exc).__name__}); start it to run this test")
    yield conn
    conn.close()


@pytest.fixture
def outbox() -> Iterator[tuple[Outbox, str]]:
    name = f"pdm-bridge-test-{uuid.uuid4().hex[:10]}"  # finds this test's backend among everyone else's
    box = open_postgres(_pg_schema_dsn(), max_events=100, application_name=name)
    yield box, name
    box.close()


def _backends(admin: Any, name: str) -> list[int]:
    rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)).fetchall()
    return [int(r[0]) for r in rows]


def _terminate(admin: Any, name: str) -> None:
    """End the outbox's backend as an admin, a failover or a restarted server would, and wait until it is gone."""
    pids = _backends(admin, name)
    assert len(pids) == 1, f"one connection named {name}: {pids}"
    admin.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
    deadline = time.monotonic() + WAIT_S
    while pids[0] in _backends(admin, name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids[0] not in _backends(admin, name)


def test_operations_reconnect_after_the_backend_is_terminated(admin: Any, outbox: tuple[Outbox, str]) -> None:
    box, name = outbox
    assert box.enqueue(alert(1), desk="main", now=1.0) is EnqueueResult.ACCEPTED
    first_pid = _backends(admin, name)

    with capture_logs() as logs:
        _terminate(admin, name)
        assert box.enqueue(alert(2), desk="main", now=2.0) is EnqueueResult.ACCEPTED
    assert [e["event"] for e in logs] == ["outbox.connection_lost"]
    assert logs[0]["log_level"] == "warning" and logs[0]["action"]
    second_pid = _backends(admin, name)
    assert len(second_pid) == 1 and second_pid != first_pid, "a new connection, with the same application_name"

    _terminate(admin, name)
    leased = box.lease(owner="a", now=3.0, lease_s=30, limit=10)
    assert [(e.alert.event_seq, e.attempts) for e in leased] == [(1, 0)], "nothing lost, order kept"
    assert box.stats(4.0).depth == 2


def test_a_failure_that_is_not_a_connection_loss_is_an_outbox_error(admin: Any, outbox: tuple[Outbox, str]) -> None:
    box, name = outbox
    # A server-side error on a healthy connection: no reconnect, reported as the bridge's own error.
    box.enqueue(alert(1), desk="main", now=1.0)
    pid = _backends(admin, name)
    with pytest.raises(OutboxError, match="postgres outbox"):
        box.pending(limit=-1)  # LIMIT must not be negative: a DataError from the server
    assert _backends(admin, name) == pid, "the healthy connection was kept"
    assert [e[2] for e in box.pending()] == [1]


class FakeMonotonic:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def login_role(admin: Any) -> Iterator[tuple[str, str]]:
    """A role of its own (so the test can refuse its logins) owning a fresh schema; dropped afterwards."""
    role = f"pdm_bridge_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE ROLE {role} LOGIN")
    admin.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    yield role, f"postgresql://{role}@127.0.0.1:5432/test?options=-csearch_path%3D{role}"
    admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
    admin.execute(f"DROP SCHEMA {role} CASCADE")
    admin.execute(f"DROP ROLE {role}")


def test_failed_reconnects_fail_fast_until_the_backoff_passes(admin: Any, login_role: tuple[str, str]) -> None:
    role, dsn = login_role
    clock = FakeMonotonic()
    name = f"pdm-bridge-test-{uuid.uuid4().hex[:10]}"
    box = open_postgres(dsn, max_events=100, application_name=name, monotonic=clock)
    try:
        box.enqueue(alert(1), desk="main", now=1.0)
        admin.execute(f"ALTER ROLE {role} NOLOGIN")  # the server is back, but refuses us for now
        _terminate(admin, name)
        with capture_logs() as logs:
            with pytest.raises(OutboxError, match="reconnect failed"):
                box.enqueue(alert(2), desk="main", now=2.0)
            with pytest.raises(OutboxError, match="next reconnect in"):  # paced: no connect attempt at all
                box.stats(3.0)
            admin.execute(f"ALTER ROLE {role} LOGIN")
            clock.now += RECONNECT_BACKOFF.cap_s
            assert box.enqueue(alert(2), desk="main", now=4.0) is EnqueueResult.ACCEPTED
        assert [e["event"] for e in logs] == ["outbox.connection_lost", "outbox.reconnect_failed",
                                              "outbox.reconnected"]
        assert box.stats(5.0).depth == 2
    finally:
        box.close()
