"""Fault injection policy: pure decisions, seeded randomness, no sleeping and no sockets.

The socket shell asks :meth:`FaultPlan.decide` once per vendor request and then carries out the
returned :class:`Outcome` (answer with a status, hold the answer, or close the connection).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from simulators.desk.errors import FaultConfigError

__all__ = ["FaultConfig", "FaultPlan", "Outcome", "OutcomeKind", "parse_outcome"]

MAX_TIMEOUT_HOLD_S = 60.0
"""Longest a 'timeout' holds its answer: far above any sane client timeout, and bounds a stuck handler thread."""

MAX_LATENCY_MS = 30_000.0
"""Upper bound of the added latency, so a typo cannot park handler threads for hours."""

MAX_FORCED_OUTCOMES = 1_000
"""The ``fail_next`` queue is for exact tests; a thousand entries is far more than any test scripts."""

MAX_RETRY_AFTER_S = 3_600
"""Retry-After above an hour is not a rate limit any desk documents; refuse it as a config mistake."""

_SERVER_ERRORS = (500, 502, 503)


class OutcomeKind(StrEnum):
    """What the shell does with a request."""

    PASS = "pass"
    STATUS = "status"
    TIMEOUT = "timeout"
    DROP = "drop"


@dataclass(frozen=True)
class Outcome:
    """One fault decision.

    Attributes:
        kind: pass to the desk, answer ``status``, hold the answer (timeout), or drop the connection.
        status: the HTTP status for ``STATUS``.
        retry_after_s: the ``Retry-After`` value to send with ``STATUS`` (429 or 503), if any.
    """

    kind: OutcomeKind
    status: int | None = None
    retry_after_s: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``fail_next`` wire form of this outcome."""
        if self.kind is OutcomeKind.STATUS:
            out: dict[str, Any] = {"status": self.status}
            if self.retry_after_s is not None:
                out["retry_after"] = self.retry_after_s
            return out
        return {"outcome": self.kind.value}


PASS = Outcome(OutcomeKind.PASS)


def _rate(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise FaultConfigError(f"{name}={value!r}: a share must be between 0 and 1")
    return value


@dataclass(frozen=True)
class FaultConfig:
    """The fault switches; every rate is a share of vendor requests between 0 and 1.

    Attributes:
        latency_ms: added to every vendor request before it is handled.
        rate_429: share answered 429 with ``Retry-After: retry_after_s``.
        retry_after_s: the Retry-After value (integer seconds, RFC 9110 §10.2.3 delay-seconds).
        rate_5xx: share answered 500, 502 or 503.
        rate_timeout: share handled normally whose answer is held ``timeout_hold_s``.
        timeout_hold_s: how long a 'timeout' holds the answer; must exceed the client's timeout.
        rate_drop: share whose connection is closed without an answer.
    """

    latency_ms: float = 0.0
    rate_429: float = 0.0
    retry_after_s: int = 1
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    timeout_hold_s: float = 5.0
    rate_drop: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_5xx", "rate_timeout", "rate_drop"):
            _rate(name, getattr(self, name))
        total = self.rate_429 + self.rate_5xx + self.rate_timeout + self.rate_drop
        if total > 1.0 + 1e-9:
            raise FaultConfigError(f"rates sum to {total:.3f}: shares of 429, 5xx, timeout and drop must sum to <= 1")
        if not 0.0 <= self.latency_ms <= MAX_LATENCY_MS:
            raise FaultConfigError(f"latency_ms={self.latency_ms!r}: must be between 0 and {MAX_LATENCY_MS:.0f}")
        if not 0.0 < self.timeout_hold_s <= MAX_TIMEOUT_HOLD_S:
            raise FaultConfigError(f"timeout_hold_s={self.timeout_hold_s!r}: must be in (0, {MAX_TIMEOUT_HOLD_S:.0f}]")
        if not 0 <= self.retry_after_s <= MAX_RETRY_AFTER_S:
            raise FaultConfigError(f"retry_after_s={self.retry_after_s!r}: must be between 0 and {MAX_RETRY_AFTER_S}")

    def updated(self, changes: Mapping[str, Any]) -> FaultConfig:
        """A copy with the switches named in ``changes`` replaced (validated).

        Raises:
            FaultConfigError: an unknown switch or a value of the wrong type or range.
        """
        known = set(asdict(self))
        unknown = set(changes) - known
        if unknown:
            raise FaultConfigError(f"unknown fault switch(es) {sorted(unknown)}; known: {sorted(known)}")
        typed: dict[str, Any] = {}
        for name, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FaultConfigError(f"{name}={value!r}: must be a number")
            typed[name] = int(value) if name == "retry_after_s" else float(value)
        return replace(self, **typed)

    def to_json(self) -> dict[str, Any]:
        """The switches as a JSON object."""
        return asdict(self)


def _whole_seconds(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_RETRY_AFTER_S


def parse_outcome(item: object) -> Outcome:
    """Parse one ``fail_next`` entry: ``{"status": 429, "retry_after": 1}`` or ``{"outcome": "drop"}``.

    Raises:
        FaultConfigError: the entry is not one of the documented forms.
    """
    if not isinstance(item, Mapping):
        raise FaultConfigError(f"fail_next entry {item!r}: must be an object")
    if "status" in item:
        status, retry_after = item["status"], item.get("retry_after")
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise FaultConfigError(f"fail_next status {status!r}: must be an integer 400..599")
        if retry_after is not None and not _whole_seconds(retry_after):
            raise FaultConfigError(f"fail_next retry_after {retry_after!r}: integer seconds 0..{MAX_RETRY_AFTER_S}")
        return Outcome(OutcomeKind.STATUS, status=status, retry_after_s=retry_after)
    name = item.get("outcome")
    if name in (OutcomeKind.PASS, OutcomeKind.TIMEOUT, OutcomeKind.DROP):
        return Outcome(OutcomeKind(name))
    raise FaultConfigError(f"fail_next entry {dict(item)!r}: give 'status' or 'outcome' in pass|timeout|drop")


class FaultPlan:
    """Decides the outcome of each vendor request from the switches, the forced queue and a seeded RNG.

    Not thread-safe by itself: the owner serialises calls (the simulator holds its state lock).

    Args:
        config: the fault switches.
        seed: seed of the random draws, so a run with the same seed injects the same faults.
    """

    def __init__(self, config: FaultConfig, *, seed: int) -> None:
        self.config = config
        self.seed = seed
        self._rng = random.Random(seed)
        self._forced: deque[Outcome] = deque()

    def reseed(self, seed: int) -> None:
        """Restart the random draws from ``seed``."""
        self.seed = seed
        self._rng = random.Random(seed)

    def force(self, outcomes: Iterable[Outcome]) -> None:
        """Replace the queue of forced outcomes.

        Raises:
            FaultConfigError: more than ``MAX_FORCED_OUTCOMES`` entries.
        """
        items = list(outcomes)
        if len(items) > MAX_FORCED_OUTCOMES:
            raise FaultConfigError(f"fail_next has {len(items)} entries; at most {MAX_FORCED_OUTCOMES}")
        self._forced = deque(items)

    def forced(self) -> list[Outcome]:
        """The forced outcomes still queued, next first."""
        return list(self._forced)

    def decide(self) -> Outcome:
        """The outcome of the next vendor request (consumes a forced outcome or one random draw)."""
        if self._forced:
            return self._forced.popleft()
        cfg = self.config
        if cfg.rate_429 + cfg.rate_5xx + cfg.rate_timeout + cfg.rate_drop == 0.0:
            return PASS
        u = self._rng.random()
        if u < cfg.rate_429:
            return Outcome(OutcomeKind.STATUS, status=429, retry_after_s=cfg.retry_after_s)
        u -= cfg.rate_429
        if u < cfg.rate_5xx:
            return Outcome(OutcomeKind.STATUS, status=self._rng.choice(_SERVER_ERRORS))
        u -= cfg.rate_5xx
        if u < cfg.rate_timeout:
            return Outcome(OutcomeKind.TIMEOUT)
        u -= cfg.rate_timeout
        if u < cfg.rate_drop:
            return Outcome(OutcomeKind.DROP)
        return PASS
