"""The desk simulator's pure parts: fault decisions, idempotency memory, and plans with the clock passed in."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from simulators.desk import FaultConfig, FaultConfigError, OutcomeKind, webhook_headers
from simulators.desk.app import DeskApp
from simulators.desk.exchange import SimRequest, SimResponse
from simulators.desk.faults import FaultPlan, parse_outcome
from simulators.desk.store import IDEMPOTENCY_TTL, IdempotencyCache, RequestLog

NOW = datetime(2026, 1, 16, 18, 2, 11, tzinfo=UTC)


def draws(seed: int, config: FaultConfig, n: int) -> list[tuple[OutcomeKind, int | None]]:
    plan = FaultPlan(config, seed=seed)
    return [(o.kind, o.status) for o in (plan.decide() for _ in range(n))]


def test_same_seed_same_faults_and_shares_follow_the_rates() -> None:
    config = FaultConfig(rate_429=0.2, rate_5xx=0.1, rate_timeout=0.05, rate_drop=0.05)
    first = draws(7, config, 4000)
    assert first == draws(7, config, 4000)
    assert first != draws(8, config, 4000)
    kinds = Counter(kind if status != 429 else "429" for kind, status in first)
    # 4000 seeded draws: each share within 2 percentage points of its rate.
    assert kinds["429"] / 4000 == pytest.approx(0.2, abs=0.02)
    assert kinds[OutcomeKind.STATUS] / 4000 == pytest.approx(0.1, abs=0.02)
    assert kinds[OutcomeKind.TIMEOUT] / 4000 == pytest.approx(0.05, abs=0.02)
    assert kinds[OutcomeKind.DROP] / 4000 == pytest.approx(0.05, abs=0.02)


def test_forced_outcomes_come_first_and_do_not_consume_random_draws() -> None:
    config = FaultConfig(rate_5xx=0.5)
    plan = FaultPlan(config, seed=3)
    plan.force([parse_outcome({"outcome": "drop"}), parse_outcome({"status": 418})])
    assert [plan.decide().kind, plan.decide().status] == [OutcomeKind.DROP, 418]
    assert [(o.kind, o.status) for o in (plan.decide() for _ in range(50))] == draws(3, config, 50)


@pytest.mark.parametrize(
    "kwargs",
    [{"rate_429": -0.1}, {"rate_drop": 1.1}, {"rate_429": 0.5, "rate_5xx": 0.6}, {"latency_ms": -1},
     {"timeout_hold_s": 0}, {"timeout_hold_s": 61}, {"retry_after_s": -1}],
)
def test_fault_config_refuses_out_of_range_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(FaultConfigError):
        FaultConfig(**kwargs)  # type: ignore[arg-type]


def test_fault_config_update_refuses_unknown_and_non_numbers() -> None:
    with pytest.raises(FaultConfigError, match="unknown"):
        FaultConfig().updated({"rate_teapot": 1})
    with pytest.raises(FaultConfigError, match="number"):
        FaultConfig().updated({"rate_429": "0.5"})


@pytest.mark.parametrize("item", [{"status": 200}, {"status": True}, {"status": 429, "retry_after": 1.5},
                                  {"outcome": "explode"}, "drop", {}])
def test_parse_outcome_refuses_undocumented_forms(item: object) -> None:
    with pytest.raises(FaultConfigError):
        parse_outcome(item)


def test_idempotency_keys_expire_after_the_ttl_and_compare_bodies() -> None:
    cache = IdempotencyCache()
    answer = SimResponse.json(201, {"id": 1})
    cache.remember("zendesk", "k", b"body", answer, NOW)
    hit = cache.lookup("zendesk", "k", b"body", NOW + IDEMPOTENCY_TTL - timedelta(seconds=1))
    assert hit is not None and hit.response == answer
    mismatch = cache.lookup("zendesk", "k", b"other", NOW)
    assert mismatch is not None and mismatch.mismatch
    assert cache.lookup("webhook", "k", b"body", NOW) is None
    assert cache.lookup("zendesk", "k", b"body", NOW + IDEMPOTENCY_TTL) is None


def test_request_log_keeps_only_the_most_recent() -> None:
    log = RequestLog(maxlen=3)
    for n in range(5):
        log.add(at=NOW, request=SimRequest.from_target("GET", f"/{n}", {}, b""), desk=None, status=200, outcome="pass")
    assert [e["path"] for e in log.recent()] == ["/2", "/3", "/4"]
    assert [e["path"] for e in log.recent(1)] == ["/4"]


def test_plan_adds_latency_and_the_timeout_hold() -> None:
    app = DeskApp(faults=FaultConfig(latency_ms=250.0, timeout_hold_s=3.0))
    request = SimRequest.from_target("POST", "/v2/enqueue", {}, b"{}")
    assert app.dispatch(request, NOW).delay_s == pytest.approx(0.25)
    app.fail_next([{"outcome": "timeout"}])
    assert app.dispatch(request, NOW).delay_s == pytest.approx(3.25)
    app.fail_next([{"outcome": "drop"}])
    assert app.dispatch(request, NOW).response is None
    assert app.dispatch(SimRequest.from_target("GET", "/_sim/health", {}, b""), NOW).delay_s == 0.0


def test_webhook_skew_is_judged_against_the_clock_passed_in() -> None:
    app = DeskApp()
    body = json.dumps({"dedup_key": "k", "action": "opened", "title": "t", "priority": "high"}).encode()
    signed_at = int(NOW.timestamp())
    headers = webhook_headers("pdm-sim-webhook-secret", "m-1", signed_at, body)
    request = SimRequest.from_target("POST", "/webhook", headers, body)
    late = app.dispatch(request, NOW + timedelta(seconds=301)).response
    assert late is not None and late.status == 401
    in_time = app.dispatch(request, NOW + timedelta(seconds=300)).response
    assert in_time is not None and in_time.status == 201
    replayed = app.dispatch(request, NOW + timedelta(seconds=299)).response
    assert replayed is not None and replayed.status == 409
