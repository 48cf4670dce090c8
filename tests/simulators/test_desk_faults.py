"""Fault switches of the desk simulator against a real httpx client, and its /_sim control API."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest

from simulators.desk import DeskCredentials, DeskSimulator, FaultConfig
from simulators.desk.throughput import measure

CREDS = DeskCredentials()
ZENDESK_AUTH = (f"{CREDS.zendesk_email}/token", CREDS.zendesk_api_token)
TICKET = {"ticket": {"subject": "hp-0042", "external_id": "a-1", "comment": {"body": "diagnosis"}}}


DESK_SEED = 42
DESK_AUTH = ZENDESK_AUTH


def create(client: httpx.Client, **kwargs: Any) -> httpx.Response:
    return client.post("/api/v2/tickets", json=TICKET, **kwargs)


def test_rate_429_answers_with_retry_after_and_applies_nothing(client: httpx.Client, sim: DeskSimulator) -> None:
    sim.set_faults(rate_429=1.0, retry_after_s=7)
    answer = create(client)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "7"
    assert answer.json()["error"] == "APIRateLimitExceeded"
    assert sim.tickets() == []


def test_rate_5xx_answers_server_errors_and_applies_nothing(client: httpx.Client, sim: DeskSimulator) -> None:
    sim.set_faults(rate_5xx=1.0)
    statuses = {create(client).status_code for _ in range(12)}
    assert statuses <= {500, 502, 503}
    assert len(statuses) > 1  # the seeded choice spreads over the three codes
    assert sim.tickets() == []


def test_timeout_holds_the_answer_but_applies_so_a_blind_retry_duplicates(client: httpx.Client,
                                                                          sim: DeskSimulator) -> None:
    sim.set_faults(rate_timeout=1.0, timeout_hold_s=2.0)
    with pytest.raises(httpx.ReadTimeout):
        create(client, timeout=0.2)
    sim.set_faults(FaultConfig())
    assert create(client).status_code == 201
    assert [t["external_id"] for t in sim.tickets()] == ["a-1", "a-1"]


def test_timeout_then_retry_with_idempotency_key_does_not_duplicate(client: httpx.Client,
                                                                    sim: DeskSimulator) -> None:
    sim.fail_next([{"outcome": "timeout"}])
    sim.set_faults(timeout_hold_s=2.0)
    with pytest.raises(httpx.ReadTimeout):
        create(client, timeout=0.2, headers={"Idempotency-Key": "a-1"})
    replay = create(client, headers={"Idempotency-Key": "a-1"})
    assert (replay.status_code, replay.headers["x-idempotency-lookup"]) == (201, "hit")
    assert len(sim.tickets()) == 1


def test_rate_drop_closes_the_connection_without_answer(client: httpx.Client, sim: DeskSimulator) -> None:
    sim.set_faults(rate_drop=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        create(client)
    assert sim.tickets() == []
    assert sim.requests()[-1]["status"] is None
    assert sim.requests()[-1]["outcome"] == "drop"


def test_fail_next_queue_is_consumed_in_order_then_normal(client: httpx.Client, sim: DeskSimulator) -> None:
    sim.fail_next([{"status": 429, "retry_after": 2}, {"status": 503}, {"outcome": "drop"}, {"outcome": "pass"},
                   {"status": 502}])
    first = create(client)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "2")
    assert create(client).status_code == 503
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        create(client)
    assert create(client).status_code == 201
    assert create(client).status_code == 502
    assert create(client).status_code == 201
    assert [r["status"] for r in sim.requests()] == [429, 503, None, 201, 502, 201]
    assert len(sim.tickets()) == 2


def test_faults_never_apply_to_sim_endpoints(client: httpx.Client, sim: DeskSimulator) -> None:
    sim.set_faults(rate_5xx=0.5, rate_drop=0.5)
    for path in ("/_sim/health", "/_sim/tickets", "/_sim/requests", "/_sim/faults"):
        assert client.get(path).status_code == 200


def test_post_sim_faults_changes_switches_at_run_time(client: httpx.Client, sim: DeskSimulator) -> None:
    changed = client.post("/_sim/faults", json={"rate_429": 1.0, "retry_after_s": 3,
                                                "fail_next": [{"status": 500}], "seed": 9})
    assert changed.status_code == 200
    state = client.get("/_sim/faults").json()
    assert (state["faults"]["rate_429"], state["fail_next"], state["seed"]) == (1.0, [{"status": 500}], 9)
    assert create(client).status_code == 500
    assert create(client).headers["Retry-After"] == "3"
    client.post("/_sim/reset")
    assert client.get("/_sim/faults").json() == {"faults": FaultConfig().to_json(), "fail_next": [], "seed": 42}
    assert create(client).status_code == 201


@pytest.mark.parametrize(
    "body",
    [{"rate_429": 1.5}, {"rate_429": 0.6, "rate_drop": 0.6}, {"latency": 5}, {"fail_next": [{"status": 200}]},
     {"fail_next": [{"outcome": "explode"}]}, {"seed": "x"}, [1]],
)
def test_post_sim_faults_refuses_invalid_switches(client: httpx.Client, body: Any) -> None:
    answer = client.post("/_sim/faults", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert client.get("/_sim/faults").json()["faults"] == FaultConfig().to_json()


def test_sim_tickets_lists_duplicates_with_ordered_history(client: httpx.Client, sim: DeskSimulator) -> None:
    create(client)
    create(client)
    client.put("/api/v2/tickets/1", json={"ticket": {"status": "solved"}})
    listed = client.get("/_sim/tickets", params={"desk": "zendesk"}).json()["tickets"]
    assert [(t["id"], t["external_id"], t["status"]) for t in listed] == [("1", "a-1", "solved"), ("2", "a-1", "new")]
    assert [h["op"] for h in listed[0]["history"]] == ["create", "resolve"]
    assert listed[0]["history"][0]["body"] == TICKET
    assert client.get("/_sim/tickets", params={"desk": "nope"}).status_code == 400
    assert client.get("/_sim/health").json() == {"status": "ok", "tickets": 2, "requests": 3}


def test_unknown_paths_are_404_and_wrong_methods_405(client: httpx.Client) -> None:
    assert client.get("/nothing/here").status_code == 404
    assert client.get("/v2/enqueue").status_code == 405


def test_connections_are_kept_alive(sim: DeskSimulator) -> None:
    host, port = sim.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", "/_sim/health")
        connection.getresponse().read()
        first_socket = connection.sock
        connection.request("GET", "/_sim/health")
        assert connection.getresponse().status == 200
        assert connection.sock is first_socket
    finally:
        connection.close()


def test_chunked_bodies_are_read(client: httpx.Client, sim: DeskSimulator) -> None:
    chunks = [b'{"ticket": {"subject": "s", ', b'"comment": {"body": "b"}}}']
    answer = client.post("/api/v2/tickets", content=iter(chunks))
    assert answer.status_code == 201
    assert sim.tickets()[0]["fields"]["subject"] == "s"


def test_oversized_chunked_body_is_413() -> None:
    with DeskSimulator(max_body_bytes=1024) as small, httpx.Client(base_url=small.url) as http:
        assert http.post("/webhook", content=iter([b"x" * 800, b"y" * 800])).status_code == 413


CLI = ("import argparse, sys; from simulators.desk.cli import add_desk_parser; p = argparse.ArgumentParser(); "
       "s = p.add_subparsers(); add_desk_parser(s); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")
"""``pdm-sim desk`` without the fleet sub-command, which another part of the project owns."""


def test_cli_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen([sys.executable, "-c", CLI, "desk", "--port", "0", "--rate-429", "0.5", "--seed", "3"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env) as proc:
        assert proc.stdout is not None
        url = next(line.strip() for line in proc.stdout if line.startswith("http://"))
        try:
            faults = httpx.get(f"{url}/_sim/faults", timeout=5).json()
            assert (faults["faults"]["rate_429"], faults["seed"]) == (0.5, 3)
        finally:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_cli_refuses_rates_over_one() -> None:
    done = subprocess.run([sys.executable, "-c", CLI, "desk", "--port", "0", "--rate-5xx", "2"],
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 2


def test_throughput_tool_counts_every_ticket() -> None:
    result = measure(tickets=40, clients=2)
    assert (result["tickets"], result["clients"]) == (40, 2)
    assert result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
