"""Ops hooks of ``cloud-bridge run``: sd_notify, watchdog, metrics endpoint, SIGHUP reload, clean stop.

The subprocess tests run the real command against the session broker, the desk simulator and a
unix datagram socket standing in for systemd's NOTIFY_SOCKET.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_bridge.app import BridgeApp
from cloud_bridge.config import BridgeSettings
from cloud_bridge.errors import RegistryError
from pdm_common.settings import load_settings
from pdm_common.systemd import Notifier, Watchdog
from simulators.desk.server import DeskSimulator
from tests.bridge.conftest import bridge_settings
from tests.bridge.samples import REPO, alert, desk_settings, gateways, signed
from tests.bridge.test_end_to_end import _toml
from tests.conftest import BrokerInfo
from tests.deploy.notify_socket import NotifySocket
from tests.mqtt_helpers import Publisher
from tests.waiting import wait_until

REGISTRY = REPO / "config" / "assets.example.toml"
NEW_CUSTOMER = "Fjordvarme Testkunde AS"
WATCHDOG_USEC = 1_000_000
"""WatchdogSec=1s: the loop wakes every 0.25 s, so pings show up at once."""
WAIT_S = 20.0
"""Upper bound for a ticket to reach the simulator on a loaded 2-core machine (not a timing assertion)."""


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "n.sock")
    yield sock
    sock.close()


def _config(tmp_path: Path, desk_sim: DeskSimulator, broker: BrokerInfo, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "replica_id": f"ops{uuid.uuid4().hex[:10]}",  # a session of its own on the shared broker
        "share_group": "",
        "registry_path": str(REGISTRY),
        "fault_actions_path": str(REPO / "config" / "fault-actions.toml"),
        "mqtt": {"host": broker.host, "port": broker.port, "protocol": broker.protocol,
                 "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "desks": {"main": desk_settings("webhook", desk_sim.url)},
        "gateways": gateways(),
        "sync": {"enabled": False},
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "retry": {"base_s": 0.05, "cap_s": 0.5},
        "delivery": {"workers": 2, "poll_s": 0.05, "shutdown_grace_s": 5.0},
        "metrics": {"port": 0},  # a free port, read back from the metrics.serving line: never a fixed one
    }
    cfg.update(over)
    return cfg


class Bridge:
    """``cloud-bridge run`` as a child process, its log in a file."""

    def __init__(self, tmp_path: Path, cfg: dict[str, Any], notify: NotifySocket) -> None:
        self.cfg = cfg
        self.config = tmp_path / "bridge.toml"
        self.write(cfg)
        self.log = tmp_path / "bridge.log"
        env = {**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": str(notify.path),
               "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cloud_bridge.cli", "--config", str(self.config),
                                          "run"], env=env, stdout=out, stderr=out)

    @property
    def metrics_url(self) -> str:
        """Where ``[metrics] port = 0`` ended up: the URL the bridge logs once it serves."""
        assert _wait(lambda: bool(self.events("metrics.serving"))), "the bridge never served metrics"
        url = re.search(r" url=(\S+)", self.events("metrics.serving")[-1])
        assert url is not None
        return url.group(1)

    def write(self, cfg: dict[str, Any]) -> None:
        self.config.write_text(_toml(cfg), encoding="utf-8")

    def events(self, name: str) -> list[str]:
        return [line for line in self.log.read_text(encoding="utf-8").splitlines() if f" event={name} " in f"{line} "]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _wait(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    return wait_until(predicate, timeout_s)


def _deliver(pub: Publisher, desk_sim: DeskSimulator, alert_id: str) -> dict[str, Any]:
    """Publish an alert until its ticket exists (the bridge subscribes just after READY; repeats are stale)."""
    event = alert(1, alert_id=alert_id)
    topic = f"pdm/v1/{event.site}/{event.asset}/alert"

    def ticket() -> dict[str, Any] | None:
        return next((t for t in desk_sim.tickets("webhook") if t["dedup_key"] == event.alert_id), None)

    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        pub.send(topic, signed(event).to_json())
        if _wait(lambda: ticket() is not None, 1.0):
            found = ticket()
            assert found is not None
            return found
    raise AssertionError(f"no ticket for {alert_id}; requests: {desk_sim.requests(5)}")


def _sample(body: str, name: str) -> float | None:
    return next((float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(name + " ")), None)


def test_run_reports_ready_feeds_watchdog_serves_metrics_and_stops_cleanly(
    tmp_path: Path, desk_sim: DeskSimulator, mqtt_broker: BrokerInfo, notify: NotifySocket
) -> None:
    desk_sim.reset()
    bridge = Bridge(tmp_path, _config(tmp_path, desk_sim, mqtt_broker), notify)
    try:
        seen = notify.wait_for("READY=1") + notify.wait_for("WATCHDOG=1")
        assert any("STATUS=" in m and "queued=0" in m for m in seen), "the STATUS line precedes the first ping"
        with Publisher(mqtt_broker.settings(session_expiry_s=0)) as pub:
            _deliver(pub, desk_sim, "hp-0042:ops-metrics:refrigerant_leak")
        body = httpx.get(bridge.metrics_url, timeout=5.0).text
        assert _sample(body, 'pdm_bridge_delivery_attempts_total{desk="main",outcome="delivered"}') == 1.0
        assert _sample(body, 'pdm_bridge_delivery_latency_seconds_count{desk="main"}') == 1.0
        assert _sample(body, 'pdm_bridge_alert_outcomes_total{outcome="accepted"}') == 1.0
        assert _sample(body, "pdm_bridge_alerts_received_total") == 1.0
        assert _sample(body, 'pdm_bridge_circuit_open{desk="main"}') == 0.0
        assert bridge.stop() == 0
        assert "STOPPING=1" in notify.wait_for("STOPPING=1")[-1]
        assert bridge.events("bridge.stopped")
    finally:
        bridge.kill()


def test_sighup_applies_registry_reports_restart_needed_and_survives_a_broken_file(
    tmp_path: Path, desk_sim: DeskSimulator, mqtt_broker: BrokerInfo, notify: NotifySocket
) -> None:
    desk_sim.reset()
    renamed = tmp_path / "assets.toml"
    renamed.write_text(REGISTRY.read_text(encoding="utf-8").replace('"Ingrid Hansen"', f'"{NEW_CUSTOMER}"'),
                       encoding="utf-8")
    cfg = _config(tmp_path, desk_sim, mqtt_broker)
    bridge = Bridge(tmp_path, cfg, notify)
    try:
        notify.wait_for("READY=1")
        with Publisher(mqtt_broker.settings(session_expiry_s=0)) as pub:
            before = _deliver(pub, desk_sim, "hp-0042:ops-before:refrigerant_leak")
            assert NEW_CUSTOMER not in json.dumps(before)

            moved_host = "localhost" if cfg["mqtt"]["host"] != "localhost" else "127.0.0.1"
            bridge.write({**cfg, "registry_path": str(renamed), "mqtt": {**cfg["mqtt"], "host": moved_host}})
            bridge.proc.send_signal(signal.SIGHUP)
            notify.wait_for("RELOADING=1")
            notify.wait_for("READY=1")
            (reload_line,) = bridge.events("config.reload")
            assert "applied=['registry_path']" in reload_line and "restart_needed=['mqtt.host']" in reload_line

            after = _deliver(pub, desk_sim, "hp-0042:ops-after:refrigerant_leak")
            assert NEW_CUSTOMER in json.dumps(after)

            bridge.config.write_text('[outbox]\nbackend = "oracle"\n', encoding="utf-8")
            bridge.proc.send_signal(signal.SIGHUP)
            notify.wait_for("RELOADING=1")
            notify.wait_for("READY=1")
            (failed,) = bridge.events("config.reload_failed")
            assert "outbox.backend" in failed
            assert bridge.proc.poll() is None
            last = _deliver(pub, desk_sim, "hp-0042:ops-broken:refrigerant_leak")
            assert NEW_CUSTOMER in json.dumps(last), "the last good settings stay in force"
        assert bridge.stop() == 0
    finally:
        bridge.kill()


class FakeMonotonic:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _app(tmp_path: Path, desk_sim: DeskSimulator, broker: BrokerInfo, **kw: Any) -> BridgeApp:
    return BridgeApp(bridge_settings(tmp_path, "webhook", desk_sim.url, broker.settings(session_expiry_s=0),
                                     share_group="", replica_id=f"r{uuid.uuid4().hex[:12]}"), **kw)


def test_reload_keeps_routing_to_an_unknown_desk_for_the_restart(
    tmp_path: Path, desk_sim: DeskSimulator, mqtt_broker: BrokerInfo
) -> None:
    app = _app(tmp_path, desk_sim, mqtt_broker)
    try:
        running = app.settings
        new = running.model_copy(update={
            "desks": {**running.desks, "oncall": running.desks["main"]},
            "routing": running.routing.model_copy(update={"sites": {"oslo-north": "oncall"}}),
            "sla": running.sla.model_copy(update={"warn_fraction": 0.5}),
        })
        plan = app.reload(new)
        assert plan.apply == {"sla"}
        assert plan.restart_needed == {"desks", "routing"}
        assert app.settings.sla.warn_fraction == 0.5
        assert app.settings.routing == running.routing and app.settings.desks == running.desks
        assert app.reload(new).restart_needed == {"desks", "routing"}, "still pending until the restart"
    finally:
        app.stop()


def test_reload_refuses_a_broken_registry_and_changes_nothing(
    tmp_path: Path, desk_sim: DeskSimulator, mqtt_broker: BrokerInfo
) -> None:
    app = _app(tmp_path, desk_sim, mqtt_broker)
    try:
        broken = tmp_path / "broken.toml"
        broken.write_text('[[asset]]\nsite = "x"\n', encoding="utf-8")
        running, registry = app.settings, app.registry
        with pytest.raises(RegistryError, match="did not load"):
            app.reload(running.model_copy(update={"registry_path": broken, "dashboard_url": "https://x/{asset}"}))
        assert app.settings is running and app.registry is registry
    finally:
        app.stop()


def test_reloadable_fields_exist_and_an_unchanged_file_is_an_empty_plan(
    tmp_path: Path, desk_sim: DeskSimulator, mqtt_broker: BrokerInfo
) -> None:
    app = _app(tmp_path, desk_sim, mqtt_broker)
    try:
        plan = app.reload(app.settings)  # raises ValueError if RELOADABLE named a missing field
        assert not plan.changed
    finally:
        app.stop()


def test_metrics_section_defaults_to_localhost() -> None:
    settings = load_settings(BridgeSettings, REPO / "config" / "cloud-bridge.example.toml")
    assert (settings.metrics.enabled, settings.metrics.host, settings.metrics.port) == (True, "127.0.0.1", 9109)


def test_watchdog_probes_and_gauges_in_process(
    tmp_path: Path, desk_sim: DeskSimulator, mqtt_broker: BrokerInfo, bridge: Callable[..., BridgeApp]
) -> None:
    app = bridge()
    probes = {p.name: p for p in app.liveness()}
    assert set(probes) == {"mqtt", "dispatch", "delivery"}
    assert probes["delivery"].max_age_s == 20.0  # 10 x the desk's 2 s timeout
    assert probes["delivery"].age_s() < 1.0, "an idle pool is live"
    app.consumer.accept(alert(1, alert_id="hp-0042:ops-inproc:refrigerant_leak"))
    assert app.drain(WAIT_S)
    stats = app.refresh_gauges()
    r = app.metrics.registry
    assert stats.depth == 0 and r.get_sample_value("pdm_bridge_outbox_depth") == 0
    assert r.get_sample_value("pdm_bridge_delivery_attempts_total", {"desk": "main", "outcome": "delivered"}) == 1
    assert r.get_sample_value("pdm_bridge_alert_outcomes_total", {"outcome": "accepted"}) == 1
    assert r.get_sample_value("pdm_bridge_outbox_desk_depth", {"desk": "main"}) == 0
    assert r.get_sample_value("pdm_bridge_circuit_open", {"desk": "main"}) == 0


def test_watchdog_withheld_while_a_delivery_hangs(
    tmp_path: Path, desk_sim: DeskSimulator, mqtt_broker: BrokerInfo
) -> None:
    desk_sim.reset()
    desk_sim.set_faults(latency_ms=1500.0)  # holds the request open while the clock is moved
    clock = FakeMonotonic()
    app = _app(tmp_path, desk_sim, mqtt_broker, monotonic=clock)
    watchdog = Watchdog(Notifier({}), [p for p in app.liveness() if p.name == "delivery"], clock=clock)
    try:
        app.start()
        assert watchdog.beat()
        app.consumer.accept(alert(1, alert_id="hp-0042:ops-hang:refrigerant_leak"))
        assert _wait(lambda: len(desk_sim.requests()) > 0), "the attempt reached the desk (and stamped progress)"
        clock.now += 21.0  # past 10 x the desk's 2 s timeout with the request still open
        assert not watchdog.beat()
        assert watchdog.problems[0].startswith("delivery stalled for 21s")
        assert app.drain(WAIT_S)
        assert watchdog.beat(), "the finished attempt is progress"
    finally:
        app.stop()
        desk_sim.reset()
