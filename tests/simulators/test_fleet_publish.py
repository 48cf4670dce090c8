"""Publishing a run over MQTT against the real test broker."""

from __future__ import annotations

from typing import Literal

import pytest

from pdm_common.contracts import Telemetry
from pdm_common.topics import AssetChannel, Topics
from simulators.broker import free_port
from simulators.fleet import FleetRun, PublishError, generate, load_scenario
from simulators.fleet.publish import publish_run
from tests.conftest import BrokerInfo
from tests.mqtt_helpers import Recorder
from tests.simulators.test_fleet_support import SEED, TINY


@pytest.fixture(scope="module")
def small_run() -> FleetRun:
    scenario = load_scenario(TINY).model_copy(update={"days": 0.02, "faults": [], "sensor_faults": []})
    return generate(scenario, SEED)


@pytest.mark.parametrize("qos", [0, 1])
def test_every_record_arrives_as_valid_telemetry(
    mqtt_broker: BrokerInfo, small_run: FleetRun, qos: Literal[0, 1]
) -> None:
    prefix = f"fleettest{qos}"
    progress: list[tuple[int, int]] = []
    with Recorder(mqtt_broker.settings(), Topics(prefix).all_assets(AssetChannel.TELEMETRY)) as rec:
        sent = publish_run(
            small_run,
            mqtt_broker.host,
            mqtt_broker.port,
            protocol=mqtt_broker.protocol,
            topic_prefix=prefix,
            qos=qos,
            progress=lambda d, t: progress.append((d, t)),
        )
        assert sent == small_run.n_records
        assert rec.wait_for(lambda msgs: len(msgs) >= sent, timeout_s=30)
    assert progress[-1] == (sent, sent)
    topics = Topics(prefix)
    first = rec.messages[0]
    parsed = topics.parse(first.topic)
    telemetry = Telemetry.from_wire(parsed.site, parsed.asset, first.payload)
    assert telemetry.kind in {"heat_pump", "pump"}
    assert {(topics.parse(m.topic).asset, Telemetry.from_wire("s", "a", m.payload).seq) for m in rec.messages} == {
        (r["asset"], r["seq"]) for r in small_run.iter_records()
    }


def test_paced_publish_delivers_everything(mqtt_broker: BrokerInfo, small_run: FleetRun) -> None:
    span_s = small_run.plan.scenario.days * 86400
    # Pace so the whole run takes about half a second of wall time; completion, not timing, is asserted.
    sent = publish_run(
        small_run,
        mqtt_broker.host,
        mqtt_broker.port,
        protocol=mqtt_broker.protocol,
        topic_prefix="fleetpaced",
        qos=1,
        speed=span_s / 0.5,
    )
    assert sent == small_run.n_records


def test_unreachable_broker_is_a_publish_error(small_run: FleetRun) -> None:
    with pytest.raises(PublishError, match=r"cannot reach|refused"):
        publish_run(small_run, "127.0.0.1", free_port(), protocol="3.1.1")


def test_speed_must_be_positive(small_run: FleetRun) -> None:
    with pytest.raises(ValueError, match="speed"):
        publish_run(small_run, "127.0.0.1", 1, speed=0.0)
