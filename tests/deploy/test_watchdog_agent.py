"""A service loop under a real sd_notify socket: READY, watchdog fed while live, not when wedged."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pdm_common.mqtt import MqttClient
from tests.conftest import BrokerInfo
from tests.deploy.notify_socket import NotifySocket
from tests.deploy.standin_agent import WEDGE_TOPIC

REPO = Path(__file__).resolve().parents[2]
WATCHDOG_USEC = 1_000_000
"""WatchdogSec=1s: pings every 0.25 s at most, so a stop in pinging shows within a few seconds."""


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.mark.slow
def test_watchdog_fed_until_mqtt_loop_wedges(notify: NotifySocket, mqtt_broker: BrokerInfo, tmp_path: Path) -> None:
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    log = (tmp_path / "standin.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.deploy.standin_agent", mqtt_broker.host, str(mqtt_broker.port),
         mqtt_broker.protocol], cwd=REPO, env=env, stdout=log, stderr=log)
    publisher = MqttClient(mqtt_broker.settings(session_expiry_s=0), client_id="watchdog-test-publisher")
    try:
        notify.wait_for("READY=1")
        fed = [m for m in notify.wait_for("WATCHDOG=1") if m == "WATCHDOG=1"]
        fed += [m for m in notify.wait_for("WATCHDOG=1") if m == "WATCHDOG=1"]
        assert len(fed) >= 2, "the watchdog is fed repeatedly while the MQTT loop runs"

        publisher.start()
        assert publisher.wait_connected(10.0)
        publisher.publish(WEDGE_TOPIC, b"block", qos=1)
        before = notify.wait_for("STATUS=unhealthy")
        assert "mqtt stalled" in before[-1]

        # Four times WatchdogSec without a single ping: systemd would have killed and restarted us.
        silent = []
        for _ in range(4):
            msg = notify.receive(timeout_s=WATCHDOG_USEC / 1e6)
            if msg is not None:
                silent.append(msg)
        assert "WATCHDOG=1" not in silent

        proc.terminate()
        assert "STOPPING=1" in notify.wait_for("STOPPING=1")[-1]
        assert proc.wait(timeout=10) == 0
    finally:
        publisher.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
