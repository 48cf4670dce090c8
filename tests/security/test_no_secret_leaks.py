"""No secret in logs, metrics, tickets, error messages or doctor output (#14.6).

Real runs with per-test secrets (broker passwords, the gateway's alert key, the command key, the
webhook HMAC secret): everything the processes print, serve or deliver is scanned for each secret
(and for the base64 body of ``whsec_`` keys). The error paths are exercised on purpose — a forged
command, a wrong broker password, invalid config values next to secrets — because that is where a
secret slips into a message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pdm_common.contracts import Command
from tests.rig import (
    FAST_DETECTION,
    REPO,
    Sensors,
    Service,
    Watcher,
    agent_config,
    bridge_config,
    dump_toml,
    fleet_messages,
    metric,
    metrics_text,
    new_secret,
    scan_for_secrets,
)
from tests.rig_fixtures import Rig
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def _cli(module: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120, env=env, check=False)


def test_no_secret_reaches_logs_metrics_tickets_or_doctor_output(rig: Rig) -> None:
    agent_cfg, agent_port = agent_config(rig.workdir, rig.broker, rig.keys, detection=FAST_DETECTION)
    bridge_cfg, bridge_port = bridge_config(rig.workdir, rig.broker, rig.keys, rig.desk.url)
    agent = Service("agent", "edge_agent.cli", agent_cfg, rig.workdir).start()
    bridge = Service("bridge", "cloud_bridge.cli", bridge_cfg, rig.workdir).start()
    texts: dict[str, str] = {}
    with Watcher(rig.broker.settings("svc.ops"), "pdm/v1/#") as watcher, \
            Sensors(rig.broker.settings("sensors.oslo-north")) as sensors, \
            Sensors(rig.broker.settings("svc.cloud-bridge")) as desk_side:
        assert wait_until(lambda: metric(agent_port, "pdm_agent_mqtt_connected") == 1.0, 60)
        assert wait_until(lambda: metric(bridge_port, "pdm_bridge_outbox_depth") is not None, 60)
        sensors.send(fleet_messages(rig.workdir, seed=11))
        # Error paths: a command signed with a wrong key, one signed right, a malformed one.
        cmd = Command.model_validate({"command": "serviced", "issued_by": "ops:alice"})
        for secret, msg_id in ((new_secret(), "leak-1"), (rig.keys.commands, "leak-2")):
            signed = cmd.signed(key_id="cloud-bridge", secret=secret, msg_id=msg_id, now_s=int(time.time()))
            desk_side.send([("pdm/v1/oslo-north/hp-0001/cmd", signed.to_json())])
        desk_side.send([("pdm/v1/oslo-north/hp-0001/cmd", b'{"command": "snooze", "auth": 1}')])
        assert wait_until(lambda: metric(agent_port, "pdm_agent_outbox_depth") == 0.0, 60)
        assert wait_until(lambda: len(rig.desk.tickets("webhook")) > 0, 30), bridge.log()[-2000:]
        texts["agent metrics"] = metrics_text(agent_port)
        texts["bridge metrics"] = metrics_text(bridge_port)
        texts["mqtt traffic"] = "\n".join(m.topic + " " + m.payload.decode(errors="replace") for m in watcher.messages)
    assert agent.stop() == 0 and bridge.stop() == 0
    texts["desk tickets"] = json.dumps(rig.desk.tickets())
    texts["desk requests"] = json.dumps(rig.desk.requests())
    # A wrong broker password: the refusal is logged, the password is not.
    wrong = rig.workdir / "wrong.password"
    wrong.write_text(new_secret())
    bad_login = rig.workdir / "bad-login.toml"
    bad_login.write_text(agent_cfg.read_text().replace(str(rig.broker.password_file("oslo-north")), str(wrong)))
    bad = Service("bad-login", "edge_agent.cli", bad_login, rig.workdir).start()
    time.sleep(3.0)
    bad.stop()
    # Config errors next to secrets, and the doctors.
    broken = rig.workdir / "broken.toml"
    broken.write_text(dump_toml({"mqtt": {"password": rig.broker.passwords["oslo-north"], "port": 0},
                                 "commands": {"keys": {"x": 1}}}))
    for name, result in {
        "agent check-config (invalid)": _cli("edge_agent.cli", broken, "check-config"),
        "agent check-config": _cli("edge_agent.cli", agent_cfg, "check-config"),
        "agent doctor": _cli("edge_agent.cli", agent_cfg, "doctor"),
        "bridge doctor": _cli("cloud_bridge.cli", bridge_cfg, "doctor", "--offline"),
        "bridge outbox list": _cli("cloud_bridge.cli", bridge_cfg, "outbox", "list"),
    }.items():
        texts[name] = result.stdout + result.stderr
    texts["agent log"] = agent.log()
    texts["bridge log"] = bridge.log()
    texts["wrong-password log"] = bad.log()
    secrets_ = [*rig.secrets(), wrong.read_text()]
    assert "invalid configuration" in texts["agent check-config (invalid)"]
    assert scan_for_secrets(texts, secrets_) == []
