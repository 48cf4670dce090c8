"""SIGTERM after traffic stops the real agent cleanly, 50 times in a row.

Each stop is its own process running ``edge_agent.cli.main(["--config", FILE, "run"])`` — the code
path of the ``edge-agent run`` console script — forked from a multiprocessing fork server that has
imported the agent once, so fifty starts cost fifty forks rather than fifty interpreter start-ups.
Every run gets telemetry (QoS 1, some of it still being worked through) and garbage, then SIGTERM —
every other run once the agent said ``online``, the others as soon as it is ready (mid-connect,
often); it must send STOPPING=1, exit 0, leave no traceback and say ``offline`` on its retained status.
All runs share one state directory and client id: each restart resumes the previous one's
checkpoint, outbox and persistent session.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
from functools import partial
from pathlib import Path

import pytest

from pdm_common.contracts import GatewayStatus
from tests.conftest import BrokerInfo
from tests.deploy.notify_socket import NotifySocket
from tests.mqtt_helpers import Publisher, Recorder, unique_id

STOPS = 50
SITE = "site-stop"


def _agent_process(config: str, notify: str, stderr_path: str) -> None:
    """The child: stderr to a file, the sd_notify socket in the environment, then the CLI."""
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 2)
    os.environ["NOTIFY_SOCKET"] = notify
    from edge_agent.cli import main

    sys.exit(main(["--config", config, "run"]))


def _telemetry(i: int, n: int) -> list[tuple[str, bytes]]:
    out = []
    for k in range(n):
        ts = 1_768_586_531_250 + (i * n + k) * 60_000
        payload = {"ts": ts, "seq": i * n + k, "kind": "pump",
                   "metrics": {"vibration_mm_s": 1.1 + 0.01 * k, "motor_current_a": 12.0, "running": True}}
        out.append((f"pdm/v1/{SITE}/pump-{k % 5}/telemetry", json.dumps(payload).encode()))
    return out


def _statuses(rec: Recorder, topic: str) -> list[str]:
    return [GatewayStatus.from_json(m.payload, max_bytes=4096).status for m in rec.on(topic)]


def _online_at_least(rec: Recorder, topic: str, n: int, _messages: object) -> bool:
    return _statuses(rec, topic).count("online") >= n


@pytest.mark.slow
def test_sigterm_after_traffic_exits_0_fifty_times_in_a_row(mqtt_broker: BrokerInfo, tmp_path: Path) -> None:
    gateway = unique_id("gw-stops")
    status_topic = f"pdm/v1/{SITE}/gateway/{gateway}/status"
    config = tmp_path / "agent.toml"
    state = tmp_path / "state"
    config.write_text(
        f'gateway = "{gateway}"\nsite = "{SITE}"\nstate_dir = "{state}"\nclock = "telemetry"\n'
        f'[mqtt]\nhost = "{mqtt_broker.host}"\nport = {mqtt_broker.port}\nprotocol = "{mqtt_broker.protocol}"\n'
        'reconnect_min_s = 0.2\nreconnect_max_s = 1.0\n'
        # Port 0: the endpoint binds a free port, and is served (and must be closed) in every run.
        '[metrics]\nenabled = true\nport = 0\n[log]\nlevel = "warning"\n',
        encoding="utf-8",
    )
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["edge_agent.app", "edge_agent.cli"])
    stderr_path = tmp_path / "stderr.log"
    settings = mqtt_broker.settings()
    with Recorder(settings, status_topic) as rec, Publisher(settings) as pub:
        for i in range(STOPS):
            notify = NotifySocket(tmp_path / f"notify-{i}.sock")
            proc = ctx.Process(target=_agent_process, args=(str(config), str(notify.path), str(stderr_path)))
            said_online = _statuses(rec, status_topic).count("online")
            proc.start()
            try:
                notify.wait_for("READY=1")
                if i % 2 == 0:
                    # Even runs stop a connected agent (its own birth seen); odd ones as soon as it is
                    # ready, often between CONNACK and the birth: the farewell must still come last.
                    assert rec.wait_for(partial(_online_at_least, rec, status_topic, said_online + 1), 20), \
                        f"run {i}: the agent never said online"
                for topic, payload in _telemetry(i, 20):
                    pub.send(topic, payload)
                pub.send(f"pdm/v1/{SITE}/pump-0/telemetry", b"{garbage")
                assert proc.pid is not None
                os.kill(proc.pid, signal.SIGTERM)
                notify.wait_for("STOPPING=1")
                proc.join(20)
                assert proc.exitcode == 0, f"run {i}: exit status {proc.exitcode}\n{stderr_path.read_text()[-3000:]}"
            finally:
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
                notify.close()
            assert rec.wait_for(lambda _m: _statuses(rec, status_topic)[-1:] == ["offline"], 10), (
                f"run {i}: no offline status after {_statuses(rec, status_topic)[-3:]}\n"
                f"{stderr_path.read_text()[-3000:]}")
    err = stderr_path.read_text()
    assert "Traceback" not in err and "Exception in thread" not in err, err[-3000:]
