"""Agent configuration: the example validates, env overrides, bad values name field, value and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config import AgentSettings
from pdm_common.errors import ConfigError
from pdm_common.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "edge-agent.example.toml"


def test_example_config_is_valid() -> None:
    settings = load_settings(AgentSettings, EXAMPLE)
    assert settings.gateway == "gw-17"
    assert settings.mqtt.tls.enabled


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDM_MQTT__HOST", "broker.local")
    monkeypatch.setenv("PDM_DETECTION__THRESHOLD_MARGIN", "2.5")
    settings = load_settings(AgentSettings, EXAMPLE)
    assert settings.mqtt.host == "broker.local"
    assert settings.detection.threshold_margin == 2.5


def test_bad_value_names_field_value_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text('gateway = "gw 17"\n[mqtt]\nport = 99999\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(AgentSettings, bad)
    text = str(info.value)
    assert "gateway = 'gw 17'" in text and "PDM_GATEWAY" in text
    assert "mqtt.port = 99999" in text and "Fix:" in text

    conflict = tmp_path / "conflict.toml"
    conflict.write_text('[mqtt]\npassword = "hunter2"\npassword_file = "/x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(AgentSettings, conflict)
    assert "not both" in str(info.value)
    assert "hunter2" not in str(info.value), "secrets never appear in error messages"


def test_cli_refuses_bad_config_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text("nonsense_key = 1\n", encoding="utf-8")
    assert main(["--config", str(bad), "check-config"]) == 2
    assert "nonsense_key" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.toml"), "check-config"]) == 2
