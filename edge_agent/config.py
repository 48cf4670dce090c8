"""Settings of the edge agent: one pydantic-settings model, from TOML plus ``PDM_`` env variables.

See ``config/edge-agent.example.toml`` for every field with its meaning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from edge_agent.commands import CommandSettings, SigningSettings
from edge_agent.detection.settings import DETECTOR_NAMES, DetectionSettings
from pdm_common.contracts import KIND_PATTERN, NAME_PATTERN
from pdm_common.kinds import KindsFile, check_declarations, declarations, read_kinds_file
from pdm_common.logs import LogSettings
from pdm_common.mqtt import MqttSettings
from pdm_common.profiles import Profile, ProfileRegistry
from pdm_common.settings import ServiceSettings

__all__ = ["AgentSettings", "LogSettings", "MetricsSettings"]

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


class MetricsSettings(BaseModel):
    """The Prometheus endpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="serve Prometheus metrics")
    host: str = Field("127.0.0.1", description="bind address; keep it on localhost unless a firewall guards it")
    port: int = Field(9108, ge=0, le=65535, description="TCP port of the metrics endpoint; 0 picks a free one (tests)")


def _check_detectors(profiles: dict[str, Profile]) -> None:
    for name, profile in profiles.items():
        for detector in [profile.detector] + [a.detector for a in profile.assets.values()]:
            if detector is not None and detector not in DETECTOR_NAMES:
                raise ValueError(f"kinds.{name}: detector {detector!r} is not one of {', '.join(DETECTOR_NAMES)}")


class AgentSettings(ServiceSettings):
    """Everything the edge agent needs to start."""

    gateway: Name = Field("gw-01", description="this gateway's name, [A-Za-z0-9_-]{1,64}")
    site: Name = Field("site-01", description="the site this gateway serves; its status topic lives there")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    telemetry_qos: Literal[0, 1] = Field(1, description="QoS of the telemetry subscription")
    state_dir: Path = Field(Path("/var/lib/pdm-edge-agent"), description="outbox and checkpoints live here")
    inbound_queue_max: int = Field(
        10_000, ge=100, le=1_000_000,
        description="QoS 0 telemetry buffered for the detector before more is dropped (counted); QoS 1 is bounded "
        "by mqtt.receive_maximum instead and never dropped",
    )
    status_interval_s: float = Field(
        30.0, ge=1.0, le=3600.0, description="how often the retained gateway status (with health) is refreshed"
    )
    checkpoint_interval_s: float = Field(
        300.0, ge=5.0, le=86_400.0,
        description="how often changed assets' model state is checkpointed (alert events are durable at once)",
    )
    telemetry_journal: bool = Field(
        True, description="journal acknowledged telemetry until a checkpoint covers it, and replay it after a "
        "crash (models lose nothing to kill -9); false saves one write per loop pass",
    )
    journal_max_rows: int = Field(
        50_000, ge=1_000, le=10_000_000,
        description="journaled samples that start a checkpoint round before checkpoint_interval_s is up "
        "(bounds the journal's size and the replay after a crash)",
    )
    alert_echo_s: float = Field(
        120.0, ge=0.0, le=3600.0,
        description="publish every alert event once more this long after the broker acknowledged it (0: never); "
        "covers Mosquitto 2.0 dropping what arrives for a restored session before its client reconnects; keep it "
        "above the cloud bridge's mqtt.reconnect_max_s",
    )
    outbox_max_rows: int = Field(
        10_000, ge=100, le=10_000_000, description="bound of the durable outbox; updated/state events drop first"
    )
    publish_window: int = Field(
        50, ge=1, le=1000, description="outbox events in flight (sent, not yet acknowledged) at once"
    )
    clock: Literal["wall", "telemetry"] = Field(
        "wall", description='"wall" in production; "telemetry" makes time follow the samples (replays, simulators)'
    )
    detection: DetectionSettings = Field(default_factory=DetectionSettings)
    kinds: dict[Annotated[str, StringConstraints(pattern=KIND_PATTERN)], dict[str, Any]] = Field(
        default_factory=dict,
        description="machine kinds beyond heat_pump and pump (or additions to them): channels, operating "
        "condition, faults, detector, per-asset channels; see config/edge-agent.example.toml [kinds]",
    )
    kinds_path: KindsFile | None = Field(
        None, description="a TOML file of [kinds.<name>] tables shared with the cloud bridge (which words tickets "
        "with the same declarations), e.g. /etc/pdm-edge/kinds.toml; a kind is declared there or in [kinds], not both",
    )
    commands: CommandSettings = Field(default_factory=CommandSettings)
    signing: SigningSettings = Field(default_factory=SigningSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        _check_detectors(check_declarations(value))
        return value

    _read_kinds_path = field_validator("kinds_path", mode="before")(read_kinds_file)

    @field_validator("kinds_path")
    @classmethod
    def _kinds_file(cls, value: KindsFile | None) -> KindsFile | None:
        if value is not None:
            _check_detectors(check_declarations(value.kinds, where=str(value.path)))
        return value

    @model_validator(mode="after")
    def _declared_once(self) -> Self:
        self.declared_kinds()
        return self

    def declared_kinds(self) -> dict[str, dict[str, Any]]:
        """The kinds declared in ``kinds_path`` and in ``[kinds]`` (each in one of them)."""
        return declarations(self.kinds, self.kinds_path)

    def profiles(self) -> ProfileRegistry:
        """The built-in machine profiles plus (or extended by) the declared kinds (``kinds_path``, ``[kinds]``)."""
        return ProfileRegistry.with_declared(self.declared_kinds())
