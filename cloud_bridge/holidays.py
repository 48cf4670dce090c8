"""Public holidays of the service organisation's calendar, from the maintained ``holidays`` package.

The SLA urgency looks two days ahead for a weekend or a public holiday (:mod:`cloud_bridge.urgency`).
A hand-kept list goes stale every January; the ``holidays`` package (python-holidays, updated
monthly, 150+ countries with their regions) computes each year's days, movable feasts included,
for any year asked. ``[sla] country`` and ``subdivision`` choose the calendar; ``[sla] holidays``
adds the organisation's own days (company holidays, a half day on 24 December).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from datetime import date

__all__ = ["ServiceHolidays", "check_calendar"]


def check_calendar(country: str, subdivision: str | None) -> None:
    """Raise ValueError naming the fix when the ``holidays`` package has no such country or region."""
    import holidays

    supported = holidays.list_supported_countries()
    if country not in supported:
        raise ValueError(f"unknown country {country!r}; use an ISO 3166-1 alpha-2 code the holidays "
                         "package knows, such as NO, SE, DE or GB")
    if subdivision is not None and subdivision not in supported[country]:
        raise ValueError(f"{country} has no subdivision {subdivision!r}; known: {', '.join(supported[country][:30])}")


class ServiceHolidays(Collection[date]):
    """Every public holiday of ``country`` (and ``subdivision``) in any year, plus ``extra`` days.

    ``day in calendar`` computes the day's year on first use (the package's ``expand``), so the
    calendar never runs out.
    """

    def __init__(self, country: str, subdivision: str | None = None, extra: Iterable[date] = ()) -> None:
        import holidays

        self._public = holidays.country_holidays(country, subdiv=subdivision)
        self._extra = frozenset(extra)

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and (day in self._extra or day in self._public)

    def __iter__(self) -> Iterator[date]:
        """The extra days and the public holidays of the years asked about so far."""
        return iter(sorted(self._extra | set(self._public)))

    def __len__(self) -> int:
        return len(self._extra | set(self._public))

    def name(self, day: date) -> str | None:
        """The holiday's name (English), ``company holiday`` for an extra day, None on a working day."""
        if day in self._extra:
            return "company holiday"
        found = self._public.get(day)
        return str(found) if found is not None else None
