"""A checkpoint cannot execute code (#14.4): whoever can write the state directory must not run code
as the agent. Malicious pickles, in the current checkpoint layout with a valid header and sha256 and
as bare files, are put where the real ``edge-agent run`` reads its state; it must start (re-warming
what it cannot read) without running them."""

from __future__ import annotations

import hashlib
import json
import pickle
import sqlite3
from pathlib import Path

import pytest

from edge_agent.engine import MODEL_VERSION
from pdm_common import __version__
from tests.rig import Service, agent_config, metric
from tests.rig_fixtures import Rig
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


class _Payload:
    """Unpickling this writes ``marker``: the proof that loading a checkpoint ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path, str]]:
        return Path.write_text, (self.marker, "code ran while loading a checkpoint")


MAGIC = b"PDM-EDGE-CHECKPOINT\n"
"""The first checkpoint layout (one framed pickle of the whole engine, ``checkpoints/engine.ckpt``)."""


def _framed(payload: bytes) -> bytes:
    header = {"format": 1, "model": MODEL_VERSION, "agent_version": __version__,
              "sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}
    return MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload


def _poison_rows(path: Path, payload: bytes) -> None:
    """Per-asset layout (SQLite rows): replace every asset's state by ``payload`` with a valid checksum."""
    db = sqlite3.connect(path)
    try:
        db.execute("UPDATE assets SET state = ?, sha256 = ?", (payload, hashlib.sha256(payload).hexdigest()))
        db.commit()
    finally:
        db.close()


@pytest.mark.parametrize("framing", ["valid-header", "bare-pickle"])
def test_a_malicious_checkpoint_is_not_executed(rig: Rig, framing: str) -> None:
    marker = rig.workdir / "pwned"
    evil = pickle.dumps(_Payload(marker), protocol=pickle.HIGHEST_PROTOCOL)
    blob = _framed(evil) if framing == "valid-header" else evil
    cfg, port = agent_config(rig.workdir, rig.broker, rig.keys)
    state = rig.workdir / "agent-state" / "checkpoints"
    state.mkdir(parents=True)
    (state / "engine.ckpt").write_bytes(blob)
    agent = Service("agent", "edge_agent.cli", cfg, rig.workdir).start()
    try:
        assert wait_until(lambda: metric(port, "pdm_agent_mqtt_connected") == 1.0, 60), agent.log()[-2000:]
        # Every file the agent keeps under its state directory gets the same treatment, so a new
        # layout (per-asset files …) is attacked too.
        agent.stop()
        for path in state.rglob("*"):
            if not path.is_file():
                continue
            if path.read_bytes().startswith(b"SQLite format 3\x00"):
                _poison_rows(path, evil)
            else:
                path.write_bytes(_framed(evil) if path.read_bytes().startswith(MAGIC) else evil)
        agent.start()
        assert wait_until(lambda: metric(port, "pdm_agent_mqtt_connected") == 1.0, 60), agent.log()[-2000:]
        assert not marker.exists(), "loading the checkpoint executed code"
        assert agent.tracebacks() == 0
    finally:
        agent.stop()
