"""The shipped Mosquitto ACL refuses what an account must not publish, and TLS is verified (#14.2, #14.6).

Each case publishes as one account and watches with a reader allowed to see the topic: a message
that arrives was let through. A marker message published afterwards on an allowed topic bounds the
wait (the broker keeps one client's messages in order). A refused publish is also answered with the
MQTT 5 PUBACK reason "not authorized" (Mosquitto 2). One broker serves the whole module: no case
changes it.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from pdm_common.mqtt import MqttClient, MqttSettings, TlsSettings
from tests.rig import Sensors, Watcher, make_test_ca
from tests.rig_fixtures import Rig
from tests.waiting import wait_until

pytestmark = pytest.mark.mosquitto

CASES = [
    # (publisher, probe topic, reader, marker topic the publisher may write and the reader may read, allowed)
    ("sensors.oslo-north", "pdm/v1/oslo-north/hp-1/alert", "svc.ops", "pdm/v1/oslo-north/m/telemetry", False),
    ("sensors.oslo-north", "pdm/v1/oslo-north/hp-1/cmd", "svc.ops", "pdm/v1/oslo-north/m/telemetry", False),
    ("svc.cloud-bridge", "pdm/v1/oslo-north/hp-1/alert", "svc.ops", "pdm/v1/oslo-north/m/cmd", False),
    ("bergen-1", "pdm/v1/oslo-north/hp-1/alert", "svc.ops", "pdm/v1/bergen-1/m/alert", False),
    ("bergen-1", "pdm/v1/oslo-north/hp-1/state", "svc.ops", "pdm/v1/bergen-1/m/alert", False),
    ("bergen-1", "pdm/v1/oslo-north/gateway/gw-17/status", "svc.ops", "pdm/v1/bergen-1/m/alert", False),
    ("oslo-north", "pdm/v1/oslo-north/hp-1/cmd", "svc.ops", "pdm/v1/oslo-north/m/alert", False),
    ("svc.cloud-bridge", "pdm/v1/oslo-north/hp-1/cmd", "svc.ops", "pdm/v1/oslo-north/m/cmd", True),
    ("oslo-north", "pdm/v1/oslo-north/hp-1/alert", "svc.ops", "pdm/v1/oslo-north/m/alert", True),
]
"""A site account may not command (not even its own site) nor write another site's alerts, states or
gateway status; sensors write telemetry only; the bridge writes commands only."""


def _let_through(rig: Rig, publisher: str, topic: str, reader: str, marker: str) -> tuple[bool, bool]:
    """Publish ``probe`` then a marker as ``publisher``: (PUBACK said success, the reader saw the probe)."""
    with Watcher(rig.broker.settings(reader), topic, marker) as watcher, \
            Sensors(rig.broker.settings(publisher)) as pub:
        acked = pub.try_send(topic, b"probe")
        assert pub.try_send(marker, b"marker"), "the marker was refused"
        assert wait_until(lambda: any(m.topic == marker for m in watcher.messages), 10), "marker lost"
        return acked, any(m.topic == topic for m in watcher.messages)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}->{c[1].split('/', 2)[2]}" for c in CASES])
def test_acl(module_rig: Rig, case: tuple[str, str, str, str, bool]) -> None:
    publisher, topic, reader, marker, allowed = case
    assert _let_through(module_rig, publisher, topic, reader, marker) == (allowed, allowed)


HANDSHAKE_FAILURES = ("routines::tlsv1 alert unknown ca.", "routines::wrong version number.")
"""What Mosquitto logs ("Client connection from … failed: …") when the client refused its certificate,
and when a client spoke plain MQTT to the TLS listener."""


def _probe_tls(rig: Rig, other_ca: Path) -> list[bool]:
    """Connect with a CA that did not sign the broker's certificate, and without TLS; both at once.

    Waits until the broker logged each kind of failed handshake twice (the first attempt and a
    retry), then says whether either client got connected.
    """
    wrong = rig.broker.settings("oslo-north", tls=TlsSettings(enabled=True, ca_file=other_ca / "ca.crt"))
    plain = rig.broker.settings("oslo-north", tls=TlsSettings(enabled=False))
    seen = len(rig.broker.log())
    clients = [MqttClient(s, client_id=f"tls-probe-{s.tls.enabled}") for s in (wrong, plain)]
    for client in clients:
        client.start()
    try:
        failed = wait_until(lambda: all(rig.broker.log()[seen:].count(why) >= 2 for why in HANDSHAKE_FAILURES), 30)
        assert failed, rig.broker.log()[seen:][-2000:]
        connected = [client.is_connected for client in clients]
    finally:
        for client in clients:
            client.stop()
    gc.collect()  # surface sockets the failed handshakes left open
    return connected


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second CA that did not sign the broker's certificate."""
    return make_test_ca(tmp_path_factory.mktemp("other-ca"))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tls_is_verified(module_rig: Rig, other_ca: Path) -> None:
    assert MqttSettings().tls.insecure is False
    assert _probe_tls(module_rig, other_ca) == [False, False], "connected without verifying the broker's certificate"


def test_a_refused_tls_handshake_leaks_no_socket(module_rig: Rig, other_ca: Path) -> None:
    _probe_tls(module_rig, other_ca)
