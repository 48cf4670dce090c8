"""Builders for bridge tests: alert events, registry records and a mapping context."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cloud_bridge.assets import AssetRecord, Contact
from cloud_bridge.registry import load_fault_actions
from cloud_bridge.ticket import MappingContext
from cloud_bridge.urgency import CalendarPolicy
from pdm_common.contracts import AlertEvent

REPO = Path(__file__).resolve().parents[2]
GATEWAY = "gw-17"
GATEWAY_SECRET = "whsec_Z3ctMTctdGVzdC1zaWduaW5nLWtleS0xMjM0NTY3OA=="
"""The alert-signing key of gw-17 in these tests (agent config [signing], bridge [gateways.gw-17])."""
COMMAND_SECRET = "whsec_YnJpZGdlLWNvbW1hbmQta2V5LWZvci10ZXN0cy0xMjM="
"""The bridge's command-signing key in these tests ([commands] secret)."""
FIRST_SEEN = datetime(2026, 1, 14, 3, 10, tzinfo=UTC)  # a Wednesday
SLA_HOURS = {"P1": 4.0, "P2": 8.0, "P3": 24.0, "P4": 72.0}


def alert(seq: int = 1, *, alert_id: str = "hp-0042:2026-01-14T03:10:00Z:refrigerant_leak", **over: Any) -> AlertEvent:
    """A refrigerant-leak alert event; ``over`` replaces any field.

    ``alert_id`` is given without its site (``{asset}:{first_seen}:{fault}``): the event's site is put
    in front, as the agent does, and the asset is the id's first part unless ``asset`` is given.
    """
    event = "opened" if seq == 1 else "updated"
    site = over.pop("site", "oslo-north")
    base: dict[str, Any] = {
        "alert_id": f"{site}:{alert_id}", "event": event, "event_seq": seq, "site": site,
        "asset": alert_id.split(":", maxsplit=1)[0],
        "kind": "heat_pump", "severity": "major", "score": 0.97,
        "first_seen": FIRST_SEEN, "last_seen": FIRST_SEEN + timedelta(minutes=10 * seq),
        "probable_fault": {"code": "refrigerant_leak", "confidence": 0.72,
                           "alternatives": [{"code": "expansion_valve", "confidence": 0.18}]},
        "contributors": [{"metric": "suction_pressure_bar", "value": 2.1, "expected": 2.9, "deviation": -4.1},
                         {"metric": "discharge_temp_c", "value": 96.0, "expected": 78.0, "deviation": 5.2}],
        "time_to_failure_h": {"p50": 96, "p10": 40},
        "operating_context": {"outdoor_temp_c": -3.0},
        "model": {"name": "hst-regime", "version": "0.3.0", "samples_seen": 120433},
        "agent": {"gateway": "gw-17", "version": "0.3.0"},
    }
    base.update(over)
    return AlertEvent.model_validate(base)


def signed(event: AlertEvent, *, secret: str = GATEWAY_SECRET, key_id: str = GATEWAY,
           now_s: int = 1_768_363_800) -> AlertEvent:
    """``event`` signed as its gateway's agent signs it (no freshness window: the time is arbitrary)."""
    msg_id = hashlib.sha256(f"{event.alert_id}#{event.event_seq}".encode()).hexdigest()[:32]
    return event.signed(key_id=key_id, secret=secret, msg_id=msg_id, now_s=now_s)


def gateways() -> dict[str, Any]:
    """The ``[gateways]`` table of the test bridges."""
    return {GATEWAY: {"site": "oslo-north", "secret": GATEWAY_SECRET}}


def record(**over: Any) -> AssetRecord:
    """The registry record of hp-0042."""
    base: dict[str, Any] = {
        "site": "oslo-north", "asset": "hp-0042", "kind": "heat_pump", "customer": "Ingrid Hansen",
        "customer_id": "c-1001", "address": "Storgata 12, 0155 Oslo",
        "contact": Contact(name="Ingrid Hansen", phone="+47 912 34 567"), "language": "no",
        "model": "NordAir 8 kW", "serial": "NA8-2021-004211", "install_date": date(2021, 9, 14),
        "warranty_until": date(2026, 9, 14),
        "service_history": [{"date": date(2024, 10, 11), "work": "annual service"}],
    }
    base.update(over)
    return AssetRecord.model_validate(base)


def context(holidays: tuple[date, ...] = ()) -> MappingContext:
    """A mapping context using the repository's fault-action table."""
    return MappingContext(
        fault_actions=load_fault_actions(REPO / "config" / "fault-actions.toml"),
        calendar=CalendarPolicy(zone=ZoneInfo("Europe/Oslo"), holidays=holidays),
        sla_hours=SLA_HOURS,
        dashboard_url="https://dash.example.com/{site}/{asset}",
    )


def desk_settings(kind: str, url: str, **over: Any) -> dict[str, Any]:
    """Desk settings that the desk simulator's default credentials accept."""
    base: dict[str, Any] = {"kind": kind, "base_url": url, "timeout_s": 2.0}
    base.update({
        "webhook": {"path": "/webhook", "hmac_secret": "pdm-sim-webhook-secret"},
        "pagerduty": {"token": "0123456789abcdef0123456789abcdef"},
        "servicenow": {"username": "pdm.bridge", "token": "servicenow-password"},
        "jsm": {"username": "bridge@example.com", "token": "jira-api-token", "request_type_id": "10"},
        "zendesk": {"username": "bridge@example.com/token", "token": "zendesk-api-token"},
    }[kind])
    base.update(over)
    return base


DESK_KINDS = ("webhook", "pagerduty", "servicenow", "jsm", "zendesk")
