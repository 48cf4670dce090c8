"""Fixtures of the bridge tests: a real desk simulator and an in-process bridge wired to it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.app import BridgeApp
from cloud_bridge.config import BridgeSettings
from pdm_common.settings import load_settings
from simulators.desk.server import DeskSimulator
from tests.bridge.samples import COMMAND_SECRET, REPO, desk_settings, gateways

FAST_RETRY = {"base_s": 0.05, "cap_s": 0.3, "max_attempts": 8, "circuit_failures": 50, "circuit_open_s": 0.5}


@pytest.fixture(scope="module")
def desk_sim() -> Iterator[DeskSimulator]:
    """One desk simulator per test module (reset before each test that uses ``bridge``)."""
    with DeskSimulator(port=0, seed=7) as sim:
        yield sim


def bridge_settings(tmp_path: Path, kind: str, url: str, mqtt: Any, **over: Any) -> BridgeSettings:
    """Settings of a bridge on a temp SQLite outbox delivering to one simulated desk."""
    base: dict[str, Any] = {
        "mqtt": mqtt,
        "registry_path": REPO / "config" / "assets.example.toml",
        "fault_actions_path": REPO / "config" / "fault-actions.toml",
        "desks": {"main": desk_settings(kind, url)},
        "outbox": {"path": tmp_path / "outbox.db", "lease_s": 5.0},
        "retry": FAST_RETRY,
        "delivery": {"workers": 4, "poll_s": 0.05, "shutdown_grace_s": 5.0},
        "gateways": gateways(),
        "commands": {"key_id": "cloud-bridge", "secret": COMMAND_SECRET},
        "sync": {"enabled": False},
    }
    base.update(over)
    return load_settings(BridgeSettings, None, **base)


@pytest.fixture
def bridge(tmp_path: Path, desk_sim: DeskSimulator, mqtt_broker: Any) -> Iterator[Callable[..., BridgeApp]]:
    """Factory of started bridges against the simulator; each is stopped at teardown."""
    desk_sim.reset()
    apps: list[BridgeApp] = []

    def make(kind: str = "webhook", **over: Any) -> BridgeApp:
        # A session that ends with the test, in a group of its own: a stopped bridge's persistent session
        # would otherwise keep taking its share of later tests' messages.
        group = "" if mqtt_broker.kind == "amqtt" else f"t{uuid.uuid4().hex[:12]}"
        settings = bridge_settings(tmp_path, kind, desk_sim.url, mqtt_broker.settings(session_expiry_s=0),
                                   share_group=group, replica_id=f"r{uuid.uuid4().hex[:12]}", **over)
        app = BridgeApp(settings)
        app.start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop()
