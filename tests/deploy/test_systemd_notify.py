"""Notifier and Watchdog against a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pdm_common.systemd import Heartbeat, Liveness, Notifier, Watchdog
from tests.deploy.notify_socket import NotifySocket


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock.path))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield sock
    sock.close()


def test_lifecycle_messages_reach_the_socket(notify: NotifySocket) -> None:
    with Notifier() as n:
        _lifecycle(n)
    got = notify.drain()
    assert got[0] == "READY=1\nSTATUS=connected"
    assert got[1].startswith("STATUS=x x") and len(got[1]) == len("STATUS=") + 200
    assert got[2:] == ["RELOADING=1", "STOPPING=1"]


def _lifecycle(n: Notifier) -> None:
    assert n.enabled
    assert n.watchdog_interval_s == 1.0
    n.ready("connected")
    n.status("x " * 200)
    n.reloading()
    n.stopping()


def test_noop_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    n = Notifier()
    assert not n.enabled
    assert n.watchdog_interval_s is None
    n.ready()
    n.watchdog_ping()
    assert Watchdog(n).beat()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_from_environment(env: dict[str, str], expected: float | None) -> None:
    assert Notifier(env).watchdog_interval_s == expected


def test_watchdog_pings_only_while_probes_are_fresh(notify: NotifySocket) -> None:
    clock = FakeClock()
    heartbeat = Heartbeat(clock)
    with Notifier() as notifier:
        _feed_and_wedge(notify, Watchdog(notifier, [Liveness("mqtt", heartbeat.age_s, max_age_s=5.0)], clock=clock),
                        heartbeat, clock)


def _feed_and_wedge(notify: NotifySocket, watchdog: Watchdog, heartbeat: Heartbeat, clock: FakeClock) -> None:

    assert watchdog.beat()
    assert notify.drain() == ["WATCHDOG=1"]
    clock.now += 0.1
    assert watchdog.beat()
    assert notify.drain() == [], "at most one ping per half interval"
    clock.now += 0.5
    heartbeat.touch()
    assert watchdog.beat()
    assert notify.drain() == ["WATCHDOG=1"]

    clock.now += 6.0  # the MQTT loop stopped touching its heartbeat
    assert not watchdog.beat()
    assert watchdog.problems == ("mqtt stalled for 6s (limit 5s)",)
    assert notify.drain() == ["STATUS=unhealthy: mqtt stalled for 6s (limit 5s)"]
    clock.now += 1.0
    assert not watchdog.beat()
    assert notify.drain() == [], "no ping and no repeated status while wedged"

    heartbeat.touch()
    assert watchdog.beat()
    assert notify.drain() == ["STATUS=running", "WATCHDOG=1"]


def test_main_loop_verdict_withholds_ping(notify: NotifySocket) -> None:
    with Notifier() as notifier:
        assert not Watchdog(notifier, clock=FakeClock()).beat(healthy=False)
    assert notify.drain() == ["STATUS=unhealthy: main loop reported unhealthy"]
