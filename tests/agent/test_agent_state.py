"""The agent with bad state on disk: it starts, serves, says what is wrong and what to do, never a traceback.

Issue 14.6 (the checkpoint directory is a file) and 14.4 (a checkpoint row that would run code).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_agent import checkpoint
from edge_agent.app import CHECKPOINT_DIR, CHECKPOINT_FILE, EdgeAgent
from edge_agent.checkpoint import CheckpointStore
from edge_agent.config import AgentSettings, MetricsSettings
from edge_agent.engine import MODEL_VERSION
from pdm_common import __version__
from pdm_common.contracts import GatewayStatus
from tests.agent_core.conftest import feed, new_engine
from tests.agent_core.synthetic import HeatPumpStream, wire
from tests.conftest import BrokerInfo
from tests.mqtt_helpers import Publisher, unique_id
from tests.waiting import wait_until

SITE = "site-state"


@contextmanager
def _agent(broker: BrokerInfo, state_dir: Path) -> Iterator[EdgeAgent]:
    gateway = unique_id("gw-state")
    agent = EdgeAgent(AgentSettings(gateway=gateway, site=SITE, state_dir=state_dir, clock="telemetry",
                                    mqtt=broker.settings(client_id=gateway), metrics=MetricsSettings(enabled=False)))
    thread = threading.Thread(target=agent.run, daemon=True)
    agent.start()
    thread.start()
    try:
        assert agent.mqtt.wait_connected(10)
        yield agent
    finally:
        agent.request_stop()
        thread.join(30)


def _wire(stream: HeatPumpStream, hours: float, start_h: float = 0.0) -> list[tuple[str, bytes]]:
    return [wire(tel) for tel, _ in stream.samples(hours, start_h=start_h)]


def test_a_checkpoint_directory_that_is_a_file_degrades_and_recovers(
    mqtt_broker: BrokerInfo, tmp_path: Path, agent_log: io.StringIO
) -> None:
    (tmp_path / CHECKPOINT_DIR).write_text("someone put a file here")
    stream = HeatPumpStream(site=SITE, asset="hp-1")
    with _agent(mqtt_broker, tmp_path) as agent, Publisher(mqtt_broker.settings()) as pub:
        for topic, payload in _wire(stream, 0.5):
            pub.send(topic, payload)
        assert wait_until(lambda: agent.counters.valid >= 30, 20)
        assert agent.health()["checkpoint_writes"].startswith("degraded: checkpoints unavailable")
        status = GatewayStatus.from_json(agent._status_payload("online"), max_bytes=8192)
        assert status.health["checkpoint_writes"].startswith("degraded")
    err = agent_log.getvalue()
    assert "Traceback" not in err
    assert len(re.findall(r"event=agent\.degraded .*condition=checkpoint_disk", err)) == 1, "one line, with the fix"
    assert "remove whatever is at" in err
    (tmp_path / CHECKPOINT_DIR).unlink()
    with _agent(mqtt_broker, tmp_path) as agent:
        assert agent.health()["checkpoint_writes"] == "ok"
    assert (tmp_path / CHECKPOINT_FILE).exists()


def test_a_hostile_checkpoint_row_costs_its_asset_a_re_warm_and_runs_nothing(
    mqtt_broker: BrokerInfo, tmp_path: Path, agent_log: io.StringIO
) -> None:
    warm = HeatPumpStream(site=SITE, asset="hp-warm")
    engine = new_engine()
    feed(engine, warm, 30)
    (tmp_path / CHECKPOINT_DIR).mkdir()
    store = CheckpointStore(tmp_path / CHECKPOINT_FILE, model_version=MODEL_VERSION, agent_version=__version__)
    key = (SITE, "hp-warm")
    store.save([(key, checkpoint.encode(engine.snapshot(key), engine.shared_refs()))])
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Gadget(f"touch {marker}"))
    store.save([((SITE, "hp-evil"), evil)])
    store.close()
    db = sqlite3.connect(tmp_path / CHECKPOINT_FILE)  # as an attacker would: a valid checksum
    db.execute("UPDATE assets SET sha256 = ? WHERE asset = 'hp-evil'", (hashlib.sha256(evil).hexdigest(),))
    db.commit()
    db.close()
    evil_stream = HeatPumpStream(site=SITE, asset="hp-evil", seed=11)
    with _agent(mqtt_broker, tmp_path) as agent, Publisher(mqtt_broker.settings()) as pub:
        for topic, payload in _wire(warm, 0.2, start_h=30) + _wire(evil_stream, 0.2):
            pub.send(topic, payload)
        assert wait_until(lambda: agent.counters.valid >= 24, 20)
        agent.request_stop()
    assert not marker.exists(), "the checkpoint ran code"
    states = {s.asset: s for s in agent.engine.asset_states()}
    assert states["hp-warm"].warmup_progress == 1.0, "the legitimate checkpoint was restored"
    assert states["hp-evil"].warmup_progress < 1.0, "the refused asset starts over"
    err = agent_log.getvalue()
    assert "event=checkpoint.asset_refused" in err and "posix.system" in err and "Traceback" not in err


class _Gadget:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def test_a_restart_with_the_telemetry_clock_does_not_call_restored_assets_silent(
    tmp_path: Path, agent_log: io.StringIO
) -> None:
    """Before the first sample there is no telemetry time; the wall clock (months later) is no substitute."""
    stream = HeatPumpStream(site=SITE, asset="hp-replayed")
    engine = new_engine()
    feed(engine, stream, 2)
    (tmp_path / CHECKPOINT_DIR).mkdir()
    store = CheckpointStore(tmp_path / CHECKPOINT_FILE, model_version=MODEL_VERSION, agent_version=__version__)
    key = (SITE, stream.asset)
    store.save([(key, checkpoint.encode(engine.snapshot(key), engine.shared_refs()))])
    store.close()
    agent = EdgeAgent(AgentSettings(gateway="gw-replay", site=SITE, state_dir=tmp_path, clock="telemetry",
                                    metrics=MetricsSettings(enabled=False)))
    try:
        deadline = time.monotonic() + 2.5  # past two of the loop's once-a-second ticks
        while time.monotonic() < deadline:
            agent.step(0.05)
        assert agent.engine.asset_keys() == [key], "restored in the background"
    finally:
        agent.shutdown()
    assert "event=asset.silent" not in agent_log.getvalue()
