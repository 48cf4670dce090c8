"""Ticket priority from the machine *and* the person: a pure function of the alert, the asset and time.

Points add up (see :func:`assess`) and map onto P1..P4; every point comes with a reason in words
that is listed in the ticket, so the dispatcher sees *why* the ticket is urgent (CUSTOMER.md,
"empathy": a cold night, a weekend or holiday ahead, a vulnerable occupant, a line with no spare).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from cloud_bridge.assets import AssetRecord
from pdm_common.contracts import AlertEvent, AssetKind, Severity

__all__ = ["CalendarPolicy", "Priority", "Urgency", "assess", "contact_deadline"]

_SEVERITY_POINTS = {Severity.WARNING: 1, Severity.MAJOR: 2, Severity.CRITICAL: 3}

COLD_OUTDOOR_C = -10.0
"""[E] Below about -10 °C a heat pump works near its limit and a home cools by roughly 1 K per
hour without heat, so a breakdown becomes a comfort and frost risk within a day."""

TTF_SOON_H = 24.0
"""Pessimistic (p10) time to failure under a day: act today."""

TTF_WEEK_H = 72.0
"""Under three days: act before the next weekend could intervene."""

AHEAD_H = 48.0
"""[E] Look-ahead for weekends and holidays: a technician booked now lands within two days."""

SHORT_SLA_H = 4.0
"""A contract promising a response within 4 hours is itself a reason for urgency."""


class Priority(StrEnum):
    """Ticket priority; P1 is the most urgent."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def words(self) -> str:
        """The urgency in words for the ticket title."""
        return {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"}[self.value]

    @property
    def number(self) -> int:
        """1 for P1 … 4 for P4."""
        return int(self.value[1])

    @classmethod
    def from_points(cls, points: int) -> Priority:
        """5+ points P1, 3-4 P2, 2 P3, else P4 (a critical alert alone is P2, with two reasons P1)."""
        if points >= 5:
            return cls.P1
        if points >= 3:
            return cls.P2
        if points == 2:
            return cls.P3
        return cls.P4


CONTACT_LEAD_H = 1.0
"""A promise to call "by 19:00" made at 18:30 is not one a dispatcher can keep: the window before the
deadline counts only if it leaves at least an hour."""


@dataclass(frozen=True, slots=True)
class CalendarPolicy:
    """The service organisation's calendar: its time zone, public holidays and the hours in which
    technicians call customers (in the customer's own time zone)."""

    zone: ZoneInfo
    holidays: Collection[date] = ()
    contact_start: time = time(8, 0)
    contact_end: time = time(20, 0)
    contact_days: frozenset[int] = frozenset(range(6))
    """Weekdays (Monday 0) on which customers are called; holidays excluded."""


def _contact_day(day: date, calendar: CalendarPolicy) -> bool:
    return day.weekday() in calendar.contact_days and day not in calendar.holidays


def contact_deadline(deadline: datetime, now: datetime, priority: Priority, zone: ZoneInfo,
                     calendar: CalendarPolicy) -> datetime:
    """When the customer can honestly be promised a call, in their zone's contact hours.

    P1 is worked around the clock (on-call), so its promise is the deadline itself. Otherwise: the
    latest moment inside contact hours that is not after ``deadline`` and leaves :data:`CONTACT_LEAD_H`
    from ``now``; when there is none (the deadline falls in the night after the day's window closed),
    the first moment in contact hours from ``now`` plus the lead — later than the SLA, but the truth:
    nobody calls a customer at 23:40.

    >>> from datetime import UTC
    >>> oslo = ZoneInfo("Europe/Oslo")
    >>> cal = CalendarPolicy(zone=oslo)
    >>> night = datetime(2026, 1, 14, 22, 40, tzinfo=UTC)  # 23:40 in Oslo
    >>> f"{contact_deadline(night, night - timedelta(hours=8), Priority.P2, oslo, cal).astimezone(oslo):%H:%M}"
    '20:00'
    >>> f"{contact_deadline(night, night - timedelta(hours=2), Priority.P2, oslo, cal).astimezone(oslo):%a %H:%M}"
    'Thu 08:00'
    """
    if priority is Priority.P1:
        return deadline
    earliest = now + timedelta(hours=CONTACT_LEAD_H)
    latest = _latest_contact(deadline.astimezone(zone), calendar)
    if latest is not None and latest >= earliest:
        return latest
    return _next_contact(earliest.astimezone(zone), calendar)


_SEARCH_DAYS = 15
"""Two weeks of holidays and closed days is more than any calendar has."""


def _latest_contact(local: datetime, calendar: CalendarPolicy) -> datetime | None:
    """The latest moment inside contact hours at or before ``local`` (None if none in the search range)."""
    day = local.date()
    for _ in range(_SEARCH_DAYS):
        if _contact_day(day, calendar):
            start = datetime.combine(day, calendar.contact_start, local.tzinfo)
            end = datetime.combine(day, calendar.contact_end, local.tzinfo)
            if start <= local:
                return min(end, local)
        day -= timedelta(days=1)
    return None


def _next_contact(local: datetime, calendar: CalendarPolicy) -> datetime:
    """The first moment inside contact hours at or after ``local``."""
    day = local.date()
    for _ in range(_SEARCH_DAYS):
        if _contact_day(day, calendar):
            start = datetime.combine(day, calendar.contact_start, local.tzinfo)
            end = datetime.combine(day, calendar.contact_end, local.tzinfo)
            if local <= end:
                return max(start, local)
        day += timedelta(days=1)
    return local


@dataclass(frozen=True, slots=True)
class Urgency:
    """The priority and every reason that raised it, in words."""

    priority: Priority
    points: int
    reasons: tuple[str, ...]


def _outdoor_temp_c(alert: AlertEvent) -> float | None:
    if "outdoor_temp_c" in alert.operating_context:
        return alert.operating_context["outdoor_temp_c"]
    for c in alert.contributors:
        if c.metric == "outdoor_temp_c" and c.value is not None:
            return c.value
    return None


def _off_day_ahead(now: datetime, calendar: CalendarPolicy) -> str | None:
    """The first weekend day or holiday in the look-ahead window, in words, or None."""
    day = now.astimezone(calendar.zone).date()
    end = (now + timedelta(hours=AHEAD_H)).astimezone(calendar.zone).date()
    while day <= end:
        if day in calendar.holidays:
            return f"public holiday ahead ({day.isoformat()})"
        if day.weekday() >= 5:
            return f"weekend ahead ({day.strftime('%A')})"
        day += timedelta(days=1)
    return None


def assess(alert: AlertEvent, asset: AssetRecord | None, *, now: datetime, calendar: CalendarPolicy) -> Urgency:
    """Score how urgent the alert is for the people affected.

    Points: severity (warning 1, major 2, critical 3); +2 when the pessimistic time to failure is
    under 24 h, +1 under 72 h; +1 for a heat pump in outdoor cold of -10 °C or below; +1 for a weekend
    or holiday in the next 48 h; +1 for vulnerable occupants; +1 for a production line with no spare;
    +1 for a contract SLA of 4 h or less. A sensor fault is never above P3: the machine is healthy.

    Args:
        alert: the alert event being ticketed.
        asset: its registry record, or None when the asset is unknown.
        now: the current instant (aware).
        calendar: time zone and holidays of the service organisation.

    Returns:
        The priority with its reasons, most important first.
    """
    points = _SEVERITY_POINTS[alert.severity]
    reasons = [f"severity {alert.severity.value}"]
    ttf = alert.time_to_failure_h
    if ttf is not None and not alert.is_sensor_fault:
        if ttf.p10 < TTF_SOON_H:
            points += 2
            reasons.append(f"may fail within {ttf.p10:.0f} h (pessimistic estimate)")
        elif ttf.p10 < TTF_WEEK_H:
            points += 1
            reasons.append(f"may fail within {ttf.p10 / 24:.1f} days (pessimistic estimate)")
    outdoor = _outdoor_temp_c(alert)
    if alert.kind == AssetKind.HEAT_PUMP and outdoor is not None and outdoor <= COLD_OUTDOOR_C:
        points += 1
        reasons.append(f"outdoor {outdoor:.0f} °C")
    off_day = _off_day_ahead(now, calendar)
    if off_day is not None:
        points += 1
        reasons.append(off_day)
    if asset is not None:
        if asset.vulnerable_occupants:
            points += 1
            reasons.append("vulnerable occupants: " + ", ".join(asset.vulnerable_occupants))
        if asset.production_critical:
            points += 1
            reasons.append("production line with no spare")
        if asset.sla_hours is not None and asset.sla_hours <= SHORT_SLA_H:
            points += 1
            reasons.append(f"contract response time {asset.sla_hours:g} h")
    priority = Priority.from_points(points)
    if alert.is_sensor_fault and priority.number < 3:
        priority = Priority.P3
        reasons.append("capped at P3: sensor fault, the machine itself looks healthy")
    return Urgency(priority=priority, points=points, reasons=tuple(reasons))
