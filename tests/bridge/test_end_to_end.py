"""End to end through a real broker: crash safety (kill -9) and two replicas on a shared subscription."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.app import BridgeApp
from simulators.desk.server import DeskSimulator
from tests.bridge.conftest import bridge_settings
from tests.bridge.samples import REPO, alert, gateways, signed
from tests.mqtt_helpers import Publisher
from tests.waiting import wait_until

N_ALERTS = 40


def _alert_payloads(n: int, tag: str) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        a = alert(1, alert_id=f"hp-{i:04d}:{tag}:low_flow", asset=f"hp-{i:04d}")
        out.append((f"pdm/v1/{a.site}/{a.asset}/alert", signed(a).to_json()))
    return out


def _creates(sim: DeskSimulator) -> Counter[str]:
    return Counter(t["dedup_key"] for t in sim.tickets("webhook"))


def _toml(settings: dict[str, Any]) -> str:
    lines: list[str] = []
    top = {k: v for k, v in settings.items() if not isinstance(v, dict)}
    for k, v in top.items():
        lines.append(f"{k} = {_val(v)}")
    for section, body in settings.items():
        if isinstance(body, dict):
            _section(lines, section, body)
    return "\n".join(lines) + "\n"


def _section(lines: list[str], name: str, body: dict[str, Any]) -> None:
    lines.append(f"[{name}]")
    for k, v in body.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {_val(v)}")
    for k, v in body.items():
        if isinstance(v, dict):
            _section(lines, f"{name}.{k}", v)


def _val(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.slow
def test_kill_9_mid_delivery_still_gives_exactly_one_ticket_per_alert(
    tmp_path: Path, desk_sim: DeskSimulator, mqtt_broker: Any
) -> None:
    desk_sim.reset()
    desk_sim.set_faults(latency_ms=40.0)  # keep deliveries in flight when the kill lands
    cfg = {
        "replica_id": "crashy",
        "share_group": "" if mqtt_broker.kind == "amqtt" else "kill9",
        "registry_path": str(REPO / "config" / "assets.example.toml"),
        "fault_actions_path": str(REPO / "config" / "fault-actions.toml"),
        "mqtt": {"host": mqtt_broker.host, "port": mqtt_broker.port, "protocol": mqtt_broker.protocol,
                 "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "desks": {"main": {"kind": "webhook", "base_url": desk_sim.url, "path": "/webhook",
                           "hmac_secret": "pdm-sim-webhook-secret", "timeout_s": 2.0}},
        "gateways": gateways(),
        "sync": {"enabled": False},
        # A fixed metrics port would collide with any other bridge on the machine (parallel test runs).
        "metrics": {"enabled": False},
        "outbox": {"path": str(tmp_path / "outbox.db"), "lease_s": 30.0},
        "retry": {"base_s": 0.05, "cap_s": 0.5},
        "delivery": {"workers": 4, "poll_s": 0.05},
    }
    path = tmp_path / "bridge.toml"
    path.write_text(_toml(cfg), encoding="utf-8")
    cmd = [sys.executable, "-m", "cloud_bridge.cli", "--config", str(path), "run"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "bridge.log"

    def spawn() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=out)

    proc = spawn()
    try:
        with Publisher(mqtt_broker.settings()) as pub:
            # Until the bridge has subscribed (slow under load) the broker keeps nothing for it, so
            # publish again until deliveries start; repeats are stale for the bridge and change nothing.
            payloads = _alert_payloads(N_ALERTS, "k9")
            deadline = time.monotonic() + 30.0
            while not wait_until(lambda: sum(_creates(desk_sim).values()) >= 5, 2.0):
                assert time.monotonic() < deadline, "the bridge never started delivering"
                for topic, payload in payloads:
                    pub.send(topic, payload)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed_at = sum(_creates(desk_sim).values())
            proc = spawn()
            assert wait_until(lambda: len(_creates(desk_sim)) == N_ALERTS, 60.0), len(_creates(desk_sim))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    creates = _creates(desk_sim)
    assert killed_at < N_ALERTS  # the kill really happened mid-run
    assert len(creates) == N_ALERTS and max(creates.values()) == 1, creates.most_common(3)


@pytest.mark.mosquitto
def test_two_replicas_on_a_shared_subscription_make_no_duplicates(
    tmp_path: Path, desk_sim: DeskSimulator, mosquitto_broker: Any
) -> None:
    desk_sim.reset()
    apps: list[BridgeApp] = []
    try:
        for name in ("replica-a", "replica-b"):
            (tmp_path / name).mkdir()
            apps.append(BridgeApp(bridge_settings(tmp_path / name, "webhook", desk_sim.url,
                                                  mosquitto_broker.settings(session_expiry_s=0), replica_id=name,
                                                  share_group="pair")))
        for app in apps:
            app.start()
        assert all(app.mqtt.wait_connected(10) for app in apps)
        time.sleep(0.5)  # both subscriptions in place before the burst
        with Publisher(mosquitto_broker.settings()) as pub:
            for topic, payload in _alert_payloads(N_ALERTS, "share"):
                pub.send(topic, payload)
        assert wait_until(lambda: len(_creates(desk_sim)) == N_ALERTS, 30.0)
        assert all(app.drain(10.0) for app in apps)
    finally:
        for app in apps:
            app.stop()
    creates = _creates(desk_sim)
    assert max(creates.values()) == 1
    split = [app.consumer.stats.accepted for app in apps]
    assert sum(split) == N_ALERTS and min(split) > 0, split  # the broker really shared the load
