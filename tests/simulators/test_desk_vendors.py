"""PagerDuty, Zendesk, Jira Service Management and ServiceNow as the desk simulator speaks them (real httpx)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from simulators.desk import DeskCredentials, DeskSimulator

CREDS = DeskCredentials()
ZENDESK_AUTH = (f"{CREDS.zendesk_email}/token", CREDS.zendesk_api_token)
JIRA_AUTH = (CREDS.jira_email, CREDS.jira_api_token)
SNOW_AUTH = (CREDS.servicenow_user, CREDS.servicenow_password)
ALERT = "hp-0042:2026-01-14T03:10:00Z:refrigerant"


DESK_SEED = 5


def ops(sim: DeskSimulator, desk: str) -> list[list[str]]:
    return [[h["op"] for h in t["history"]] for t in sim.tickets(desk)]


# -- PagerDuty Events v2 ---------------------------------------------------------------------------------------------

def pd_event(action: str, dedup_key: str | None = ALERT, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"routing_key": CREDS.pagerduty_routing_key, "event_action": action, **extra}
    if dedup_key is not None:
        event["dedup_key"] = dedup_key
    if action == "trigger":
        event.setdefault("payload", {"summary": "hp-0042 refrigerant leak", "source": "gw-17/hp-0042",
                                     "severity": "critical", "custom_details": {"score": 0.97}})
    return event


def test_pagerduty_trigger_twice_appends_then_resolve_closes(client: httpx.Client, sim: DeskSimulator) -> None:
    first = client.post("/v2/enqueue", json=pd_event("trigger"))
    assert first.status_code == 202
    assert first.json() == {"status": "success", "message": "Event processed", "dedup_key": ALERT}
    assert client.post("/v2/enqueue", json=pd_event("trigger")).status_code == 202
    assert client.post("/v2/enqueue", json=pd_event("acknowledge")).status_code == 202
    assert client.post("/v2/enqueue", json=pd_event("resolve")).status_code == 202
    [incident] = sim.tickets("pagerduty")
    assert incident["status"] == "resolved"
    assert incident["fields"]["alert_count"] == 2
    assert ops(sim, "pagerduty") == [["create", "update", "acknowledge", "resolve"]]


def test_pagerduty_trigger_after_resolve_opens_a_new_incident(client: httpx.Client, sim: DeskSimulator) -> None:
    client.post("/v2/enqueue", json=pd_event("trigger"))
    client.post("/v2/enqueue", json=pd_event("resolve"))
    client.post("/v2/enqueue", json=pd_event("trigger"))
    assert [t["status"] for t in sim.tickets("pagerduty")] == ["resolved", "triggered"]


def test_pagerduty_accepts_links_and_https_images_and_generates_dedup_key(client: httpx.Client) -> None:
    event = pd_event("trigger", dedup_key=None, links=[{"href": "https://dash.example/hp-0042", "text": "asset"}],
                     images=[{"src": "https://plots.example/hp-0042.png", "alt": "suction pressure"}])
    answer = client.post("/v2/enqueue", json=event)
    assert answer.status_code == 202
    assert len(answer.json()["dedup_key"]) == 32


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"routing_key": "short"}, "routing_key"),
        ({"routing_key": "f" * 32}, "Invalid routing key"),
        ({"event_action": "explode"}, "event_action"),
        ({"dedup_key": "k" * 256}, "dedup_key"),
        ({"payload": {"summary": "s" * 1025, "source": "x", "severity": "critical"}}, "summary"),
        ({"payload": {"summary": "s", "source": "x", "severity": "fatal"}}, "severity"),
        ({"payload": {"summary": "s", "severity": "info"}}, "source"),
        ({"images": [{"src": "http://insecure.example/p.png"}]}, "HTTPS"),
    ],
)
def test_pagerduty_invalid_events_are_400(client: httpx.Client, sim: DeskSimulator, change: dict[str, Any],
                                          expected: str) -> None:
    answer = client.post("/v2/enqueue", json={**pd_event("trigger"), **change})
    assert answer.status_code == 400
    assert answer.json()["status"] == "invalid event"
    assert any(expected in e for e in answer.json()["errors"])
    assert sim.tickets() == []


def test_pagerduty_resolve_of_unknown_key_is_accepted_and_ignored(client: httpx.Client, sim: DeskSimulator) -> None:
    assert client.post("/v2/enqueue", json=pd_event("resolve", dedup_key="unknown")).status_code == 202
    assert sim.tickets() == []


# -- Zendesk ----------------------------------------------------------------------------------------------------------

def zd_ticket(**extra: Any) -> dict[str, Any]:
    return {"ticket": {"subject": "hp-0042: refrigerant leak suspected", "priority": "urgent", "external_id": ALERT,
                       "tags": ["pdm", "refrigerant_leak"], "comment": {"body": "Diagnosis…", "public": False},
                       **extra}}


def test_zendesk_create_update_solve_reopen(client: httpx.Client, sim: DeskSimulator) -> None:
    created = client.post("/api/v2/tickets", json=zd_ticket(), auth=ZENDESK_AUTH)
    assert created.status_code == 201
    ticket = created.json()["ticket"]
    assert (ticket["status"], ticket["external_id"], ticket["description"]) == ("new", ALERT, "Diagnosis…")
    assert created.headers["Location"] == f"/api/v2/tickets/{ticket['id']}.json"
    path = f"/api/v2/tickets/{ticket['id']}"
    comment = client.put(path, json={"ticket": {"comment": {"body": "worse", "public": False}}}, auth=ZENDESK_AUTH)
    assert comment.status_code == 200
    solved = client.put(path, json={"ticket": {"status": "solved", "comment": {"body": "ok"}}}, auth=ZENDESK_AUTH)
    assert solved.json()["ticket"]["status"] == "solved"
    reopened = client.put(path, json={"ticket": {"status": "open", "comment": {"body": "fix not confirmed"}}},
                          auth=ZENDESK_AUTH)
    assert reopened.json()["ticket"]["status"] == "open"
    assert client.get(path, auth=ZENDESK_AUTH).json()["ticket"]["status"] == "open"
    assert ops(sim, "zendesk") == [["create", "comment", "resolve", "reopen"]]


def test_zendesk_idempotency_key_replays_with_lookup_hit(client: httpx.Client, sim: DeskSimulator) -> None:
    headers = {"Idempotency-Key": ALERT}
    first = client.post("/api/v2/tickets", json=zd_ticket(), auth=ZENDESK_AUTH, headers=headers)
    again = client.post("/api/v2/tickets", json=zd_ticket(), auth=ZENDESK_AUTH, headers=headers)
    assert first.headers["x-idempotency-lookup"] == "miss"
    assert again.headers["x-idempotency-lookup"] == "hit"
    assert again.json() == first.json()
    assert len(sim.tickets("zendesk")) == 1
    other = client.post("/api/v2/tickets", json=zd_ticket(subject="changed"), auth=ZENDESK_AUTH, headers=headers)
    assert other.status_code == 400
    assert other.json()["error"] == "IdempotentRequestError"


def test_zendesk_lookup_by_external_id(client: httpx.Client) -> None:
    client.post("/api/v2/tickets", json=zd_ticket(), auth=ZENDESK_AUTH)
    client.post("/api/v2/tickets", json=zd_ticket(external_id="other"), auth=ZENDESK_AUTH)
    search = client.get("/api/v2/search.json", params={"query": f'type:ticket external_id:"{ALERT}"'},
                        auth=ZENDESK_AUTH).json()
    assert search["count"] == 1
    assert search["results"][0]["result_type"] == "ticket"
    listed = client.get("/api/v2/tickets.json", params={"external_id": ALERT}, auth=ZENDESK_AUTH).json()
    assert [t["external_id"] for t in listed["tickets"]] == [ALERT]


def test_zendesk_upload_token_attaches_to_a_comment(client: httpx.Client, sim: DeskSimulator) -> None:
    upload = client.post("/api/v2/uploads.json", params={"filename": "plot.png"}, content=b"\x89PNG fake",
                         headers={"Content-Type": "image/png"}, auth=ZENDESK_AUTH)
    assert upload.status_code == 201
    token = upload.json()["upload"]["token"]
    created = client.post("/api/v2/tickets", json=zd_ticket(comment={"body": "see plot", "uploads": [token]}),
                          auth=ZENDESK_AUTH)
    assert created.status_code == 201
    bad = client.post("/api/v2/tickets", json=zd_ticket(comment={"body": "x", "uploads": ["nope"]}),
                      auth=ZENDESK_AUTH)
    assert bad.status_code == 422
    assert len(sim.tickets("zendesk")) == 1


def test_zendesk_bearer_auth_and_refusals(client: httpx.Client) -> None:
    bearer = {"Authorization": f"Bearer {CREDS.zendesk_bearer_token}"}
    assert client.post("/api/v2/tickets", json=zd_ticket(), headers=bearer).status_code == 201
    assert client.post("/api/v2/tickets", json=zd_ticket(), auth=("bridge@example.com/token", "x")).status_code == 401
    assert client.get("/api/v2/tickets/999", auth=ZENDESK_AUTH).status_code == 404
    no_comment = {"ticket": {"subject": "s"}}
    assert client.post("/api/v2/tickets", json=no_comment, auth=ZENDESK_AUTH).status_code == 422


# -- Jira Service Management ------------------------------------------------------------------------------------------

def jsm_request(label: str = "pdm-hp-0042-refrigerant") -> dict[str, Any]:
    return {"serviceDeskId": "1", "requestTypeId": "10",
            "requestFieldValues": {"summary": "hp-0042 refrigerant leak", "description": "Diagnosis…",
                                   "labels": [label]}}


def test_jsm_create_find_comment_resolve_reopen(client: httpx.Client, sim: DeskSimulator) -> None:
    created = client.post("/rest/servicedeskapi/request", json=jsm_request(), auth=JIRA_AUTH)
    assert created.status_code == 201
    key = created.json()["issueKey"]
    assert created.json()["currentStatus"]["statusCategory"] == "NEW"
    found = client.get("/rest/api/3/search/jql", params={"jql": 'labels = "pdm-hp-0042-refrigerant"'},
                       auth=JIRA_AUTH).json()
    assert [i["key"] for i in found["issues"]] == [key]
    legacy = client.get("/rest/api/3/search", params={"jql": "labels = pdm-hp-0042-refrigerant AND "
                                                             "statusCategory != Done"}, auth=JIRA_AUTH).json()
    assert legacy["total"] == 1
    base = f"/rest/servicedeskapi/request/{key}"
    comment = client.post(f"{base}/comment", json={"body": "worse", "public": False}, auth=JIRA_AUTH)
    assert comment.status_code == 201
    [resolve] = client.get(f"{base}/transition", auth=JIRA_AUTH).json()["values"]
    done = client.post(f"{base}/transition", json={"id": resolve["id"], "additionalComment": {"body": "fixed"}},
                       auth=JIRA_AUTH)
    assert done.status_code == 204
    assert client.get(base, auth=JIRA_AUTH).json()["currentStatus"]["statusCategory"] == "DONE"
    assert client.post(f"{base}/transition", json={"id": resolve["id"]}, auth=JIRA_AUTH).status_code == 400
    [reopen] = client.get(f"{base}/transition", auth=JIRA_AUTH).json()["values"]
    assert client.post(f"{base}/transition", json={"id": reopen["id"]}, auth=JIRA_AUTH).status_code == 204
    assert ops(sim, "jsm") == [["create", "comment", "resolve", "reopen"]]
    assert sim.tickets("jsm")[0]["labels"] == ["pdm-hp-0042-refrigerant"]


def test_jsm_refusals(client: httpx.Client) -> None:
    assert client.post("/rest/servicedeskapi/request", json=jsm_request(), auth=("x", "y")).status_code == 401
    assert client.post("/rest/servicedeskapi/request", json={"serviceDeskId": "1"}, auth=JIRA_AUTH).status_code == 400
    assert client.get("/rest/servicedeskapi/request/PDM-99", auth=JIRA_AUTH).status_code == 404
    unsupported = client.get("/rest/api/3/search/jql", params={"jql": "text ~ pump"}, auth=JIRA_AUTH)
    assert unsupported.status_code == 400
    assert unsupported.json()["errorMessages"]


# -- ServiceNow Table API ---------------------------------------------------------------------------------------------

def test_servicenow_lookup_create_work_note_resolve(client: httpx.Client, sim: DeskSimulator) -> None:
    table = "/api/now/table/incident"
    query = {"sysparm_query": f"correlation_id={ALERT}", "sysparm_limit": "1"}
    assert client.get(table, params=query, auth=SNOW_AUTH).json() == {"result": []}
    created = client.post(table, json={"short_description": "hp-0042 refrigerant leak", "correlation_id": ALERT,
                                       "urgency": 1, "impact": 2}, auth=SNOW_AUTH)
    assert created.status_code == 201
    record = created.json()["result"]
    assert record["number"] == "INC0010001"
    assert (record["state"], record["urgency"]) == ("1", "1")
    assert len(record["sys_id"]) == 32
    [found] = client.get(table, params=query, auth=SNOW_AUTH).json()["result"]
    assert found["sys_id"] == record["sys_id"]
    path = f"{table}/{record['sys_id']}"
    assert client.patch(path, json={"work_notes": "worse"}, auth=SNOW_AUTH).status_code == 200
    refused = client.patch(path, json={"state": "6"}, auth=SNOW_AUTH)
    assert refused.status_code == 403
    assert "Data Policy Exception" in refused.json()["error"]["detail"]
    resolved = client.patch(path, json={"state": 6, "close_code": "Solution provided", "close_notes": "ok"},
                            auth=SNOW_AUTH)
    assert resolved.json()["result"]["state"] == "6"
    assert client.get(path, auth=SNOW_AUTH).json()["result"]["active"] == "false"
    assert ops(sim, "servicenow") == [["create", "comment", "resolve"]]
    assert sim.tickets("servicenow")[0]["correlation_id"] == ALERT


def test_servicenow_fields_limit_and_refusals(client: httpx.Client) -> None:
    table = "/api/now/table/incident"
    for n in range(3):
        client.post(table, json={"short_description": f"n{n}", "correlation_id": "same"}, auth=SNOW_AUTH)
    page = client.get(table, params={"correlation_id": "same", "sysparm_limit": "2", "sysparm_offset": "1",
                                     "sysparm_fields": "number,short_description"}, auth=SNOW_AUTH)
    assert page.json()["result"] == [{"number": "INC0010002", "short_description": "n1"},
                                     {"number": "INC0010003", "short_description": "n2"}]
    bearer = {"Authorization": f"Bearer {CREDS.servicenow_bearer_token}"}
    assert client.get(table, headers=bearer).status_code == 200
    assert client.get(table, auth=("pdm.bridge", "wrong")).status_code == 401
    assert client.post("/api/now/table/problem", json={"a": "b"}, auth=SNOW_AUTH).status_code == 400
    assert client.patch(f"{table}/{'0' * 32}", json={"a": "b"}, auth=SNOW_AUTH).status_code == 404
    silent = client.post(table, json={"short_description": "quiet"}, auth=SNOW_AUTH,
                         headers={"X-no-response-body": "true"})
    assert (silent.status_code, silent.content) == (201, b"")
