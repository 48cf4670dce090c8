"""Contract suite over every desk adapter, against the real desk simulator.

Each adapter must map open / update / resolve / reopen onto its desk's verbs, treat 4xx as
permanent (dead letter with the reason), and survive 429, 5xx, dropped connections and timeouts
with retries that never create a second ticket.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from cloud_bridge.app import BridgeApp
from simulators.desk.server import DeskSimulator
from tests.bridge.samples import DESK_KINDS, FIRST_SEEN, alert, desk_settings


def _life_of_one_alert(app: BridgeApp) -> None:
    ms = int(FIRST_SEEN.timestamp() * 1000)
    recent = [{"metric": "suction_pressure_bar", "expected": 2.9,
               "points": [[ms - 60_000 * i, 2.9 - 0.01 * i] for i in range(30)]}]
    for event in (alert(1, recent=recent), alert(2), alert(3, event="resolved", status="resolved"),
                  alert(4, status="reopened")):
        app.consumer.accept(event)
        assert app.drain(20.0), app.outbox_stats()


@pytest.mark.parametrize("kind", DESK_KINDS)
def test_open_update_resolve_reopen_shapes(kind: str, bridge: Callable[..., BridgeApp],
                                           desk_sim: DeskSimulator) -> None:
    app = bridge(kind)
    _life_of_one_alert(app)
    tickets = desk_sim.tickets(kind)
    ops = [h["op"] for t in tickets for h in t["history"]]
    assert ops[0] == "create" and "resolve" in ops
    first = tickets[0]["history"][0]["body"]
    text = str(first)
    assert "hp-0042" in text and ("refrigerant" in text)
    if kind == "pagerduty":
        # PagerDuty: a trigger after resolve is a new incident under the same dedup_key, by design.
        assert [len(t["history"]) for t in tickets] == [3, 1]
        assert first["payload"]["severity"] in {"critical", "error", "warning", "info"}
        assert {t["dedup_key"] for t in tickets} == {alert().alert_id}
    else:
        assert len(tickets) == 1, tickets
        assert ops[-1] in {"reopen", "comment"} and "reopen" in ops
    row = app.outbox.ticket(alert().alert_id)
    assert row is not None and row.ticket_ref and row.resolved_at is None  # reopened: a live promise again
    if kind == "zendesk":
        assert any("uploads" in str(h["body"]) for h in tickets[0]["history"])  # the PNG went along


@pytest.mark.parametrize("kind", DESK_KINDS)
def test_timeouts_5xx_and_drops_are_retried_without_duplicates(kind: str, bridge: Callable[..., BridgeApp],
                                                               desk_sim: DeskSimulator) -> None:
    desk_sim.set_faults(timeout_hold_s=1.5)
    desk_sim.fail_next([{"outcome": "timeout"}, {"status": 503}, {"outcome": "drop"}, {"status": 502}])
    over = {"desks": {"main": desk_settings(kind, desk_sim.url, timeout_s=0.5)}}
    app = bridge(kind, **over)
    app.consumer.accept(alert(1))
    assert app.drain(30.0)
    app.consumer.accept(alert(2, event="resolved", status="resolved"))
    assert app.drain(30.0)
    tickets = desk_sim.tickets(kind)
    assert len(tickets) == 1, [t["history"] for t in tickets]
    assert [h["op"] for h in tickets[0]["history"]][-1] == "resolve"
    assert app.dispatcher.stats.desk("main").retried >= 3
    assert app.outbox_stats().dead_letters == 0


def test_429_retry_after_is_honoured(bridge: Callable[..., BridgeApp], desk_sim: DeskSimulator) -> None:
    desk_sim.fail_next([{"status": 429, "retry_after": 1}])
    app = bridge("webhook")
    app.consumer.accept(alert(1))
    assert app.drain(20.0)
    hits = [r for r in desk_sim.requests() if r["path"].startswith("/webhook")]
    assert [r["status"] for r in hits] == [429, 201]
    gap = datetime.fromisoformat(hits[1]["at"]) - datetime.fromisoformat(hits[0]["at"])
    # base_s is 0.05 s, so only the server's Retry-After can make the gap this long.
    assert gap.total_seconds() >= 0.95
    assert len(desk_sim.tickets("webhook")) == 1


@pytest.mark.parametrize("kind", DESK_KINDS)
def test_auth_refusal_is_permanent_and_dead_lettered(kind: str, bridge: Callable[..., BridgeApp],
                                                     desk_sim: DeskSimulator) -> None:
    bad = {"webhook": {"hmac_secret": "wrong"}, "pagerduty": {"token": "f" * 32}}.get(kind, {"token": "wrong"})
    app = bridge(kind, desks={"main": desk_settings(kind, desk_sim.url, **bad)})
    app.consumer.accept(alert(1))
    assert app.drain(20.0)
    dead = app.outbox.dead_letters()
    assert len(dead) == 1 and dead[0].reason.startswith(("http_401", "http_400"))
    assert app.dispatcher.stats.desk("main").retried == 0
    assert desk_sim.tickets(kind) == []
