"""The real ``edge-agent run`` under a real sd_notify socket: READY, a fed watchdog, STOPPING.

Withholding the ping when the MQTT network loop wedges is shown with the same Watchdog wiring in
tests/deploy/test_watchdog_agent.py, where a test message can block the handler on purpose.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import BrokerInfo
from tests.deploy.notify_socket import NotifySocket


def test_agent_reports_ready_feeds_the_watchdog_and_says_stopping(mqtt_broker: BrokerInfo, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'gateway = "gw-notify"\nsite = "s1"\nstate_dir = "{tmp_path}"\n'
        f'[mqtt]\nhost = "{mqtt_broker.host}"\nport = {mqtt_broker.port}\nprotocol = "{mqtt_broker.protocol}"\n'
        "[metrics]\nenabled = false\n",
        encoding="utf-8",
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    proc = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "--config", str(config), "run"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        notify.wait_for("READY=1")
        pings = [m for m in notify.wait_for("WATCHDOG=1") + notify.wait_for("WATCHDOG=1") if m == "WATCHDOG=1"]
        assert len(pings) >= 2, "the watchdog is fed repeatedly while the agent is live"
        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        _, err = proc.communicate()
        notify.close()
    assert b"Traceback" not in err, err.decode()[-2000:]
