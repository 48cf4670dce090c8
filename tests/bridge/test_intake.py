"""Intake: who may speak for a site, seq jumps, poison messages, corrupt outboxes (issues #14, #16)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.app import BridgeApp
from cloud_bridge.consumer import AlertConsumer
from cloud_bridge.outbox import EnqueueResult, Outbox, open_sqlite
from pdm_common.contracts import AlertEvent
from pdm_common.mqtt import InboundMessage
from pdm_common.topics import Topics
from simulators.desk.server import DeskSimulator
from tests.bridge.conftest import bridge_settings
from tests.bridge.samples import alert, gateways, signed
from tests.mqtt_helpers import Publisher
from tests.waiting import wait_until

OTHER_SECRET = "whsec_b3RoZXItZ2F0ZXdheS1rZXktZm9yLXRlc3RzLTEyMzQ1"


def _message(event: AlertEvent | bytes, topic: str | None = None) -> InboundMessage:
    payload = event if isinstance(event, bytes) else event.to_json()
    if topic is None:
        assert isinstance(event, AlertEvent)
        topic = f"pdm/v1/{event.site}/{event.asset}/alert"
    return InboundMessage(topic=topic, payload=payload, qos=1, retain=False, received_at=datetime.now(UTC))


@pytest.fixture
def consumer(tmp_path: Path) -> tuple[AlertConsumer, Outbox]:
    box = open_sqlite(tmp_path / "intake.db", max_events=1000)
    g = {**gateways(), "gw-bergen": {"site": "bergen-1", "secret": OTHER_SECRET}}
    from cloud_bridge.config import GatewaySettings

    c = AlertConsumer(outbox=box, topics=Topics("pdm/v1"), route=lambda _a: "main", on_accepted=lambda: None,
                      clock=lambda: 1.8e9, gateways={k: GatewaySettings.model_validate(v) for k, v in g.items()},
                      require_signed=True, max_seq_step=100)
    return c, box


def test_only_a_gateway_of_the_topics_site_may_speak_for_it(consumer: tuple[AlertConsumer, Outbox]) -> None:
    c, box = consumer
    mine = alert(1)
    bergen = alert(1, site="bergen-1", alert_id="hp-9:2026-01-14T03:10:00Z:low_flow",
                   agent={"gateway": "gw-bergen", "version": "0.3.0"})
    cases: list[tuple[InboundMessage, str]] = [
        (_message(mine), "signature_missing"),
        (_message(signed(mine, secret=OTHER_SECRET)), "signature_mismatch"),
        (_message(signed(mine, key_id="gw-nobody")), "signature_unknown_key"),
        # gw-17 (oslo-north) signs a bergen-1 alert and publishes it on bergen-1's topic
        (_message(signed(bergen)), "site_not_owned"),  # (signed by gw-17 whatever agent.gateway says)
        # ... or on its own topic: the payload and alert_id name bergen-1
        (_message(signed(bergen), "pdm/v1/oslo-north/hp-9/alert"), "site_mismatch"),
        (_message(signed(alert(1, agent={"gateway": "gw-18", "version": "0.3.0"}))), "gateway_mismatch"),
        (_message(b'{"alert_id": 1}', "pdm/v1/oslo-north/hp-0042/alert"), "invalid_field"),
    ]
    for message, _reason in cases:
        c.handle(message)  # acknowledged: no exception
    assert [r.reason for r in box.refused()] == [reason for _, reason in cases]
    c.handle(_message(signed(mine)))
    c.handle(_message(signed(bergen, key_id="gw-bergen", secret=OTHER_SECRET)))
    s = c.stats
    assert (s.received, s.accepted, s.refused) == (len(cases) + 2, 2, len(cases))
    assert s.received == s.accepted + s.stale + s.refused + s.store_failed


def test_a_forged_seq_jump_is_refused_and_cannot_make_the_real_events_stale(
    consumer: tuple[AlertConsumer, Outbox]
) -> None:
    c, box = consumer
    for seq in (1, 2, 3):
        c.handle(_message(signed(alert(seq))))
    c.handle(_message(signed(alert(1000, event="resolved", status="resolved"))))
    assert box.refused()[-1].reason == "seq_jump"
    c.handle(_message(signed(alert(4))))
    assert c.stats.accepted == 4 and c.stats.stale == 0
    assert box.enqueue(alert(5), desk="main", now=1.0, max_seq_step=100) is EnqueueResult.ACCEPTED


def test_a_poison_alert_never_blocks_the_others_also_after_a_restart(
    tmp_path: Path, desk_sim: DeskSimulator, mqtt_broker: Any, bridge: Callable[..., BridgeApp]
) -> None:
    poison = signed(alert(1, alert_id="hp-0042:2026-02-01T00:00:00Z:low_flow")).to_json().replace(
        b'"event_seq":1', b'"event_seq":9223372036854775808')
    topic = "pdm/v1/oslo-north/hp-0042/alert"

    def batch(tag: str, n: int) -> list[bytes]:
        return [signed(alert(1, alert_id=f"hp-{i:04d}:{tag}:low_flow", asset=f"hp-{i:04d}")).to_json()
                for i in range(n)]

    app = bridge("webhook")
    assert app.mqtt.wait_connected(10)
    with Publisher(mqtt_broker.settings()) as pub:
        for payload in batch("a", 3):
            pub.send(topic.replace("hp-0042", _asset(payload)), payload)
        pub.send(topic, poison)
        for payload in batch("b", 10):
            pub.send(topic.replace("hp-0042", _asset(payload)), payload)
        assert wait_until(lambda: len(desk_sim.tickets("webhook")) == 13, 30.0), len(desk_sim.tickets("webhook"))
        app.stop()
        restarted = bridge("webhook")
        assert restarted.mqtt.wait_connected(10)
        pub.send(topic, poison)
        for payload in batch("c", 2):
            pub.send(topic.replace("hp-0042", _asset(payload)), payload)
        assert wait_until(lambda: len(desk_sim.tickets("webhook")) == 15, 30.0)
    assert [r.reason for r in restarted.outbox.refused()] == ["invalid_field", "invalid_field"]


def _asset(payload: bytes) -> str:
    return AlertEvent.model_validate_json(payload).asset


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "wrong_schema"])
def test_a_corrupt_outbox_is_moved_aside_salvaged_and_counted(tmp_path: Path, desk_sim: DeskSimulator,
                                                              mqtt_broker: Any, damage: str) -> None:
    settings = bridge_settings(tmp_path, "webhook", desk_sim.url, mqtt_broker.settings(session_expiry_s=0),
                               share_group="", replica_id=f"salvage-{damage}")
    path = settings.outbox.path
    box = open_sqlite(path, max_events=1000)
    for i in range(30):
        box.enqueue(alert(1, alert_id=f"hp-{i:04d}:s:low_flow", asset=f"hp-{i:04d}"), desk="main", now=1.0)
    box.close()
    raw = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) * 2 // 3])
    elif damage == "garbage":
        path.write_bytes(b"\x00\x13not a database at all" * 200)
    else:
        path.unlink()
        with sqlite3.connect(path) as other:
            other.execute("CREATE TABLE notes (x TEXT)")
    app = BridgeApp(settings)
    try:
        report = app.outbox.salvage
        assert report is not None and report.moved_to.exists()
        r = app.metrics.registry
        assert r.get_sample_value("pdm_bridge_outbox_corrupt_files_total") == 1
        salvaged = report.salvaged("events")
        assert app.outbox_stats().depth == salvaged  # what was read is queued again
        if damage == "truncated":
            assert 0 < salvaged < 30 and salvaged + report.unreadable >= 30  # nothing lost without a count
            kept = {row[1] for row in app.outbox.pending(100)}
            lost = next(a for a in (alert(1, alert_id=f"hp-{i:04d}:s:low_flow", asset=f"hp-{i:04d}")
                                    for i in range(30)) if a.alert_id not in kept)
            assert app.outbox.enqueue(lost, desk="main", now=3.0) is EnqueueResult.ACCEPTED  # re-sent: taken
        else:
            assert salvaged == 0 and (report.unknown_loss or damage == "wrong_schema")
    finally:
        app.stop()


def test_a_corrupt_row_does_not_hold_up_the_rest_of_its_batch(tmp_path: Path) -> None:
    box = open_sqlite(tmp_path / "rows.db", max_events=100)
    for i in range(3):
        box.enqueue(alert(1, alert_id=f"hp-{i:04d}:r:low_flow", asset=f"hp-{i:04d}"), desk="main", now=1.0)
    box.close()
    with sqlite3.connect(tmp_path / "rows.db") as db:
        db.execute("UPDATE events SET payload = '{\"truncated' WHERE alert_id LIKE '%hp-0001%'")
    box = open_sqlite(tmp_path / "rows.db", max_events=100)
    leased = box.lease(owner="a", now=2.0, lease_s=30, limit=10)
    assert sorted(e.alert.asset for e in leased) == ["hp-0000", "hp-0002"]
    [dead] = box.dead_letters()
    assert dead.reason.startswith("corrupt_row") and "hp-0001" in dead.alert_id
    assert box.corrupt_rows == 1
    box.close()
