"""The gateway-to-cloud Mosquitto bridge (config/mosquitto/bridge-to-cloud.conf) between two real
brokers, each on Debian's stock config with the shipped drop-in, TLS and ACL: alerts cross, the
cloud sees the gateway only under its site's account, commands come back, and an alert published
while the cloud broker is down waits on the gateway and arrives after the cloud broker restarts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import PASSWORDS, SecureBroker, install_mosquitto
from tests.deploy.mqtt_probe import ACCEPTED, Probe

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]
_LINK_S = 20.0
"""The bridge retries every 1-2 s in this test (restart_timeout 1 2); a TLS connect takes well under 1 s."""


@pytest.fixture
def brokers(test_ca: Path, tmp_path: Path) -> Iterator[tuple[SecureBroker, SecureBroker]]:
    """(gateway broker with the bridge, cloud broker), both started."""
    cloud = install_mosquitto(tmp_path / "cloud", test_ca).start()
    gateway = install_mosquitto(tmp_path / "gateway", test_ca, bridge_to=cloud).start()
    try:
        yield gateway, cloud
    finally:
        gateway.stop()
        cloud.stop()


def _probe(broker: SecureBroker, user: str, *topics: str, client_id: str | None = None,
           clean_start: bool = True) -> Probe:
    probe = Probe(broker.port, broker.ca_file, user, PASSWORDS[user], client_id=client_id, clean_start=clean_start)
    assert probe.wait_connected(), broker.log[-1000:]
    for topic in topics:
        probe.subscribe(topic)
    return probe


def _until_linked(cloud: Probe) -> None:
    """Wait for the bridge's retained link notification "1" on the cloud."""
    deadline = time.monotonic() + _LINK_S
    while time.monotonic() < deadline:
        topic, payload, _retained = cloud.messages.get(timeout=max(0.1, deadline - time.monotonic()))
        if topic == "pdm/v1/oslo-north/gateway/gw-17/link" and payload == b"1":
            return
    pytest.fail("the bridge did not connect")


def test_alert_crosses_while_the_cloud_broker_restarts(brokers: tuple[SecureBroker, SecureBroker]) -> None:
    gateway, cloud = brokers
    watcher = _probe(cloud, "svc.cloud-bridge", "pdm/v1/+/gateway/+/link", "pdm/v1/+/+/alert",
                     client_id="bridge-replica-a", clean_start=False)
    agent = _probe(gateway, "oslo-north")
    try:
        _until_linked(watcher)
        assert agent.publish("pdm/v1/oslo-north/hp-1/alert", b"before") in ACCEPTED
        assert watcher.collect(until=b"before")[-1] == ("pdm/v1/oslo-north/hp-1/alert", b"before")
        watcher.close()
        cloud.stop()
        # The gateway broker acknowledges while the cloud is away; the bridge's session queues it.
        assert agent.publish("pdm/v1/oslo-north/hp-1/alert", b"during") in ACCEPTED
        cloud.start()
        watcher = _probe(cloud, "svc.cloud-bridge", client_id="bridge-replica-a", clean_start=False)
        deadline = time.monotonic() + _LINK_S
        payloads: list[bytes] = []
        while b"during" not in payloads and time.monotonic() < deadline:
            payloads.append(watcher.messages.get(timeout=max(0.1, deadline - time.monotonic()))[1])
        assert b"during" in payloads, f"{payloads}; gateway log: {gateway.log[-1500:]}"
    finally:
        agent.close()
        watcher.close()


def test_only_the_sites_topics_cross_and_commands_come_back(brokers: tuple[SecureBroker, SecureBroker]) -> None:
    gateway, cloud = brokers
    watcher = _probe(cloud, "svc.ops", "pdm/v1/#")
    agent = _probe(gateway, "oslo-north", "pdm/v1/oslo-north/+/cmd")
    sensors = _probe(gateway, "sensors.oslo-north")
    try:
        _until_linked(watcher)
        agent.publish("pdm/v1/oslo-north/gateway/gw-17/status", b"online", retain=True)
        sensors.publish("pdm/v1/oslo-north/hp-1/telemetry", b"stays-local")
        agent.publish("pdm/v1/oslo-north/hp-1/state", b"state", retain=True)
        agent.publish("pdm/v1/oslo-north/hp-1/alert", b"end")
        seen = watcher.collect(until=b"end")
        assert ("pdm/v1/oslo-north/gateway/gw-17/status", b"online") in seen
        assert ("pdm/v1/oslo-north/hp-1/state", b"state") in seen
        assert all(payload != b"stays-local" for _t, payload in seen), "telemetry must stay on the gateway"
        bridge = _probe(cloud, "svc.cloud-bridge")
        try:
            assert bridge.publish("pdm/v1/oslo-north/hp-1/cmd", b"reset") in ACCEPTED
            assert bridge.publish("pdm/v1/bergen-1/hp-9/cmd", b"not-ours") in ACCEPTED
            assert bridge.publish("pdm/v1/oslo-north/hp-2/cmd", b"cmd-end") in ACCEPTED
        finally:
            bridge.close()
        assert [p for _t, p in agent.collect(until=b"cmd-end")] == [b"reset", b"cmd-end"]
        late = _probe(cloud, "svc.cloud-bridge", "pdm/v1/+/gateway/+/status", "pdm/v1/+/+/state")
        try:
            retained = {late.messages.get(timeout=10)[:2] for _ in range(2)}
        finally:
            late.close()
        assert retained == {("pdm/v1/oslo-north/gateway/gw-17/status", b"online"),
                            ("pdm/v1/oslo-north/hp-1/state", b"state")}, "retained copies reach the cloud"
    finally:
        for probe in (watcher, agent, sensors):
            probe.close()


def test_link_notification_says_when_the_gateway_is_cut_off(brokers: tuple[SecureBroker, SecureBroker]) -> None:
    gateway, cloud = brokers
    watcher = _probe(cloud, "svc.cloud-bridge", "pdm/v1/+/gateway/+/link")
    try:
        _until_linked(watcher)
        gateway.stop()
        topic, payload, _retained = watcher.messages.get(timeout=_LINK_S)
        assert (topic, payload) == ("pdm/v1/oslo-north/gateway/gw-17/link", b"0")
    finally:
        watcher.close()
