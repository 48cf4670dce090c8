"""The shipped Mosquitto config: TLS only, passwords required, each gateway confined to its site."""

from __future__ import annotations

import queue

import pytest

from pdm_common.mqtt import InboundMessage, MqttClient
from tests.deploy.conftest import SecureBroker

pytestmark = pytest.mark.mosquitto
_WAIT_S = 10.0


def _client(broker: SecureBroker, user: str, inbox: queue.Queue[InboundMessage] | None = None,
            subscriptions: list[tuple[str, int]] | None = None, role: str = "main") -> MqttClient:
    client = MqttClient(broker.settings(user, session_expiry_s=0), client_id=f"acl-test-{user}-{role}",
                        subscriptions=subscriptions or [], on_message=inbox.put if inbox is not None else None)
    client.start()
    assert client.wait_connected(_WAIT_S), f"{user} could not log in"
    return client


def test_gateway_confined_to_its_site(secure_broker: SecureBroker) -> None:
    bridge_inbox: queue.Queue[InboundMessage] = queue.Queue()
    bridge = _client(secure_broker, "cloud-bridge", bridge_inbox, [("pdm/v1/+/+/alert", 1)])
    spy_inbox: queue.Queue[InboundMessage] = queue.Queue()
    spy = _client(secure_broker, "gw-17", spy_inbox, [("pdm/v1/bergen-1/#", 1), ("pdm/v1/oslo-north/#", 1)],
                  role="spy")
    gw18 = _client(secure_broker, "gw-18")
    try:
        # gw-18 (bergen-1) cannot publish into oslo-north; it can publish into its own site. The
        # broker handles one client's messages in order, so once the bridge has the last one,
        # the earlier ones were routed (or refused) too.
        gw18.publish("pdm/v1/oslo-north/hp-1/alert", b"forged", qos=1)
        gw18.publish("pdm/v1/bergen-1/hp-9/state", b"bergen-state", qos=1)
        gw18.publish("pdm/v1/bergen-1/hp-9/alert", b"own-site", qos=1)
        got = bridge_inbox.get(timeout=_WAIT_S)
        assert (got.topic, got.payload) == ("pdm/v1/bergen-1/hp-9/alert", b"own-site"), "the forged alert was refused"
        gw17 = _client(secure_broker, "gw-17")
        try:
            gw17.publish("pdm/v1/oslo-north/hp-1/state", b"own-state", qos=1)
            # gw-17's spy subscribed to bergen-1 too: had the ACL let bergen-state through, it
            # would have been queued to the spy before own-state.
            seen = spy_inbox.get(timeout=_WAIT_S)
            assert (seen.topic, seen.payload) == ("pdm/v1/oslo-north/hp-1/state", b"own-state")
            assert spy_inbox.empty(), "gw-17 must not read bergen-1 topics"
        finally:
            gw17.stop()
    finally:
        for c in (bridge, spy, gw18):
            c.stop()


def test_wrong_password_is_refused(secure_broker: SecureBroker) -> None:
    client = MqttClient(secure_broker.settings("gw-17", "wrong"), client_id="acl-test-bad")
    client.start()
    try:
        for _ in range(100):  # up to 10 s for the CONNACK refusal
            if client.auth_failed or client.wait_connected(0.1):
                break
        assert client.auth_failed
        assert not client.is_connected
    finally:
        client.stop()
