"""The shipped Mosquitto config on Debian's stock mosquitto.conf: TLS only, passwords required, and
the pattern ACL confining every site account to its own site (issue 12, issue 14 item 6)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.deploy.conftest import PASSWORDS, SecureBroker
from tests.deploy.mqtt_probe import ACCEPTED, NOT_AUTHORIZED, Probe

pytestmark = pytest.mark.mosquitto


@contextmanager
def _probe(broker: SecureBroker, user: str, *topics: str) -> Iterator[Probe]:
    probe = Probe(broker.port, broker.ca_file, user, PASSWORDS[user])
    try:
        assert probe.wait_connected(), f"{user} could not log in: {broker.log[-500:]}"
        for topic in topics:
            probe.subscribe(topic)
        yield probe
    finally:
        probe.close()


def test_site_account_writes_only_its_own_site(secure_broker: SecureBroker) -> None:
    with _probe(secure_broker, "svc.ops", "pdm/v1/#") as spy, _probe(secure_broker, "oslo-north") as gw:
        own = [f"pdm/v1/oslo-north/hp-1/{leaf}" for leaf in ("telemetry", "alert", "state", "deadletter")]
        own += ["pdm/v1/oslo-north/gateway/gw-17/status", "pdm/v1/oslo-north/gateway/gw-17/link"]
        foreign = [topic.replace("oslo-north", "bergen-1") for topic in own]
        foreign += ["pdm/v1/oslo-north/hp-1/cmd", "pdm/v1/other/x", "pdm/v2/oslo-north/hp-1/alert"]
        assert {topic: gw.publish(topic, b"own") for topic in own} == dict.fromkeys(own, 0)
        assert {topic: gw.publish(topic, b"forged") for topic in foreign} == dict.fromkeys(foreign, NOT_AUTHORIZED)
        gw.publish("pdm/v1/oslo-north/hp-1/alert", b"end")
        seen = spy.collect(until=b"end")
    assert sorted(t for t, p in seen if p == b"own") == sorted(own)
    assert [t for t, p in seen if p == b"forged"] == []


def test_no_gateway_writes_another_sites_gateway_status(secure_broker: SecureBroker) -> None:
    with _probe(secure_broker, "bergen-1") as gw18:
        assert gw18.publish("pdm/v1/oslo-north/gateway/gw-17/status", b'{"status":"offline"}') == NOT_AUTHORIZED
        assert gw18.publish("pdm/v1/bergen-1/gateway/gw-18/status", b'{"status":"online"}') in ACCEPTED


def test_only_service_accounts_write_commands_and_each_site_reads_its_own(secure_broker: SecureBroker) -> None:
    with _probe(secure_broker, "oslo-north", "pdm/v1/+/+/cmd") as oslo, \
            _probe(secure_broker, "bergen-1", "pdm/v1/+/+/cmd") as bergen, \
            _probe(secure_broker, "svc.cloud-bridge") as bridge, _probe(secure_broker, "svc.ops") as ops:
        assert oslo.publish("pdm/v1/oslo-north/hp-1/cmd", b"self-command") == NOT_AUTHORIZED
        assert bergen.publish("pdm/v1/oslo-north/hp-1/cmd", b"cross-command") == NOT_AUTHORIZED
        assert bridge.publish("pdm/v1/oslo-north/hp-1/cmd", b"from-bridge") == 0
        assert ops.publish("pdm/v1/oslo-north/hp-1/cmd", b"from-ops") == 0
        assert ops.publish("pdm/v1/bergen-1/hp-9/cmd", b"bergen-end") == 0
        assert [p for _t, p in oslo.collect(until=b"from-ops")] == [b"from-bridge", b"from-ops"]
        assert [p for _t, p in bergen.collect(until=b"bergen-end")] == [b"bergen-end"], "bergen-1 read oslo-north"


def test_bridge_account_reads_every_site_but_writes_no_alerts(secure_broker: SecureBroker) -> None:
    with _probe(secure_broker, "svc.cloud-bridge", "$share/bridge/pdm/v1/+/+/alert") as bridge, \
            _probe(secure_broker, "oslo-north", "pdm/v1/+/+/alert") as oslo, \
            _probe(secure_broker, "bergen-1") as bergen:
        assert bridge.publish("pdm/v1/oslo-north/hp-1/alert", b"forged-by-bridge") == NOT_AUTHORIZED
        bergen.publish("pdm/v1/bergen-1/hp-9/alert", b"b")
        oslo.publish("pdm/v1/oslo-north/hp-1/alert", b"a")
        got = {p for _t, p in (bridge.messages.get(timeout=10)[:2] for _ in range(2))}
        assert [p for _t, p in oslo.collect(until=b"a")] == [b"a"], "a site account reads only its own site"
    assert got == {b"a", b"b"}


def test_sensor_account_publishes_telemetry_only(secure_broker: SecureBroker) -> None:
    with _probe(secure_broker, "sensors.oslo-north") as sensors:
        assert sensors.publish("pdm/v1/oslo-north/hp-1/telemetry", b"{}") in ACCEPTED
        assert sensors.publish("pdm/v1/oslo-north/hp-1/alert", b"{}") == NOT_AUTHORIZED
        assert sensors.publish("pdm/v1/bergen-1/hp-9/telemetry", b"{}") == NOT_AUTHORIZED
        # The patterns grant a dotted service name only topics under its own name, which is no site.
        assert sensors.publish("pdm/v1/sensors.oslo-north/x/alert", b"{}") in ACCEPTED


def test_wrong_password_and_anonymous_are_refused(secure_broker: SecureBroker) -> None:
    wrong = Probe(secure_broker.port, secure_broker.ca_file, "oslo-north", "not-the-password")
    try:
        assert not wrong.wait_connected() and wrong.connect_code in (0x86, 0x87)
    finally:
        wrong.close()
    anonymous = Probe(secure_broker.port, secure_broker.ca_file, "", "")
    try:
        assert not anonymous.wait_connected()
    finally:
        anonymous.close()


def test_stock_debian_config_accepts_the_drop_in(secure_broker: SecureBroker) -> None:
    conf = (secure_broker.root / "etc/mosquitto/mosquitto.conf").read_text()
    assert "include_dir" in conf and "persistence_location" in conf, "not Debian's stock mosquitto.conf"
    assert "Duplicate" not in secure_broker.log and "mosquitto version 2" in secure_broker.log
