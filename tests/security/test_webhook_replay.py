"""A request the real bridge sent to the signed webhook, captured and sent again (#14.3).

The bridge signs per Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``
over ``id.timestamp.body``; cloud_bridge/desks/webhook.py); the receiver here is the desk simulator,
which checks as the standard asks (a five-minute window, ids already processed refused). The issue
found a replay under a new Idempotency-Key accepted as a second ticket: an attacker who captures one
request must get nothing applied, whether it is sent again as it was, under a new id, or with a
fresh timestamp.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.rig import metric
from tests.security.conftest import Field
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


def _captured(field: Field) -> dict[str, Any] | None:
    """The first ticket-creating webhook request the bridge sent, whole (headers and body)."""
    for entry in field.rig.desk.requests():
        if (entry["path"] == "/webhook" and entry["status"] == 201 and entry["body"] is not None
                and not entry["body_truncated"] and entry["headers"].get("webhook-signature")):
            return entry
    return None


def test_a_captured_webhook_request_applies_nothing_when_sent_again(live_field: Field) -> None:
    assert wait_until(lambda: _captured(live_field) is not None and metric(
        live_field.bridge_port, "pdm_bridge_outbox_depth") == 0.0, 60), "the bridge delivered no ticket"
    captured = _captured(live_field)
    assert captured is not None
    before = live_field.rig.desk.tickets("webhook")
    headers = {"Content-Type": "application/json", **captured["headers"]}
    body = captured["body"].encode()
    variants = {
        "as captured": headers,
        "under a new id": {**headers, "webhook-id": headers["webhook-id"] + "-again"},
        "with a new timestamp": {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 60)},
    }
    with httpx.Client(base_url=live_field.rig.desk.url, timeout=10) as client:
        answers = {name: client.post("/webhook", content=body, headers=h).status_code for name, h in variants.items()}
    # 409: the id was processed already; 401: the signature no longer matches the id or timestamp.
    assert answers == {"as captured": 409, "under a new id": 401, "with a new timestamp": 401}
    # What was there is unchanged, and no alert has two tickets.
    after = {t["id"]: t for t in live_field.rig.desk.tickets("webhook")}
    assert {t["id"]: len(t["history"]) for t in before} == {
        i: len(after[i]["history"]) for i in (t["id"] for t in before)}, "a replay changed a ticket"
    keys = [t["dedup_key"] for t in after.values()]
    assert len(keys) == len(set(keys)), "a replay opened a second ticket for an alert"
