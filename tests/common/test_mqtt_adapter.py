"""The shared paho adapter against a real broker: redelivery after a failed handler, reconnects."""

from __future__ import annotations

import threading
import time

import pytest

from pdm_common.mqtt import InboundMessage, MqttClient
from simulators.broker import MosquittoBroker
from tests.conftest import BrokerInfo
from tests.mqtt_helpers import Publisher, unique_id


def test_failed_handler_means_no_puback_and_redelivery(mosquitto_broker: BrokerInfo) -> None:
    seen: list[bytes] = []
    handled = threading.Event()

    def flaky(msg: InboundMessage) -> None:
        seen.append(msg.payload)
        if len(seen) == 1:
            raise OSError("disk full")  # e.g. the outbox could not store the message
        handled.set()

    topic = f"test/{unique_id('redeliver')}"
    client = MqttClient(mosquitto_broker.settings(), client_id=unique_id("flaky"),
                        subscriptions=[(topic, 1)], on_message=flaky)
    client.start()
    try:
        assert client.wait_connected(10)
        with Publisher(mosquitto_broker.settings()) as pub:
            pub.send(topic, b"event-1")
            assert handled.wait(15), seen
    finally:
        client.stop()
    assert seen == [b"event-1", b"event-1"]
    assert client.connects == 2


def test_reconnects_after_broker_restart() -> None:
    if not MosquittoBroker.available():
        pytest.skip("mosquitto is not installed: this test restarts a broker on a fixed port")
    broker = MosquittoBroker().start()
    info = BrokerInfo(host=broker.host, port=broker.port, protocol="5", kind="mosquitto")
    client = MqttClient(info.settings(), client_id=unique_id("reconnect"))
    client.start()
    try:
        assert client.wait_connected(10)
        broker.stop()
        deadline = time.monotonic() + 10
        while client.is_connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not client.is_connected
        broker = MosquittoBroker(port=info.port).start()
        assert client.wait_connected(15)
        assert client.connects == 2
    finally:
        client.stop()
        broker.stop()
