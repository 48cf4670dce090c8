"""SIGHUP reload of the agent: thresholds apply in place, broker changes wait for a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.app import EdgeAgent
from edge_agent.config import AgentSettings
from edge_agent.detection.settings import DetectionSettings
from pdm_common.errors import ConfigError
from pdm_common.mqtt import MqttSettings
from pdm_common.settings import load_settings


def _write(path: Path, margin: float, host: str, extra: str = "") -> None:
    path.write_text(
        f'gateway = "gw-reload"\nsite = "s1"\nstate_dir = "{path.parent}"\n{extra}'
        f"[mqtt]\nhost = \"{host}\"\n[metrics]\nenabled = false\n[detection]\nthreshold_margin = {margin}\n",
        encoding="utf-8",
    )


def test_reload_applies_thresholds_and_names_what_needs_a_restart(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    _write(config, 3.5, "127.0.0.1")
    agent = EdgeAgent(load_settings(AgentSettings, config),
                      reload_source=lambda: load_settings(AgentSettings, config))
    try:
        _write(config, 2.5, "broker.example")
        plan = agent.reload(load_settings(AgentSettings, config))
        assert plan.apply == {"detection"}
        assert plan.restart_needed == {"mqtt.host"}
        assert agent.engine.settings.threshold_margin == 2.5
        assert agent.settings.detection.threshold_margin == 2.5
        assert agent.settings.mqtt.host == "127.0.0.1", "the broker address changes only on restart"
    finally:
        agent.outbox.close()


def test_reload_with_a_broken_file_keeps_the_running_settings(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    _write(config, 3.5, "127.0.0.1")
    agent = EdgeAgent(load_settings(AgentSettings, config),
                      reload_source=lambda: load_settings(AgentSettings, config))
    try:
        _write(config, -1.0, "127.0.0.1")
        with pytest.raises(ConfigError, match=r"detection\.threshold_margin"):
            load_settings(AgentSettings, config)
        agent.request_reload()
        agent.step(0.01)  # the main loop performs the reload and logs config.reload_failed
        assert agent.settings.detection.threshold_margin == 3.5
    finally:
        agent.outbox.close()


def test_restored_engine_takes_the_new_thresholds(tmp_path: Path) -> None:
    base = AgentSettings(gateway="gw-r", site="s1", state_dir=tmp_path, mqtt=MqttSettings())
    EdgeAgent(base).shutdown()  # writes the checkpoint the next agent restores
    tuned = base.model_copy(update={"detection": DetectionSettings(threshold_margin=2.0)})
    second = EdgeAgent(tuned)
    try:
        assert second.engine.settings.threshold_margin == 2.0
    finally:
        second.outbox.close()
