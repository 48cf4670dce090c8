"""Wire contracts: strict parsing, round trips, and no heavy imports."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from pdm_common.contracts import (
    MAX_EVENT_SEQ,
    MAX_TELEMETRY_BYTES,
    AlertEvent,
    Command,
    DeadLetter,
    Telemetry,
    format_ts,
    parse_ts,
    site_of_alert_id,
)
from pdm_common.errors import ContractError
from pdm_common.signing import ReplayGuard, SignatureError

GOOD = {
    "ts": "2026-01-16T18:02:11.250Z",
    "seq": 81723,
    "kind": "heat_pump",
    "metrics": {"outdoor_temp_c": -7.5, "flow_temp_c": 41.2, "compressor_hz": 62, "defrost": False, "fan_rpm": None},
}


def _tel(payload: object) -> Telemetry:
    return Telemetry.from_wire("oslo-north", "hp-0042", json.dumps(payload).encode())


def test_design_example_parses_and_round_trips() -> None:
    tel = _tel(GOOD)
    assert tel.ts == datetime(2026, 1, 16, 18, 2, 11, 250000, tzinfo=UTC)
    assert tel.numeric() == {"outdoor_temp_c": -7.5, "flow_temp_c": 41.2, "compressor_hz": 62.0}
    assert tel.flags() == {"defrost": False}
    again = Telemetry.from_wire("oslo-north", "hp-0042", tel.to_json())
    assert again == tel


def test_epoch_ms_and_offsets_normalise_to_utc() -> None:
    assert parse_ts(1768586531250) == parse_ts("2026-01-16T18:02:11.250Z")
    assert parse_ts("2026-01-16T19:02:11.250+01:00") == parse_ts("2026-01-16T18:02:11.250Z")
    assert format_ts(parse_ts(1768586531250)) == "2026-01-16T18:02:11.250Z"


@pytest.mark.parametrize(
    ("mutation", "reason", "field"),
    [
        ({"ts": "2026-01-16T18:02:11"}, "invalid_field", "ts"),
        ({"ts": 17}, "invalid_field", "ts"),
        ({"ts": True}, "invalid_field", "ts"),
        ({"seq": -1}, "invalid_field", "seq"),
        ({"seq": "5"}, "invalid_field", "seq"),
        ({"kind": "Toaster Oven"}, "invalid_field", "kind"),
        ({"metrics": {"flow_temp_c": 10**400}}, "invalid_field", "metrics"),
        ({"metrics": {"flow_temp_c": -2e12}}, "invalid_field", "metrics"),
        ({"ts": "1970-01-01T00:00:00Z"}, "invalid_field", "ts"),
        ({"ts": "2999-01-01T00:00:00Z"}, "invalid_field", "ts"),
        ({"metrics": {}}, "invalid_field", "metrics"),
        ({"metrics": {"Flow Temp": 1.0}}, "invalid_field", "metrics"),
        ({"metrics": {"flow_temp_c": "41"}}, "invalid_field", "metrics"),
        ({"metrics": {"flow_temp_c": [1]}}, "invalid_field", "metrics"),
        ({"extra": 1}, "invalid_field", "extra"),
        ({"site": "x"}, "invalid_field", "site"),
    ],
)
def test_bad_fields_name_the_field(mutation: dict[str, object], reason: str, field: str) -> None:
    with pytest.raises(ContractError) as info:
        _tel({**GOOD, **mutation})
    assert info.value.reason == reason
    assert field in info.value.detail


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not_json"),
        (b"\xff\xfe", "not_utf8"),
        (b"[1, 2]", "not_object"),
        (b'{"ts": NaN}', "non_finite"),
        (b'{"ts": Infinity}', "non_finite"),
        (b"x" * (MAX_TELEMETRY_BYTES + 1), "oversize"),
    ],
)
def test_undecodable_payloads(payload: bytes, reason: str) -> None:
    with pytest.raises(ContractError) as info:
        Telemetry.from_wire("s", "a", payload)
    assert info.value.reason == reason


def test_deep_nesting_is_refused_not_crashing() -> None:
    with pytest.raises(ContractError) as info:
        Telemetry.from_wire("s", "a", b"[" * 5000 + b"]" * 5000)
    assert info.value.reason == "not_json"


def test_snooze_needs_until() -> None:
    with pytest.raises(ContractError):
        Command.from_json(b'{"command": "snooze", "site": "s", "asset": "a"}', max_bytes=4096)
    cmd = Command.from_json(b'{"command": "snooze", "site": "s", "asset": "a", "until": 1768586531250}', max_bytes=4096)
    assert cmd.until == parse_ts(1768586531250)


def test_alert_event_contract() -> None:
    raw = {
        "alert_id": "oslo-north:hp-0042:2026-01-14T03:10:00Z:refrigerant_leak",
        "event": "opened",
        "event_seq": 1,
        "site": "oslo-north",
        "asset": "hp-0042",
        "kind": "heat_pump",
        "severity": "major",
        "score": 0.97,
        "first_seen": "2026-01-14T03:10:00Z",
        "last_seen": "2026-01-14T05:10:00Z",
        "probable_fault": {"code": "refrigerant_leak", "confidence": 0.72,
                           "alternatives": [{"code": "expansion_valve", "confidence": 0.18}]},
        "contributors": [{"metric": "suction_pressure_bar", "value": 2.1, "expected": 2.9, "deviation": -4.1}],
        "time_to_failure_h": {"p50": 96, "p10": 40},
        "sensor_health": [{"metric": "flow_temp_c", "status": "ok"}],
        "model": {"name": "hst-regime", "version": "1", "samples_seen": 120433},
        "agent": {"gateway": "gw-17", "version": "0.3.0"},
    }
    event = AlertEvent.from_json(json.dumps(raw).encode(), max_bytes=65536)
    assert AlertEvent.from_json(event.to_json(), max_bytes=65536) == event
    assert not event.is_sensor_fault
    dead_sensor = event.model_copy(update={"contributors": [
        event.contributors[0].model_copy(update={"value": None, "expected": None})]})
    assert AlertEvent.from_json(dead_sensor.to_json(), max_bytes=65536) == dead_sensor, "None fields round-trip"
    with pytest.raises(ContractError):
        AlertEvent.from_json(json.dumps({**raw, "event_seq": 2}).encode(), max_bytes=65536)
    with pytest.raises(ContractError):
        AlertEvent.from_json(json.dumps({**raw, "time_to_failure_h": {"p50": 10, "p10": 40}}).encode(),
                             max_bytes=65536)


@pytest.mark.parametrize(
    ("mutation", "why"),
    [
        ({"event": "updated", "event_seq": 9223372036854775808}, "event_seq beyond any store's integer"),
        ({"event": "updated", "event_seq": MAX_EVENT_SEQ + 1}, "event_seq beyond a 32-bit column"),
        ({"site": "bergen-1"}, "payload site disagrees with the alert_id"),
        ({"asset": "hp-0043"}, "payload asset disagrees with the alert_id"),
        ({"alert_id": "hp-0042:2026-01-14T03:10:00Z:refrigerant_leak"}, "alert_id without its site"),
        ({"score": 1e300}, "unbounded score"),
        ({"kind": "Heat Pump"}, "kind is not a profile name"),
    ],
)
def test_alert_event_bounds_and_ownership(mutation: dict[str, object], why: str) -> None:
    raw = json.loads(_alert_payload())
    with pytest.raises(ContractError):
        AlertEvent.from_json(json.dumps({**raw, **mutation}).encode(), max_bytes=65536)


def test_a_vendor_kind_is_a_valid_kind() -> None:
    tel = _tel({**GOOD, "kind": "chiller_x200"})
    assert tel.kind == "chiller_x200"
    assert site_of_alert_id("bad:id") is None


def _alert_payload() -> bytes:
    return json.dumps({
        "alert_id": "oslo-north:hp-0042:2026-01-14T03:10:00Z:refrigerant_leak", "event": "opened",
        "event_seq": 1, "site": "oslo-north", "asset": "hp-0042", "kind": "heat_pump", "severity": "major",
        "score": 0.97, "first_seen": "2026-01-14T03:10:00Z", "last_seen": "2026-01-14T05:10:00Z",
        "probable_fault": {"code": "refrigerant_leak", "confidence": 0.72},
        "model": {"name": "m", "version": "1", "samples_seen": 1}, "agent": {"gateway": "gw-17", "version": "0.3.0"},
    }).encode()


def test_signed_payload_verifies_and_any_change_breaks_it() -> None:
    key = "whsec_" + base64.b64encode(b"k" * 32).decode()
    event = AlertEvent.from_json(_alert_payload(), max_bytes=65536)
    signed = event.signed(key_id="gw-17", secret=key, msg_id="m-1", now_s=1_768_000_000)
    wire = AlertEvent.from_json(signed.to_json(), max_bytes=65536)
    assert wire.verify_auth({"gw-17": key}, now_s=1_768_000_000, tolerance_s=None) == "gw-17"
    # Re-spelled on the wire (spaces, key order, epoch-ms timestamps): what is signed is the content.
    raw = json.loads(signed.to_json())
    raw["first_seen"] = int(event.first_seen.timestamp() * 1000)
    respelled = AlertEvent.from_json(json.dumps(dict(reversed(raw.items())), indent=2).encode(), max_bytes=65536)
    assert respelled.verify_auth({"gw-17": key}, now_s=1_768_000_000, tolerance_s=None) == "gw-17"
    tampered = wire.model_copy(update={"score": 0.5})
    cases: list[tuple[AlertEvent, dict[str, str], str]] = [
        (tampered, {"gw-17": key}, "mismatch"),
        (event, {"gw-17": key}, "missing"),
        (wire, {"gw-18": key}, "unknown_key"),
        (wire, {"gw-17": "whsec_" + base64.b64encode(b"x" * 32).decode()}, "mismatch"),
    ]
    for candidate, keys, reason in cases:
        with pytest.raises(SignatureError) as info:
            candidate.verify_auth(keys, now_s=1_768_000_000, tolerance_s=None)
        assert info.value.reason == reason


def test_signed_command_is_fresh_once() -> None:
    cmd = Command.from_json(
        b'{"command": "serviced", "site": "s", "asset": "a", "issued_by": "desk:zendesk"}', max_bytes=4096
    )
    signed = cmd.signed(key_id="bridge", secret="passphrase", msg_id="c-1", now_s=1_768_000_000)
    guard = ReplayGuard()
    assert signed.verify_auth({"bridge": "passphrase"}, now_s=1_768_000_100, tolerance_s=300, replay=guard)
    for now_s, reason in [(1_768_000_100, "replayed"), (1_768_000_400, "stale")]:
        with pytest.raises(SignatureError) as info:
            signed.verify_auth({"bridge": "passphrase"}, now_s=now_s, tolerance_s=300, replay=guard)
        assert info.value.reason == reason


def test_dead_letter_keeps_binary_payload_as_base64() -> None:
    letter = DeadLetter.build(reason="not_utf8", detail="d", topic="t", payload=b"\xff" * 10,
                              received_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert letter.payload_encoding == "base64"
    assert letter.payload_bytes == 10
    assert not letter.truncated
    big = DeadLetter.build(reason="oversize", detail="d", topic="t", payload=b"a" * 100_000,
                           received_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert big.truncated and len(big.payload) < 100_000


def test_contracts_import_neither_river_nor_paho() -> None:
    code = (
        "import sys, pdm_common.contracts, pdm_common.topics, pdm_common.catalog, pdm_common.settings;"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('river','paho')];"
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
