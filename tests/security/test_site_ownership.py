"""Site ownership end to end (#14.1, #14.6): a gateway speaks only for its own site.

The real owner of site bergen-1 is gw-18; gw-17 serves oslo-north (the shipped ACL). gw-18 opens an
alert; forged events try to resolve or poison it; then gw-18's own later events must still land, and
the ticket must carry exactly gw-18's history. Each attack goes through the shipped Mosquitto and the
real ``cloud-bridge run`` to the desk simulator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pdm_common.contracts import AlertEvent
from tests.bridge.samples import alert
from tests.rig import Sensors, Service, bridge_config, check_tickets, metric
from tests.rig_fixtures import Rig
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

OWNER, OWNER_SITE = "gw-18", "bergen-1"
INTRUDER = "gw-17"
ACCOUNT = {"gw-17": "oslo-north", "gw-18": "bergen-1"}
"""Each gateway logs in to the broker with its site's account (config/mosquitto/acl)."""


@dataclass
class Bridge:
    rig: Rig
    service: Service
    port: int

    def publish(self, gateway: str, topic: str, payload: bytes, *, may_be_refused: bool = False) -> None:
        """Publish at QoS 1; a PUBACK the broker refuses (ACL) never reaches the adapter's callback."""
        with Sensors(self.rig.broker.settings(ACCOUNT[gateway])) as pub:
            assert pub.try_send(topic, payload, timeout_s=2.0 if may_be_refused else 30.0) or may_be_refused

    def owner_event(self, tag: str, seq: int, *, event: str | None = None, secret: str | None = None,
                    key_id: str = OWNER, **over: Any) -> AlertEvent:
        ev = alert(seq, alert_id=f"hp-9{tag}:2026-01-14T03:10:00Z:refrigerant_leak", site=OWNER_SITE,
                   agent={"gateway": OWNER, "version": "0.3.0"}, **({"event": event} if event else {}), **over)
        return ev.signed(key_id=key_id, secret=secret or self.rig.keys.gateway_b, msg_id=f"{tag}-{seq}",
                         now_s=1_770_000_000 + seq)


@pytest.fixture(scope="module")
def bridge(module_rig: Rig) -> Iterator[Bridge]:
    cfg, port = bridge_config(module_rig.workdir, module_rig.broker, module_rig.keys, module_rig.desk.url)
    # Ready means subscribed: the rig's broker has no session for the bridge yet, so an event published
    # before the SUBACK would be dropped (CI saw exactly that when only the metrics endpoint was awaited).
    service = Service.bridge(cfg, module_rig.workdir).start()
    service.wait_ready()
    yield Bridge(module_rig, service, port)
    assert service.stop() == 0


def _topic(ev: AlertEvent, site: str | None = None) -> str:
    return f"pdm/v1/{site or ev.site}/{ev.asset}/alert"


def _history(b: Bridge, alert_id: str) -> list[int]:
    report = check_tickets(b.rig.desk.tickets("webhook"), {alert_id: []})
    tickets = [t for t in b.rig.desk.tickets("webhook") if t["dedup_key"] == alert_id]
    assert not report.duplicates, report
    return [int(h["body"]["event_seq"]) for t in tickets for h in t["history"]]


def _attack(b: Bridge, tag: str, forge: Callable[[Bridge, AlertEvent], None]) -> list[int]:
    """Owner opens ``tag``'s alert, ``forge`` attacks it, the owner sends 2 and resolves with 3."""
    opened = b.owner_event(tag, 1)
    b.publish(OWNER, _topic(opened), opened.to_json())
    assert wait_until(lambda: _history(b, opened.alert_id) == [1], 20), b.service.log()[-2000:]
    forge(b, opened)
    for seq, event in ((2, "updated"), (3, "resolved")):
        ev = b.owner_event(tag, seq, event=event)
        b.publish(OWNER, _topic(ev), ev.to_json())
    # Either the owner's resolve lands, or a forged seq 1000 made it stale; then let deliveries settle.
    assert wait_until(lambda: bool({3, 1000} & set(_history(b, opened.alert_id))), 20), b.service.log()[-2000:]
    wait_until(lambda: metric(b.port, "pdm_bridge_outbox_depth") == 0.0, 10)
    return _history(b, opened.alert_id)


def _resolve_1000(b: Bridge, opened: AlertEvent, **over: Any) -> AlertEvent:
    return opened.model_copy(update={"event": "resolved", "event_seq": 1000, "auth": None, **over})


def test_foreign_gateway_cannot_publish_on_the_owners_topic(bridge: Bridge) -> None:
    # The broker's ACL: gw-17 may not write under bergen-1 (PUBACK comes, the message is dropped).
    def forge(b: Bridge, opened: AlertEvent) -> None:
        forged = _resolve_1000(b, opened).signed(key_id=INTRUDER, secret=b.rig.keys.gateway, msg_id="f-1",
                                                 now_s=1_770_000_100)
        b.publish(INTRUDER, _topic(forged), forged.to_json(), may_be_refused=True)

    assert _attack(bridge, "acl", forge) == [1, 2, 3]


def test_forged_site_in_payload_on_own_topic_is_refused(bridge: Bridge) -> None:
    # gw-17 publishes on its own site's topic a resolve naming bergen-1's alert (the #14.1 attack).
    def forge(b: Bridge, opened: AlertEvent) -> None:
        forged = _resolve_1000(b, opened).signed(key_id=INTRUDER, secret=b.rig.keys.gateway, msg_id="f-2",
                                                 now_s=1_770_000_100)
        b.publish(INTRUDER, _topic(forged, site="oslo-north"), forged.to_json())

    assert _attack(bridge, "own", forge) == [1, 2, 3]


def test_event_signed_by_a_gateway_that_does_not_own_the_site_is_refused(bridge: Bridge) -> None:
    # Defence in depth: the ACL lets a message through (e.g. a misconfigured ACL or a shared account),
    # the signature says gw-17, which does not own bergen-1.
    def forge(b: Bridge, opened: AlertEvent) -> None:
        forged = _resolve_1000(b, opened).signed(key_id=INTRUDER, secret=b.rig.keys.gateway, msg_id="f-3",
                                                 now_s=1_770_000_100)
        b.publish(OWNER, _topic(forged), forged.to_json())

    assert _attack(bridge, "sig", forge) == [1, 2, 3]


def test_unsigned_event_is_refused(bridge: Bridge) -> None:
    def forge(b: Bridge, opened: AlertEvent) -> None:
        forged = _resolve_1000(b, opened)
        b.publish(OWNER, _topic(forged), forged.to_json())

    assert _attack(bridge, "unsigned", forge) == [1, 2, 3]


def test_an_event_seq_jump_does_not_poison_the_alert(bridge: Bridge) -> None:
    # Signed by the real owner (a buggy agent): seq 1000 must not make 2 and 3 stale.
    def forge(b: Bridge, opened: AlertEvent) -> None:
        jump = b.owner_event(opened.asset.removeprefix("hp-9"), 1000, event="updated")
        b.publish(OWNER, _topic(jump), jump.to_json())

    history = _attack(bridge, "jump", forge)
    assert history[:1] == [1] and history[-2:] == [2, 3], history
