"""The alert lifecycle of DESIGN.md section 5 as a pure state machine (time is an argument).

::

    NORMAL --anomalous--> SUSPECT --N of last M anomalous--> OPEN  (emit opened)
       ^                     |                                |  ^   material change: updated
       |          M calm samples                 healthy for  |  |   (severity, fault, TTF, contributor)
       +---------------------+                recovering_after v  | N of M again: updated status=open
       |                                                  RECOVERING
       +----- healthy for resolve_after (emit resolved) -------+
    OPEN/RECOVERING --serviced--> VERIFYING --healthy for verification_h--> resolved "fix confirmed"
                                      +------N of M anomalous------> OPEN, updated status=reopened
                                                                     note "fix not confirmed"
    snooze(until): an active alert's updated events held back until ``until``; resolve still goes out.
    reset_baseline: an active alert resolves ("baseline reset by operator").

"Healthy" is the detector's score below the hysteresis level, "anomalous" at or above the
threshold; between the two nothing moves, which is the hysteresis. One :class:`AlertTrack` follows
one concern of an asset: its machine condition, or one sensor channel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pdm_common.contracts import AlertStatus, EventType, Severity, format_ts

__all__ = ["AlertTrack", "Emit", "Phase", "Summary", "TrackPolicy"]


class Phase(StrEnum):
    """Where a track is in the lifecycle."""

    NORMAL = "normal"
    SUSPECT = "suspect"
    OPEN = "open"
    RECOVERING = "recovering"
    VERIFYING = "verifying"


@dataclass(frozen=True, slots=True)
class Summary:
    """The parts of an alert whose change is material to the person holding the ticket."""

    severity: Severity
    fault: str
    ttf_p50_h: float | None
    contributors: frozenset[str]


@dataclass(frozen=True, slots=True)
class Emit:
    """An event the engine must turn into an AlertEvent."""

    event: EventType
    status: AlertStatus
    note: str | None = None


@dataclass(frozen=True, slots=True)
class TrackPolicy:
    """Debounce, hysteresis timing and materiality (from DetectionSettings)."""

    debounce_n: int
    debounce_m: int
    recovering_after: timedelta
    resolve_after: timedelta
    verification: timedelta
    ttf_change_pct: float
    min_update_interval: timedelta


class AlertTrack:
    """The lifecycle of the alerts of one concern (machine, or one sensor) of one asset.

    Args:
        owner: ``{site}:{asset}``, the first part of every ``alert_id`` (so the id names its owner,
            and the bridge can refuse an event whose site disagrees with it).
        policy: debounce and timing.
        scope: what the track watches when it is not the whole machine (a sensor's metric); it ends
            the ``alert_id``, so two sensors failing in the same second keep distinct alerts.
    """

    scope: str | None = None  # class default: tracks pickled before scopes existed load as machine tracks
    snoozed_by: str | None = None  # who and which key snoozed (class defaults, for the same reason)
    snoozed_key_id: str | None = None
    suspect_since: datetime | None = None  # class default: tracks pickled before it existed

    def __init__(self, owner: str, policy: TrackPolicy, *, scope: str | None = None) -> None:
        self.owner = owner
        self.scope = scope
        self.policy = policy
        self.phase = Phase.NORMAL
        self.window: deque[bool] = deque(maxlen=policy.debounce_m)
        self.alert_id: str | None = None
        self.first_seen: datetime | None = None
        self.last_seen: datetime | None = None
        self.event_seq = 0
        self.snoozed_until: datetime | None = None
        self.serviced_at: datetime | None = None
        self.healthy_since: datetime | None = None
        self.last_summary: Summary | None = None
        self.reported: set[str] = set()
        self.last_update_at: datetime | None = None

    def retune(self, policy: TrackPolicy) -> None:
        """Use new debounce and timing from now on; the debounce window keeps its newest samples."""
        self.policy = policy
        self.window = deque(self.window, maxlen=policy.debounce_m)

    @property
    def active(self) -> bool:
        """An alert exists (opened and not yet resolved)."""
        return self.phase in (Phase.OPEN, Phase.RECOVERING, Phase.VERIFYING)

    @property
    def engaged(self) -> bool:
        """Suspect or active: the detector must not learn from these samples."""
        return self.phase is not Phase.NORMAL

    def _snoozed(self, now: datetime) -> bool:
        return self.snoozed_until is not None and now < self.snoozed_until

    def _emit(self, event: EventType, status: AlertStatus, note: str | None, now: datetime) -> Emit:
        self.event_seq += 1
        self.last_update_at = now
        return Emit(event, status, note)

    def step(self, *, anomalous: bool, healthy: bool, now: datetime, summary: Callable[[], Summary]) -> list[Emit]:
        """Advance on one scored sample.

        Args:
            anomalous: the score is at or above the threshold.
            healthy: the score is below the hysteresis level.
            now: the sample time.
            summary: computes the current alert summary (called only when needed: it costs).
        """
        # Deadlines that passed before this sample are decided first, as a tick in between would have:
        # otherwise whether an alert resolves depends on when (and whether) the caller ticked.
        out = self.tick(now, summary)
        self.window.append(anomalous)
        hits = sum(self.window)
        if anomalous and self.active:
            self.last_seen = now
        # The suspect phase keeps its start apart from first_seen: a deadline decided just above may
        # have resolved an alert whose event is built after this returns, with its own first_seen.
        if self.phase is Phase.NORMAL:
            if anomalous:
                self.phase, self.suspect_since = Phase.SUSPECT, now
        elif self.phase is Phase.SUSPECT:
            if hits >= self.policy.debounce_n and not self._snoozed(now):
                out.append(self._open(now, summary()))
            elif hits == 0:
                self.phase, self.suspect_since = Phase.NORMAL, None
        elif self.phase is Phase.OPEN:
            out += self._in_open(healthy=healthy, now=now, summary=summary)
        elif self.phase is Phase.RECOVERING:
            out += self._in_recovering(hits=hits, healthy=healthy, now=now, summary=summary)
        else:
            out += self._in_verifying(hits=hits, healthy=healthy, now=now, summary=summary)
        return out

    def _open(self, now: datetime, s: Summary) -> Emit:
        first = self.suspect_since or now
        self.phase, self.suspect_since = Phase.OPEN, None
        self.alert_id = f"{self.owner}:{first.strftime('%Y-%m-%dT%H:%M:%SZ')}:{s.fault}"
        if self.scope is not None:
            self.alert_id += f":{self.scope}"
        self.first_seen, self.last_seen = first, now
        self.event_seq = 0
        self.healthy_since = None
        self.last_summary, self.reported = s, set(s.contributors)
        return self._emit(EventType.OPENED, AlertStatus.OPEN, None, now)

    def _healthy_for(self, healthy: bool, now: datetime) -> timedelta:
        if not healthy:
            self.healthy_since = None
            return timedelta(0)
        if self.healthy_since is None:
            self.healthy_since = now
        return now - self.healthy_since

    def _in_open(self, *, healthy: bool, now: datetime, summary: Callable[[], Summary]) -> list[Emit]:
        if self._healthy_for(healthy, now) >= self.policy.recovering_after:
            self.phase = Phase.RECOVERING
            if self._snoozed(now):
                return []
            return [self._emit(EventType.UPDATED, AlertStatus.RECOVERING, "readings back to normal", now)]
        return self._material_update(now, summary)

    def _in_recovering(
        self, *, hits: int, healthy: bool, now: datetime, summary: Callable[[], Summary]
    ) -> list[Emit]:
        if hits >= self.policy.debounce_n:
            self.phase, self.healthy_since = Phase.OPEN, None
            self.last_summary = summary()
            self.reported |= self.last_summary.contributors
            if self._snoozed(now):
                return []
            return [self._emit(EventType.UPDATED, AlertStatus.OPEN, "deviation returned", now)]
        if self._healthy_for(healthy, now) >= self.policy.resolve_after:
            return [self._resolve(now, None)]
        return []

    def _in_verifying(
        self, *, hits: int, healthy: bool, now: datetime, summary: Callable[[], Summary]
    ) -> list[Emit]:
        if hits >= self.policy.debounce_n:
            self.phase, self.healthy_since, self.serviced_at = Phase.OPEN, None, None
            self.last_summary = summary()
            self.reported |= self.last_summary.contributors
            return [self._emit(EventType.UPDATED, AlertStatus.REOPENED, "fix not confirmed", now)]
        if self._healthy_for(healthy, now) >= self.policy.verification:
            return [self._resolve(now, "fix confirmed")]
        return []

    def _resolve(self, now: datetime, note: str | None) -> Emit:
        emit = self._emit(EventType.RESOLVED, AlertStatus.RESOLVED, note, now)
        self.phase = Phase.NORMAL
        self.window.clear()
        self.healthy_since = self.serviced_at = self.snoozed_until = None
        return emit

    def finish(self) -> None:
        """Forget the resolved alert once its last event has been built (also if a new suspicion began)."""
        if not self.active:
            self.alert_id, self.first_seen, self.last_seen, self.last_summary = None, None, None, None
            self.reported = set()

    def _material_update(self, now: datetime, summary: Callable[[], Summary]) -> list[Emit]:
        p = self.policy
        recent = self.last_update_at is not None and now - self.last_update_at < p.min_update_interval
        if self._snoozed(now) or recent:
            return []
        new = summary()
        old = self.last_summary
        reasons: list[str] = []
        if old is None or new.severity is not old.severity:
            reasons.append(f"severity {new.severity.value}")
        if old is not None and new.fault != old.fault:
            reasons.append(f"probable fault {new.fault}")
        if old is not None and _ttf_changed(old.ttf_p50_h, new.ttf_p50_h, p.ttf_change_pct):
            reasons.append("time to failure changed")
        added = new.contributors - self.reported
        if added:
            reasons.append("new contributor " + ", ".join(sorted(added)))
        if not reasons:
            return []
        self.last_summary = new
        self.reported |= new.contributors
        return [self._emit(EventType.UPDATED, AlertStatus.OPEN, "; ".join(reasons), now)]

    def _expire_snooze(self, now: datetime, summary: Callable[[], Summary]) -> list[Emit]:
        if self.snoozed_until is None or now < self.snoozed_until:
            return []
        self.snoozed_until = None
        if self.phase is not Phase.OPEN:
            return []
        self.last_summary = summary()
        return [self._emit(EventType.UPDATED, AlertStatus.OPEN, "snooze ended", now)]

    # --- commands and time -------------------------------------------------------------------------
    def snooze(
        self, until: datetime, now: datetime, *, issued_by: str | None = None, key_id: str | None = None
    ) -> list[Emit]:
        """Hold back updated events of the active alert until ``until`` (a desk scheduled a visit).

        Only an active alert can be snoozed: a snooze is never armed in advance, so it cannot hold
        back the opening of a fault that develops later (issue #16). Who sent it is kept for the event.
        Bounds (how far ahead) are the caller's (``DetectionEngine.command``).
        """
        if not self.active or until <= now:
            return []
        self.snoozed_until, self.snoozed_by, self.snoozed_key_id = until, issued_by, key_id
        by = f" by {issued_by}" if issued_by else ""
        return [self._emit(EventType.UPDATED, AlertStatus.SNOOZED, f"snoozed until {format_ts(until)}{by}", now)]

    def serviced(self, now: datetime) -> list[Emit]:
        """A technician serviced the asset: verify the fix before resolving."""
        if not self.active:
            return []
        self.phase, self.serviced_at, self.healthy_since = Phase.VERIFYING, now, None
        self.window.clear()
        self.snoozed_until = None
        hours = self.policy.verification.total_seconds() / 3600
        note = f"serviced; verifying the fix for {hours:g} h"
        return [self._emit(EventType.UPDATED, AlertStatus.VERIFYING, note, now)]

    def reset(self, now: datetime) -> list[Emit]:
        """The operator declared the current behaviour normal: resolve and start over."""
        out = [self._resolve(now, "baseline reset by operator")] if self.active else []
        self.phase = Phase.NORMAL
        self.window.clear()
        self.snoozed_until = None
        return out

    def tick(self, now: datetime, summary: Callable[[], Summary]) -> list[Emit]:
        """Time-driven transitions: snooze expiry and healthy-period deadlines.

        :meth:`step` decides them at each sample's time first; a tick matters for a track whose asset
        sends nothing.
        """
        out = self._expire_snooze(now, summary)
        if self.healthy_since is None:
            return out
        healthy_for = now - self.healthy_since
        p = self.policy
        if self.phase is Phase.VERIFYING and healthy_for >= p.verification:
            out.append(self._resolve(now, "fix confirmed"))
        elif self.phase is Phase.RECOVERING and healthy_for >= p.resolve_after:
            out.append(self._resolve(now, None))
        return out


def _ttf_changed(old: float | None, new: float | None, pct: float) -> bool:
    if old is None or new is None:
        return (old is None) != (new is None)
    base = max(abs(old), 1.0)
    return abs(new - old) / base * 100 > pct
