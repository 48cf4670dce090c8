"""The generic webhook of the desk simulator: a verifying Standard Webhooks receiver, through a real httpx client."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import httpx
import pytest

from pdm_common.signing import sign
from simulators.desk import DeskCredentials, DeskSimulator, webhook_headers

SECRET = DeskCredentials().webhook_secret


DESK_SEED = 11


def ticket_body(action: str, dedup_key: str = "hp-0042:2026-01-14T03:10:00Z:refrigerant", **extra: Any) -> bytes:
    body = {"dedup_key": dedup_key, "action": action, "title": "hp-0042 refrigerant leak, act today",
            "priority": "high", "customer": {"name": "A. Berg", "vulnerable_occupants": True}, **extra}
    return json.dumps(body).encode()


_IDS = itertools.count(1)


def post(client: httpx.Client, body: bytes, *, key: str | None = None, secret: str = SECRET,
         ts: int | None = None) -> httpx.Response:
    """POST ``body`` signed as message ``key`` (a fresh id when None)."""
    message_id = key or f"msg-{next(_IDS)}"
    headers = {"Content-Type": "application/json",
               **webhook_headers(secret, message_id, int(time.time()) if ts is None else ts, body)}
    return client.post("/webhook", content=body, headers=headers)


def test_open_update_resolve_round_trip_keeps_fields_verbatim(client: httpx.Client, sim: DeskSimulator) -> None:
    opened = post(client, ticket_body("opened"))
    assert opened.status_code == 201
    assert opened.json() == {"id": "WH-1", "dedup_key": "hp-0042:2026-01-14T03:10:00Z:refrigerant", "status": "open"}
    assert post(client, ticket_body("updated", note="worse")).json()["status"] == "open"
    resolved = post(client, ticket_body("resolved"))
    assert resolved.status_code == 200
    assert resolved.json()["status"] == "resolved"

    [ticket] = sim.tickets("webhook")
    assert [h["op"] for h in ticket["history"]] == ["create", "update", "resolve"]
    assert ticket["fields"]["customer"] == {"name": "A. Berg", "vulnerable_occupants": True}
    assert ticket["history"][1]["body"]["note"] == "worse"


def test_update_after_resolve_reopens(client: httpx.Client, sim: DeskSimulator) -> None:
    post(client, ticket_body("opened"))
    post(client, ticket_body("resolved"))
    assert post(client, ticket_body("updated", reason="fix not confirmed")).json()["status"] == "open"
    assert [h["op"] for h in sim.tickets("webhook")[0]["history"]] == ["create", "resolve", "reopen"]


def test_a_replayed_message_id_is_refused_and_not_applied(client: httpx.Client, sim: DeskSimulator) -> None:
    body = ticket_body("opened")
    assert post(client, body, key="alert-1#1").status_code == 201
    again = post(client, body, key="alert-1#1")  # re-signed with a fresh timestamp: still the same message
    assert again.status_code == 409 and again.json()["error"] == "replayed"
    assert len(sim.tickets("webhook")) == 1


def test_a_captured_request_cannot_be_replayed_later_or_under_a_new_id(client: httpx.Client,
                                                                       sim: DeskSimulator) -> None:
    body = ticket_body("opened")
    captured = {"Content-Type": "application/json", **webhook_headers(SECRET, "alert-2#1", int(time.time()), body)}
    assert client.post("/webhook", content=body, headers=captured).status_code == 201
    new_id = {**captured, "webhook-id": "alert-2#1-again"}  # the signature covers the id
    stale = {**captured, "webhook-timestamp": str(int(time.time()) - 400)}  # and the timestamp
    assert client.post("/webhook", content=body, headers=new_id).status_code == 401
    assert client.post("/webhook", content=body, headers=stale).status_code == 401
    assert len(sim.tickets("webhook")) == 1


def test_a_refused_message_is_not_remembered_as_processed(client: httpx.Client, sim: DeskSimulator) -> None:
    update = ticket_body("updated", dedup_key="never-opened")
    assert post(client, update, key="k-404").status_code == 404
    post(client, ticket_body("opened", dedup_key="never-opened"))
    # The 404 was not recorded under its id, so the sender's retry of the same message now applies.
    assert post(client, update, key="k-404").status_code == 200
    assert [h["op"] for h in sim.tickets()[0]["history"]] == ["create", "update"]


def test_rotation_two_signatures_one_valid_is_accepted(client: httpx.Client) -> None:
    body = ticket_body("opened", dedup_key="rotated")
    now = int(time.time())
    both = f"{sign('old-secret', 'rot-1', now, body)} {sign(SECRET, 'rot-1', now, body)}"
    headers = {"webhook-id": "rot-1", "webhook-timestamp": str(now), "webhook-signature": both}
    assert client.post("/webhook", content=body, headers=headers).status_code == 201


def test_opened_twice_without_key_is_a_visible_duplicate(client: httpx.Client, sim: DeskSimulator) -> None:
    post(client, ticket_body("opened"))
    post(client, ticket_body("opened"))
    held = sim.tickets("webhook")
    assert [t["id"] for t in held] == ["WH-1", "WH-2"]
    assert {t["dedup_key"] for t in held} == {"hp-0042:2026-01-14T03:10:00Z:refrigerant"}


@pytest.mark.parametrize(
    ("secret", "ts_offset_s"),
    # 400 s, not 301: the tolerance is 300 s, and a loaded machine can take a second or more between
    # signing and the server reading its clock (int() truncation adds up to another second).
    [("wrong-secret", 0), (SECRET, -400), (SECRET, 400)],
    ids=["bad-signature", "timestamp-too-old", "timestamp-in-future"],
)
def test_bad_signature_or_skew_is_401(client: httpx.Client, sim: DeskSimulator, secret: str,
                                      ts_offset_s: int) -> None:
    answer = post(client, ticket_body("opened"), secret=secret, ts=int(time.time()) + ts_offset_s)
    assert answer.status_code == 401
    assert sim.tickets() == []


def test_signature_over_a_modified_body_is_401(client: httpx.Client) -> None:
    body = ticket_body("opened")
    headers = webhook_headers(SECRET, "m-1", int(time.time()), body)
    assert client.post("/webhook", content=body + b" ", headers=headers).status_code == 401


def test_missing_headers_are_401(client: httpx.Client) -> None:
    assert client.post("/webhook", content=ticket_body("opened")).status_code == 401


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", json.dumps({"dedup_key": "k", "action": "closed", "title": "t", "priority": "p"}).encode(),
     json.dumps({"dedup_key": "k", "action": "opened", "title": "t"}).encode()],
    ids=["not-json", "not-object", "bad-action", "missing-priority"],
)
def test_invalid_body_is_400(client: httpx.Client, body: bytes) -> None:
    assert post(client, body).status_code == 400


def test_oversized_body_is_413(sim: DeskSimulator) -> None:
    with DeskSimulator(max_body_bytes=1024) as small, httpx.Client(base_url=small.url) as http:
        answer = http.post("/webhook", content=b"x" * 2048)
        assert answer.status_code == 413
