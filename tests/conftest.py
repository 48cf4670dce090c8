"""Session-wide fixtures: a real MQTT broker on a free port.

``mqtt_broker`` is Mosquitto when the binary is installed, otherwise the embedded amqtt broker
(set ``PDM_TEST_BROKER=embedded`` to force the fallback, ``mosquitto`` to require Mosquitto).
Each test session starts its own broker, so tests never share state with a system broker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from pdm_common.mqtt import MqttSettings
from simulators.broker import EmbeddedBroker, MosquittoBroker, start_broker


@dataclass(frozen=True)
class BrokerInfo:
    """Where the test broker listens and which MQTT version to speak to it."""

    host: str
    port: int
    protocol: Literal["5", "3.1.1"]
    kind: Literal["mosquitto", "amqtt"]

    def settings(self, **overrides: Any) -> MqttSettings:
        """MQTT settings pointing at this broker, with fast reconnects for tests."""
        base: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 2.0,
        }
        base.update(overrides)
        return MqttSettings(**base)


def _info(broker: MosquittoBroker | EmbeddedBroker) -> BrokerInfo:
    return BrokerInfo(host=broker.host, port=broker.port, protocol=broker.protocol, kind=broker.kind)


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[BrokerInfo]:
    """A real broker for the whole test session."""
    choice = os.environ.get("PDM_TEST_BROKER", "auto")
    if choice == "mosquitto" and not MosquittoBroker.available():
        pytest.fail("PDM_TEST_BROKER=mosquitto but the mosquitto binary is not installed")
    prefer: Literal["mosquitto", "embedded", "auto"] = (
        "embedded" if choice == "embedded" else "mosquitto" if choice == "mosquitto" else "auto"
    )
    broker = start_broker(prefer)
    try:
        yield _info(broker)
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mosquitto_broker() -> Iterator[BrokerInfo]:
    """A Mosquitto broker, for tests about MQTT 5 behaviour or shared subscriptions."""
    if not MosquittoBroker.available():
        pytest.skip("mosquitto is not installed: MQTT 5 and $share tests need it (apt-get install mosquitto)")
    broker = MosquittoBroker().start()
    try:
        yield _info(broker)
    finally:
        broker.stop()


@pytest.fixture
def embedded_broker() -> Iterator[BrokerInfo]:
    """The pure-Python fallback broker, for tests that the fallback path works."""
    broker = EmbeddedBroker().start()
    try:
        yield _info(broker)
    finally:
        broker.stop()

