"""Contract suite over every desk adapter of ``cloud_bridge.desks.ADAPTERS``, against the real desk simulator.

Each adapter must carry an alert through the agent's real event order (opened → updated → verifying
→ reopened "fix not confirmed" → recovering → resolved; edge_agent/lifecycle/machine.py) into the
desk states docs/bridge.md documents, under timeouts, dropped connections, a restart and duplicate
deliveries, ending with exactly one ticket (PagerDuty: one incident per page), no note twice and
every request valid against the vendor's API description; treat 4xx as permanent; and stop for an
untrusted TLS certificate as a configuration problem. The desk list comes from the adapter
registry, so a new desk is tested (or fails here, saying what it lacks) without editing this file.
"""

from __future__ import annotations

import re
import ssl
import subprocess
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.app import BridgeApp
from cloud_bridge.desks import ADAPTERS
from cloud_bridge.desks.pagerduty import reopen_key
from pdm_common.contracts import AlertEvent
from simulators.desk.server import DeskSimulator
from tests.bridge.samples import FIRST_SEEN, alert, desk_settings
from tests.bridge.vendor_specs import problems

DESK_KINDS = [kind.value for kind in ADAPTERS]

END_STATE = {
    "webhook": "resolved",
    "pagerduty": "resolved",
    "zendesk": "solved",
    "jsm": "Resolved",
    "servicenow": "6",
}
"""The desk's own status after the alert resolved (docs/bridge.md, lifecycle tables)."""

VERIFYING_STATE = {"webhook": "open", "pagerduty": "acknowledged", "zendesk": "hold", "jsm": "Pending",
                   "servicenow": "6"}
REOPENED_STATE = {"webhook": "open", "pagerduty": "triggered", "zendesk": "open", "jsm": "In progress",
                  "servicenow": "2"}


def agent_life() -> list[AlertEvent]:
    """One alert's events in the order the agent emits them (notes as edge_agent/lifecycle/machine.py writes)."""
    ms = int(FIRST_SEEN.timestamp() * 1000)
    recent = [{"metric": "suction_pressure_bar", "expected": 2.9,
               "points": [[ms - 60_000 * (40 - i), 2.9 - 0.02 * i] for i in range(40)]}]
    at = [FIRST_SEEN + timedelta(hours=h) for h in (0, 2, 30, 40, 60, 80)]
    return [
        alert(1, recent=recent, emitted_at=at[0]),
        alert(2, status="open", note="severity critical", severity="critical", emitted_at=at[1]),
        alert(3, status="verifying", note="serviced; verifying the fix for 48 h", emitted_at=at[2]),
        alert(4, status="reopened", note="fix not confirmed", recent=recent, emitted_at=at[3]),
        alert(5, status="recovering", note="readings back to normal", emitted_at=at[4]),
        alert(6, event="resolved", status="resolved", emitted_at=at[5]),
    ]


def _deliver(app: BridgeApp, event: AlertEvent) -> None:
    app.consumer.accept(event)
    assert app.drain(30.0), (app.outbox_stats(), app.outbox.dead_letters())


def _notes_of(ticket: dict[str, Any]) -> list[str]:
    """Every text the desk holds for the ticket (comments, journal entries, request bodies)."""
    texts = [str(c.get("body") or c.get("value") or "") for c in ticket.get("comments", [])]
    if ticket["desk"] in ("webhook", "pagerduty"):
        texts = [str(h["body"]) for h in ticket["history"]]
    return texts


def _assert_no_note_twice(tickets: list[dict[str, Any]]) -> None:
    markers: Counter[str] = Counter()
    for ticket in tickets:
        if ticket["desk"] == "webhook":  # one message per event, each applied once
            markers.update(f"seq {h['body']['event_seq']}" for h in ticket["history"])
        elif ticket["desk"] == "pagerduty":  # one event per action and key; PagerDuty dedups repeats itself
            markers.update(f"{h['body']['event_action']} {h['body']['dedup_key']} {h['at']}" for h in ticket["history"])
        for text in _notes_of(ticket) if ticket["desk"] not in ("webhook", "pagerduty") else []:
            markers.update(re.findall(r"\[pdm-(?:note|plot) PDM-\w+/\d+\]|PDM-\w+/\d+\.\)", text))
    assert markers and max(markers.values()) == 1, markers.most_common(3)


def _state(desk_sim: DeskSimulator, kind: str) -> str:
    tickets = desk_sim.tickets(kind)
    return str(tickets[-1]["status"])


def test_the_desk_list_is_the_adapter_registry() -> None:
    for kind in DESK_KINDS:
        assert desk_settings(kind, "http://desk.example.com")["kind"] == kind  # samples know every desk
        assert kind in END_STATE and kind in VERIFYING_STATE, f"document {kind}'s lifecycle in END_STATE/…"


@pytest.mark.parametrize("kind", DESK_KINDS)
def test_agent_event_order_with_faults_restart_and_duplicates(kind: str, bridge: Callable[..., BridgeApp],
                                                              desk_sim: DeskSimulator) -> None:
    desk_sim.set_faults(timeout_hold_s=1.2)
    serial = "NA8-2021-004211"
    ci = desk_sim.add_record("cmdb_ci", {"name": "hp-0042", "serial_number": serial})
    over = {"desks": {"main": desk_settings(kind, desk_sim.url, timeout_s=0.5)}}
    app = bridge(kind, **over)
    life = agent_life()
    # a timed-out create (the desk applied it, the answer was lost) and a dropped connection
    desk_sim.fail_next([{"outcome": "timeout"}, {"outcome": "drop"}])
    _deliver(app, life[0])
    app.consumer.accept(life[0])  # the broker redelivers: a duplicate
    _deliver(app, life[1])
    _deliver(app, life[2])
    assert _state(desk_sim, kind) == VERIFYING_STATE[kind]
    app.stop()  # a restart between the service visit and the failed verification
    app = bridge(kind, **over)
    desk_sim.fail_next([{"outcome": "pass"}, {"outcome": "timeout"}])
    _deliver(app, life[3])
    assert _state(desk_sim, kind) == REOPENED_STATE[kind]
    _deliver(app, life[4])
    _deliver(app, life[5])
    _deliver(app, life[5])  # repeated: stale

    tickets = desk_sim.tickets(kind)
    assert app.outbox.dead_letters() == []
    if kind == "pagerduty":
        # The failed repair pages again: the first incident is resolved and a new one triggered.
        assert [t["dedup_key"] for t in tickets] == [life[0].alert_id, reopen_key(life[0].alert_id, 4)]
        assert [t["status"] for t in tickets] == ["resolved", "resolved"]
    else:
        assert len(tickets) == 1, [t["history"][0]["op"] for t in tickets]
        assert tickets[0]["status"] == END_STATE[kind]
    _assert_no_note_twice(tickets)
    assert problems(kind, desk_sim.requests()) == []
    fields = tickets[0]["fields"]
    if kind == "zendesk":
        public = [c for c in tickets[0]["comments"] if c["public"]]
        assert len(public) == 3  # the open message, the apology, the closing message
        assert "+47" not in " ".join(c["body"] for c in public) and fields["requester_id"] != 1
        assert any(c.get("attachments") for c in tickets[0]["comments"])  # the plot
    if kind == "servicenow":
        assert fields["caller_id"] and fields["cmdb_ci"] == ci and fields["reopen_count"] == "1"
    if kind == "jsm":
        assert fields["reporter"]["accountId"].startswith("qm:")  # raised on behalf of the customer


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


def test_429_retry_after_is_honoured(bridge: Callable[..., BridgeApp], desk_sim: DeskSimulator) -> None:
    from datetime import datetime

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


def test_jira_search_lag_does_not_duplicate_a_create_whose_answer_was_lost(
    bridge: Callable[..., BridgeApp], desk_sim: DeskSimulator
) -> None:
    desk_sim.set_faults(timeout_hold_s=1.2)
    desk_sim.set_settings(search_lag_s=2.0)
    over = {"desks": {"main": desk_settings("jsm", desk_sim.url, timeout_s=0.5, search_consistency_s=4.0)}}
    app = bridge("jsm", **over)
    # user search, fields, create (times out: applied, answer lost)
    desk_sim.fail_next([{"outcome": "pass"}, {"outcome": "pass"}, {"outcome": "pass"}, {"outcome": "pass"},
                        {"outcome": "timeout"}])
    _deliver(app, alert(1))
    assert len(desk_sim.tickets("jsm")) == 1
    assert any(r["path"] == "/rest/api/3/search/jql" for r in desk_sim.requests())


def test_a_required_field_the_bridge_cannot_fill_is_named(bridge: Callable[..., BridgeApp],
                                                          desk_sim: DeskSimulator, tmp_path: Path) -> None:
    app = bridge("jsm", desks={"main": desk_settings("jsm", desk_sim.url, request_type_id="11")})
    app.consumer.accept(alert(1))
    assert app.drain(20.0)
    [dead] = app.outbox.dead_letters()
    assert "customfield_10050 (Site)" in dead.reason and "request_fields" in dead.reason
    mapped = bridge("jsm", desks={"main": desk_settings("jsm", desk_sim.url, request_type_id="11",
                                                        request_fields={"customfield_10050": "{site}"})},
                    outbox={"path": tmp_path / "second.db", "lease_s": 5.0})
    mapped.consumer.accept(alert(1, alert_id="hp-0042:2026-01-15T00:00:00Z:low_flow"))
    assert mapped.drain(20.0) and mapped.outbox.dead_letters() == []


@pytest.fixture(scope="module")
def untrusted_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server-side TLS context with a self-signed certificate no client trusts."""
    folder: Path = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(folder / "k.pem"),
                    "-out", str(folder / "c.pem"), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "c.pem", folder / "k.pem")
    return context


def test_an_untrusted_desk_certificate_is_a_configuration_problem(
    bridge: Callable[..., BridgeApp], untrusted_tls: ssl.SSLContext
) -> None:
    with DeskSimulator(port=0, tls=untrusted_tls) as tls_sim:
        app = bridge("webhook", desks={"main": desk_settings("webhook", tls_sim.url)})
        app.consumer.accept(alert(1))
        from tests.waiting import wait_until

        assert wait_until(lambda: app.dispatcher.stats.desk("main").config_errors >= 1, 20.0)
        assert app.outbox_stats().depth == 1 and app.outbox.dead_letters() == []  # waits for the fix
        [pending] = app.outbox.pending()
        assert pending[5] == 0  # not counted as a failed attempt
        r = app.metrics.registry
        assert r.get_sample_value("pdm_bridge_delivery_failures_total",
                                  {"desk": "main", "reason": "tls_verify_failed"}) == 1
        assert app.dispatcher.stats.desk("main").attempts == 1  # held: not retried every backoff
