"""No secret in logs, metrics, tickets, error messages or doctor output (#14.6).

The shared running field (tests/security/conftest.py: a fleet run through the real agent and bridge,
after the command attacks of test_commands_e2e.py when both run in one session) with per-run
secrets (broker passwords, the gateway's alert key, the command key, the webhook HMAC secret):
everything the processes print, serve or deliver is scanned for each secret (and for the base64
body of ``whsec_`` keys). The error paths are exercised on purpose — a forged command, a wrong broker
password, invalid config values next to secrets — because that is where a secret slips into a message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pdm_common.contracts import Command
from simulators.broker import free_port
from tests.rig import REPO, Service, dump_toml, metrics_text, new_secret, scan_for_secrets
from tests.security.conftest import Field
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def _cli_all(runs: dict[str, tuple[str, Path, tuple[str, ...]]]) -> dict[str, str]:
    """Run CLI invocations at once (each a Python start of about a second); name -> stdout + stderr."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = {name: subprocess.Popen([sys.executable, "-m", module, "--config", str(config), *args], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, (module, config, args) in runs.items()}
    return {name: proc.communicate(timeout=120)[0] for name, proc in procs.items()}


def test_no_secret_reaches_logs_metrics_tickets_or_doctor_output(live_field: Field) -> None:
    f, rig = live_field, live_field.rig
    texts: dict[str, str] = {}
    # Error paths: a command signed with a wrong key, one signed right, a malformed one.
    cmd = Command.model_validate({"command": "serviced", "site": f.alert.site, "asset": f.alert.asset,
                                  "issued_by": "ops:alice"})
    for secret, msg_id in ((new_secret(), "leak-1"), (rig.keys.commands, "leak-2")):
        f.send(cmd, sign_with=secret, msg_id=msg_id)
    f.sender.send([(f.cmd_topic, b'{"command": "snooze", "auth": 1}')])
    assert wait_until(lambda: "msg_id=leak-2" in f.agent.current_log(), 30), f.agent.current_log()[-2000:]
    assert wait_until(lambda: len(rig.desk.tickets("webhook")) > 0, 30), f.bridge.log()[-2000:]
    texts["agent metrics"] = metrics_text(f.agent_port)
    texts["bridge metrics"] = metrics_text(f.bridge_port)
    texts["mqtt traffic"] = "\n".join(m.topic + " " + m.payload.decode(errors="replace") for m in f.watcher.messages)
    texts["desk tickets"] = json.dumps(rig.desk.tickets())
    texts["desk requests"] = json.dumps(rig.desk.requests())
    # A wrong broker password: the refusal is logged, the password is not.
    wrong = rig.workdir / "wrong.password"
    wrong.write_text(new_secret())
    bad_login = rig.workdir / "bad-login.toml"
    bad_login.write_text(f.agent_cfg.read_text().replace(str(rig.broker.password_file("oslo-north")), str(wrong))
                         .replace(str(rig.workdir / "agent-state"), str(rig.workdir / "bad-login-state"))
                         .replace(f"port = {f.agent_port}", f"port = {free_port()}"))
    bad = Service.agent(bad_login, rig.workdir, name="bad-login").start()
    # Config errors next to secrets, and the doctors.
    broken = rig.workdir / "broken.toml"
    broken.write_text(dump_toml({"mqtt": {"password": rig.broker.passwords["oslo-north"], "port": 0},
                                 "commands": {"keys": {"x": 1}}}))
    texts.update(_cli_all({
        "agent check-config (invalid)": ("edge_agent.cli", broken, ("check-config",)),
        "agent check-config": ("edge_agent.cli", f.agent_cfg, ("check-config",)),
        "agent doctor": ("edge_agent.cli", f.agent_cfg, ("doctor",)),
        "bridge doctor": ("cloud_bridge.cli", f.bridge_cfg, ("doctor", "--offline")),
        "bridge outbox list": ("cloud_bridge.cli", f.bridge_cfg, ("outbox", "list")),
    }))
    assert wait_until(lambda: "event=mqtt.connect_refused" in bad.current_log(), 30), bad.current_log()[-2000:]
    bad.stop()
    texts["agent log"] = f.agent.log()
    texts["bridge log"] = f.bridge.log()
    texts["wrong-password log"] = bad.log()
    secrets_ = [*rig.secrets(), wrong.read_text()]
    assert "invalid configuration" in texts["agent check-config (invalid)"]
    assert scan_for_secrets(texts, secrets_) == []
