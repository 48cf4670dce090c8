"""Retry timing policy: exponential backoff with full jitter, honouring ``Retry-After``. Pure.

Full jitter (delay drawn uniformly from ``[0, min(cap, base * 2**attempt)]``) spreads the retries of
many gateways after a shared outage instead of letting them hammer the broker or desk in lock-step
(AWS Architecture Blog, "Exponential Backoff And Jitter", 2015).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["Backoff", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter.

    Attributes:
        base_s: the cap of the first delay.
        cap_s: the largest delay ever returned.
    """

    base_s: float = 1.0
    cap_s: float = 60.0

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the delay before retry number ``attempt`` (0 for the first retry)."""
        # 2**attempt overflows float for huge attempts; the cap is reached long before 64.
        return float(min(self.cap_s, self.base_s * 2.0 ** min(attempt, 64)))

    def delay(self, attempt: int, rng: random.Random, *, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry ``attempt``; never less than a server's ``Retry-After``.

        >>> Backoff(1.0, 8.0).delay(10, random.Random(1), retry_after_s=30.0)
        30.0
        """
        jittered = rng.uniform(0.0, self.ceiling(attempt))
        if retry_after_s is not None:
            return max(jittered, retry_after_s)
        return jittered


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a server asked us to wait, from a ``Retry-After`` header (RFC 9110 §10.2.3).

    Accepts delay-seconds or an HTTP-date; returns None for a missing or unparseable header and
    clamps dates in the past to 0.

    >>> parse_retry_after("7", datetime(2026, 1, 1, tzinfo=UTC))
    7.0
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
