"""The pure ingest core, including a hypothesis fuzz of arbitrary payloads and topics."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.ingest import Accepted, CommandReceived, IngestCounters, Rejected, ingest
from pdm_common.contracts import DeadLetter
from pdm_common.topics import Topics

NOW = datetime(2026, 1, 16, 18, 0, tzinfo=UTC)
TOPICS = Topics("pdm/v1")
GOOD = b'{"ts": 1768586531250, "seq": 1, "kind": "pump", "metrics": {"vibration_mm_s": 1.2, "running": true}}'


def test_valid_telemetry_is_accepted() -> None:
    result = ingest(TOPICS, "pdm/v1/plant-a/p-101/telemetry", GOOD, NOW)
    assert isinstance(result, Accepted)
    assert (result.telemetry.site, result.telemetry.asset) == ("plant-a", "p-101")


def test_command_is_recognised() -> None:
    body = b'{"command": "serviced", "site": "plant-a", "asset": "p-101"}'
    result = ingest(TOPICS, "pdm/v1/plant-a/p-101/cmd", body, NOW)
    assert isinstance(result, CommandReceived)


def test_unknown_topic_shape_is_dead_lettered_to_a_safe_topic() -> None:
    result = ingest(TOPICS, "pdm/v1/plant-a/p-101/extra/telemetry", GOOD, NOW)
    assert isinstance(result, Rejected)
    assert result.letter.reason == "unknown_topic"
    assert result.topic == "pdm/v1/_invalid/_invalid/deadletter"


def test_bad_asset_name_never_becomes_a_publish_target() -> None:
    result = ingest(TOPICS, "pdm/v1/plant-a/p 101/telemetry", GOOD, NOW)
    assert isinstance(result, Rejected)
    assert result.letter.reason == "invalid_name"
    assert result.topic == "pdm/v1/_invalid/_invalid/deadletter"


def test_dead_letter_goes_to_the_assets_own_topic() -> None:
    result = ingest(TOPICS, "pdm/v1/plant-a/p-101/telemetry", b"{", NOW)
    assert isinstance(result, Rejected)
    assert result.topic == "pdm/v1/plant-a/p-101/deadletter"
    assert result.letter.reason == "not_json"
    assert result.letter.payload == "{"


def test_counters() -> None:
    counters = IngestCounters()
    for payload in (GOOD, b"x", b"[]"):
        counters.count(ingest(TOPICS, "pdm/v1/s/a/telemetry", payload, NOW))
    assert (counters.received, counters.valid, counters.dead_lettered) == (3, 1, 2)
    assert counters.by_reason == {"not_json": 1, "not_object": 1}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


def _mutated_telemetry(draw_value: object, key: str) -> bytes:
    base = json.loads(GOOD)
    base[key] = draw_value
    return json.dumps(base, allow_nan=True).encode()


payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.tuples(json_values, st.sampled_from(["ts", "seq", "kind", "metrics", "site", "junk"])).map(
        lambda t: _mutated_telemetry(*t)
    ),
    st.dictionaries(st.text(max_size=70), json_values, max_size=6).map(
        lambda m: _mutated_telemetry(m, "metrics")
    ),
)
topics = st.one_of(
    st.just("pdm/v1/s/a/telemetry"),
    st.text(max_size=80),
    st.tuples(st.text(max_size=70), st.text(max_size=70)).map(lambda t: f"pdm/v1/{t[0]}/{t[1]}/telemetry"),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=topics, payload=payloads)
def test_fuzzed_messages_never_crash_and_every_refusal_has_a_reason(topic: str, payload: bytes) -> None:
    result = ingest(TOPICS, topic, payload, NOW)
    if isinstance(result, Rejected):
        assert result.letter.reason
        assert result.letter.detail
        assert result.topic.startswith("pdm/v1/") and result.topic.endswith("/deadletter")
        assert "+" not in result.topic and "#" not in result.topic
        # the dead letter itself satisfies its contract and round-trips
        assert DeadLetter.from_json(result.letter.to_json(), max_bytes=1 << 20) == result.letter
    else:
        assert isinstance(result, Accepted | CommandReceived)
