"""Cap periods (``core/periods.py``): the hour, day and month keys of an instant in the buyer's time zone as
its clocks change: no hourly key more than one stretch of an hour, every key but an hour's second time as
before."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from callbroker.core.periods import REPEATED_HOUR, local_period_keys


def period_keys(at: dt.datetime, zone_name: str) -> tuple[str, str, str]:
    """``at``'s keys in ``zone_name``, as the counters work them out (``network.live.period_keys``)."""
    return local_period_keys(at.astimezone(ZoneInfo(zone_name)))


#: Zones whose clocks change: by an hour (the US, Europe, both ends of the day), by half an hour (Lord
#: Howe), by two (Troll), at 45 minutes past (Chatham), at midnight (Santiago, Havana, Asunción), a minute
#: past (St John's until 2011), by other amounts once (Casey, Caracas, Pyongyang, Apia across the date line,
#: Moscow, Metlakatla), back and forth around Ramadan (Casablanca).
CHANGING = ("America/Chicago", "America/New_York", "Europe/London", "Europe/Berlin", "Australia/Lord_Howe",
            "Australia/Sydney", "Antarctica/Troll", "Pacific/Chatham", "America/Santiago", "America/Havana",
            "America/Asuncion", "America/St_Johns", "Antarctica/Casey", "America/Caracas", "Asia/Pyongyang",
            "Pacific/Apia", "Europe/Moscow", "America/Metlakatla", "Africa/Casablanca")
#: Every zone a buyer may name (the loader takes any IANA name).
ANY_ZONE = sorted(zoneinfo.available_timezones() - {"Factory", "localtime"})
ZONE_NAMES = st.one_of(st.sampled_from(CHANGING), st.sampled_from(ANY_ZONE))
YEARS = st.integers(min_value=1990, max_value=2090)
#: Long enough for any hour's second time to be seen with its first: no change since 1990 was over 3 hours.
AROUND = dt.timedelta(hours=5)


@lru_cache(maxsize=None)
def clock_changes(zone_name: str, year: int) -> tuple[dt.datetime, ...]:
    """The instants (UTC, to the second) at which ``zone_name``'s offset from UTC changes in ``year``."""
    zone = ZoneInfo(zone_name)
    changes = []

    def offset(at: dt.datetime) -> dt.timedelta | None:
        return at.astimezone(zone).utcoffset()

    for day in range(366):
        low = dt.datetime(year, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=day)
        high = low + dt.timedelta(days=1)
        if low.year > year or offset(low) == offset(high):
            continue
        while high - low > dt.timedelta(seconds=1):  # the first second of the new offset
            middle = low + (high - low) / 2
            low, high = (middle, high) if offset(middle) == offset(low) else (low, middle)
        changes.append(high.replace(microsecond=0))
    return tuple(changes)


def a_change(zone_name: str, year: int, data) -> dt.datetime:
    """One of the zone's clock changes that year (noon on 1 July if it has none)."""
    changes = clock_changes(zone_name, year)
    return data.draw(st.sampled_from(changes)) if changes else dt.datetime(year, 7, 1, 12, tzinfo=dt.UTC)


def shown_before_ahead(at: dt.datetime, zone_name: str) -> bool:
    """Whether the clock showed ``at``'s local hour (that date) before ``at``, at an offset ahead of ``at``'s:
    the clocks went back since, and ``at`` is in that hour's second time. Looked for a minute at a time."""
    zone = ZoneInfo(zone_name)
    local = at.astimezone(zone)
    for minutes in range(1, int(AROUND / dt.timedelta(minutes=1))):
        earlier = (at - dt.timedelta(minutes=minutes)).astimezone(zone)
        same_hour = (earlier.date(), earlier.hour) == (local.date(), local.hour)
        if same_hour and earlier.utcoffset() > local.utcoffset():
            return True
    return False


CHICAGO = "America/Chicago"


@settings(max_examples=300, deadline=None)
@given(ZONE_NAMES, YEARS, st.data())
def test_each_hourly_key_is_one_stretch_of_at_most_an_hour_around_a_clock_change(zone_name, year, data):
    """Whatever the change, an hourly key is one stretch of time of an hour at most: a cap of N an hour takes
    at most N calls in it (both 01:xx of a fall-back under one key took N in two real hours)."""
    change = a_change(zone_name, year, data)
    minutes = [change + dt.timedelta(minutes=n) for n in range(-300, 300)]  # each minute on one side of it
    keys = [period_keys(at, zone_name)[0] for at in minutes]
    for key in set(keys):
        under = [n for n, other in enumerate(keys) if other == key]
        if under[0] > 0 and under[-1] < len(keys) - 1:  # the whole stretch is in sight
            stretch = (key, minutes[under[0]], minutes[under[-1]])
            assert under == list(range(under[0], under[0] + len(under))), stretch
            assert len(under) <= 60, stretch


@settings(max_examples=300, deadline=None)
@given(ZONE_NAMES, YEARS, st.data(), st.timedeltas(min_value=-AROUND, max_value=AROUND))
def test_every_key_is_as_before_but_for_an_hours_second_time(zone_name, year, data, near):
    """The rows and Redis keys counted before are read after: every hour but a second time, every day and
    every month keeps its key; an hour's second time is its hour's key and REPEATED_HOUR."""
    at = a_change(zone_name, year, data) + near
    local = at.astimezone(ZoneInfo(zone_name))
    hour, day, month = local.strftime("H%Y%m%d%H"), local.strftime("D%Y%m%d"), local.strftime("M%Y%m")
    expected = (hour + REPEATED_HOUR if shown_before_ahead(at, zone_name) else hour, day, month)
    assert period_keys(at, zone_name) == expected, (at, local)


def test_the_hours_of_chicagos_fall_back_and_spring_forward():
    """2026-11-01, 02:00 CDT is 01:00 CST: 01:xx comes twice, two hours, two keys, in time's order;
    2026-03-08, 02:00 CST is 03:00 CDT: 02:xx never comes, and no hour has a second time."""
    fall_back = dt.datetime(2026, 11, 1, 5, 30, tzinfo=dt.UTC)  # 00:30 CDT
    fall = [period_keys(fall_back + dt.timedelta(hours=n), CHICAGO)[0] for n in range(4)]
    assert fall == ["H2026110100", "H2026110101", "H2026110101b", "H2026110102"] == sorted(fall)
    spring_forward = dt.datetime(2026, 3, 8, 5, tzinfo=dt.UTC)  # 23:00 CST the day before
    spring = {period_keys(spring_forward + dt.timedelta(minutes=n), CHICAGO)[0] for n in range(5 * 60)}
    assert spring == {"H2026030723", "H2026030800", "H2026030801", "H2026030803", "H2026030804"}  # 5 hours
    last_second = dt.datetime(2026, 11, 1, 7, 59, 59, tzinfo=dt.UTC)
    assert period_keys(last_second, CHICAGO)[1:] == ("D20261101", "M202611")  # a day of 25 hours is one day


def test_where_the_clocks_go_back_at_45_past_the_second_hour_runs_to_its_end():
    """Chatham, 2026-04-05: 03:45 CHADT is 02:45 CHAST. 02:45-03:44 comes twice; 03:45-03:59 CHAST, shown
    once, ends the second 03 hour: by ``fold`` alone it was the first's, two stretches an hour apart."""
    change = dt.datetime(2026, 4, 4, 14, 0, tzinfo=dt.UTC)  # 03:45 CHADT = 02:45 CHAST
    keys = [period_keys(change + dt.timedelta(minutes=n), "Pacific/Chatham")[0] for n in range(-60, 90, 15)]
    assert keys == ["H2026040502", "H2026040503", "H2026040503", "H2026040503",  # 02:45 .. 03:30 CHADT
                    "H2026040502b", "H2026040503b", "H2026040503b", "H2026040503b",  # 02:45 .. 03:30 CHAST
                    "H2026040503b",  # 03:45 CHAST
                    "H2026040504"]  # 04:00 CHAST
