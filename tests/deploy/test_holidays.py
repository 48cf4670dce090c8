"""SLA holidays from the maintained ``holidays`` package, by country and region, for any year."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from cloud_bridge.config import BridgeSettings
from cloud_bridge.holidays import ServiceHolidays
from cloud_bridge.urgency import CalendarPolicy, assess
from pdm_common.errors import ConfigError
from pdm_common.settings import load_settings
from tests.bridge.samples import alert

DESKS = {"desks": {"d": {"kind": "webhook", "base_url": "http://x"}}, "routing": {"default": "d"}}


def test_every_year_movable_feasts_and_extra_days() -> None:
    norway = ServiceHolidays("NO", extra=[date(2031, 12, 24)])
    assert date(2031, 5, 17) in norway          # Constitution Day, years past any hand-kept list
    assert date(2030, 4, 22) in norway          # Easter Monday 2030 (Easter is 21 April)
    assert date(2031, 12, 24) in norway and norway.name(date(2031, 12, 24)) == "company holiday"
    assert date(2031, 5, 19) not in norway      # an ordinary Monday
    assert norway.name(date(2030, 4, 22)) == "Easter Monday"


def test_regions_have_their_own_holidays() -> None:
    assert date(2027, 1, 6) in ServiceHolidays("DE", "BY")       # Epiphany in Bavaria
    assert date(2027, 1, 6) not in ServiceHolidays("DE", "BE")   # not in Berlin


def test_unknown_country_or_region_is_a_config_error_naming_the_fix() -> None:
    with pytest.raises(ConfigError, match="unknown country 'XX'"):
        load_settings(BridgeSettings, None, sla={"country": "XX"}, **DESKS)
    with pytest.raises(ConfigError, match="DE has no subdivision 'ZZ'"):
        load_settings(BridgeSettings, None, sla={"country": "DE", "subdivision": "ZZ"}, **DESKS)


def test_urgency_sees_a_holiday_ahead_in_a_year_nobody_listed() -> None:
    calendar = CalendarPolicy(zone=ZoneInfo("Europe/Oslo"), holidays=ServiceHolidays("NO"))
    # Tuesday 8 May 2035: the next two days are working days. Tuesday 15 May: Thursday 17 May,
    # Constitution Day, is within the 48 h look-ahead.
    before = assess(alert(1), None, now=datetime(2035, 5, 8, 6, tzinfo=UTC), calendar=calendar)
    assert not any("holiday" in r or "weekend" in r for r in before.reasons), before.reasons
    ahead = assess(alert(1), None, now=datetime(2035, 5, 15, 6, tzinfo=UTC), calendar=calendar)
    assert "public holiday ahead (2035-05-17)" in ahead.reasons
