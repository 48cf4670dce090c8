"""A circuit breaker per desk: a pure state machine, time passed in.

After ``failure_threshold`` consecutive failures the circuit opens and no calls go to the desk for
``open_s`` seconds; then one trial call is let through (half-open). Its success closes the circuit,
its failure opens it again. This keeps a broken desk from eating every worker and every retry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["CircuitBreaker", "CircuitState"]


class CircuitState(StrEnum):
    """Closed: calls flow. Open: calls refused. Half-open: one trial call in flight."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class CircuitBreaker:
    """Consecutive-failure circuit breaker.

    >>> cb = CircuitBreaker(failure_threshold=2, open_s=10.0)
    >>> cb.record_failure(0.0); cb.record_failure(1.0); cb.allow(2.0)
    False
    >>> cb.allow(11.0), cb.state.value
    (True, 'half_open')
    """

    failure_threshold: int
    open_s: float
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trial_in_flight: bool = field(default=False)
    times_opened: int = 0

    def allow(self, now: float) -> bool:
        """True when a call may go to the desk now; moving to half-open admits exactly one call."""
        if self.state is CircuitState.CLOSED:
            return True
        if self.state is CircuitState.OPEN:
            if now - self.opened_at < self.open_s:
                return False
            self.state = CircuitState.HALF_OPEN
            self.trial_in_flight = True
            return True
        if self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def blocks(self, now: float) -> bool:
        """True when no call should even be scheduled for the desk now (a query: changes nothing)."""
        if self.state is CircuitState.OPEN:
            return now - self.opened_at < self.open_s
        return self.state is CircuitState.HALF_OPEN and self.trial_in_flight

    def reopens_at(self) -> float | None:
        """When an open circuit will admit a trial call, or None when it is not open."""
        return self.opened_at + self.open_s if self.state is CircuitState.OPEN else None

    def record_success(self, now: float) -> None:
        """A call succeeded: close the circuit."""
        self.state = CircuitState.CLOSED
        self.failures = 0
        self.trial_in_flight = False

    def record_failure(self, now: float) -> None:
        """A call failed with a retryable error: count it, open at the threshold or after a failed trial."""
        self.failures += 1
        self.trial_in_flight = False
        if self.state is CircuitState.HALF_OPEN or self.failures >= self.failure_threshold:
            if self.state is not CircuitState.OPEN:
                self.times_opened += 1
            self.state = CircuitState.OPEN
            self.opened_at = now
