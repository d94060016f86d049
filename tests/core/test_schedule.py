"""Opening hours: parsing, is_open against a brute-force reference (DST days included), next_open."""

from __future__ import annotations

import datetime as dt
import math
import pickle
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbroker.core.schedule import Schedule, parse_hours, parse_weekly

UTC = dt.timezone.utc
T = dt.time
MIDNIGHT = T(0, 0)

# Zones with interesting transitions: US and UK DST, a 30-minute DST shift (Lord Howe), transitions at
# midnight that move the date back (Santiago), and no DST at all.
ZONES = [
    "America/New_York",
    "America/Chicago",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Tokyo",
]
TRANSITION_DAYS = [
    ("America/New_York", dt.date(2026, 3, 8)),
    ("America/New_York", dt.date(2026, 11, 1)),
    ("America/Chicago", dt.date(2026, 3, 8)),
    ("America/Chicago", dt.date(2026, 11, 1)),
    ("Europe/London", dt.date(2026, 3, 29)),
    ("Europe/London", dt.date(2026, 10, 25)),
    ("Australia/Lord_Howe", dt.date(2026, 4, 5)),
    ("Australia/Lord_Howe", dt.date(2026, 10, 4)),
    ("America/Santiago", dt.date(2026, 4, 4)),
    ("America/Santiago", dt.date(2026, 9, 5)),
]
HOLIDAY_COUNTRY = {"America/New_York": "US", "America/Chicago": "US", "Europe/London": "GB",
                   "Australia/Lord_Howe": "AU", "America/Santiago": "CL", "Asia/Tokyo": "JP"}  # fmt: skip


# -- the brute-force reference -------------------------------------------------------------------------------

_reference_holidays: dict[tuple[str, str | None, int], object] = {}


def reference_hours(schedule: Schedule, date: dt.date) -> tuple[tuple[dt.time, dt.time], ...]:
    if date in schedule.exceptions:
        return schedule.exceptions[date]
    if schedule.holiday_country:
        key = (schedule.holiday_country, schedule.holiday_subdivision, date.year)
        if key not in _reference_holidays:
            _reference_holidays[key] = holidays.country_holidays(key[0], subdiv=key[1], years=key[2])
        if date in _reference_holidays[key]:  # type: ignore[operator]
            return ()
    return schedule.weekly.get(date.weekday(), ())


def reference_is_open(schedule: Schedule, at: dt.datetime) -> bool:
    """Open when the latest wall-clock time shown so far lies in an interval (module docstring's rule).

    The latest wall time is found by brute force: the maximum local time over the last three hours, one
    sample a minute (schedule times and zone transitions all fall on whole minutes)."""
    zone = ZoneInfo(schedule.timezone)
    latest = max((at - dt.timedelta(minutes=k)).astimezone(zone).replace(tzinfo=None) for k in range(181))
    for day in (latest.date() - dt.timedelta(days=1), latest.date()):
        for start, end in reference_hours(schedule, day):
            opens = dt.datetime.combine(day, start)
            closes = dt.datetime.combine(day if end > start else day + dt.timedelta(days=1), end)
            if opens <= latest < closes:
                return True
    return False


# -- strategies ----------------------------------------------------------------------------------------------

times = st.builds(T, st.integers(0, 23), st.sampled_from([0, 0, 15, 30, 45, 59]))
day_hours = st.lists(st.tuples(times, times), max_size=3).map(tuple)


@st.composite
def schedules(draw: st.DrawFn, zone: str | None = None, around: dt.date | None = None) -> Schedule:
    zone = zone or draw(st.sampled_from(ZONES))
    weekly = {day: draw(day_hours) for day in range(7)}
    base = around or dt.date(2026, 11, 26)
    exception_dates = draw(st.lists(st.integers(-3, 3), max_size=3, unique=True))
    exceptions = {base + dt.timedelta(days=k): draw(day_hours) for k in exception_dates}
    country = draw(st.sampled_from([None, HOLIDAY_COUNTRY[zone]]))
    return Schedule(zone, weekly, exceptions, holiday_country=country)


@st.composite
def instants_near(draw: st.DrawFn, zone: str, date: dt.date) -> dt.datetime:
    """An aware instant within two days of local midnight of ``date``, in a random zone of expression."""
    midnight = dt.datetime.combine(date, MIDNIGHT, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    seconds = draw(st.integers(-36 * 3600, 60 * 3600))
    instant = midnight + dt.timedelta(seconds=seconds, microseconds=draw(st.sampled_from([0, 500_000])))
    shown_in = draw(st.sampled_from([UTC, ZoneInfo(zone), ZoneInfo("Asia/Kolkata")]))
    return instant.astimezone(shown_in)


@st.composite
def schedule_and_instant(draw: st.DrawFn) -> tuple[Schedule, dt.datetime]:
    ordinary_days = [("Asia/Tokyo", dt.date(2026, 11, 26)), ("America/New_York", dt.date(2026, 11, 26))]
    zone, date = draw(st.sampled_from([*TRANSITION_DAYS, *ordinary_days]))
    schedule = draw(schedules(zone=zone, around=date))
    return schedule, draw(instants_near(zone, date))


def weekly(**days: str) -> dict[int, tuple[tuple[dt.time, dt.time], ...]]:
    return parse_weekly(days)


# -- parsing -------------------------------------------------------------------------------------------------


class TestParseHours:
    @pytest.mark.parametrize(
        "text, hours",
        [
            ("08:00-18:00", ((T(8), T(18)),)),
            ("8:00 - 18:00", ((T(8), T(18)),)),
            ("08:00-12:00, 13:00-17:00", ((T(8), T(12)), (T(13), T(17)))),
            ("08:00-12:00, 12:00-17:00", ((T(8), T(12)), (T(12), T(17)))),  # touching is not overlapping
            ("22:00-06:00", ((T(22), T(6)),)),
            ("18:00-24:00", ((T(18), MIDNIGHT),)),
            ("00:00-24:00", ((MIDNIGHT, MIDNIGHT),)),
            ("24h", ((MIDNIGHT, MIDNIGHT),)),
            ("Open", ((MIDNIGHT, MIDNIGHT),)),
            ("closed", ()),
            (" CLOSED ", ()),
        ],
    )
    def test_reads(self, text: str, hours: tuple[tuple[dt.time, dt.time], ...]) -> None:
        assert parse_hours(text) == hours

    @pytest.mark.parametrize(
        "text, message",
        [
            ("25:00-18:00", "'25:00' is not a time of day"),
            ("08:00-18:60", "'18:60' is not a time of day"),
            ("8am-6pm", "'8am' is not a time"),
            ("08:00", "'08:00' is not a range like '08:00-18:00'"),
            ("08:00-12:00,, 13:00-17:00", "'' is not a range"),
            ("24:00-06:00", "24:00 can only be a closing time"),
            ("08:00-12:00, 11:00-13:00", "overlap: 08:00-12:00 and 11:00-13:00"),
            ("22:00-06:00, 21:00-23:00", "overlap: 21:00-23:00 and 22:00-06:00"),
            ("", "empty opening hours"),
            ("10:00-10:00", "'10:00-10:00' starts and ends at the same time (write '24h' for the whole day"),
            ("08:00-12:00, 00:00-00:00", "'00:00-00:00' starts and ends at the same time"),
            ("sometimes", "'sometimes' is not a range"),
        ],
    )
    def test_errors_name_the_bad_part(self, text: str, message: str) -> None:
        with pytest.raises(ValueError) as info:
            parse_hours(text)
        assert message in str(info.value)


class TestParseWeekly:
    def test_groups_and_overrides(self) -> None:
        hours = parse_weekly({"mon": "closed", "weekdays": "08:00-18:00", "daily": "10:00-14:00"})
        assert hours[0] == ()  # the specific key wins even though it came first
        assert hours[1] == hours[4] == ((T(8), T(18)),)
        assert hours[5] == hours[6] == ((T(10), T(14)),)

    def test_unmentioned_days_are_closed_and_full_names_work(self) -> None:
        hours = parse_weekly({"Weekend": "09:00-13:00", "Wednesday": "24h", "thurs": "closed"})
        assert hours == {0: (), 1: (), 2: ((MIDNIGHT, MIDNIGHT),), 3: (), 4: (),
                         5: ((T(9), T(13)),), 6: ((T(9), T(13)),)}  # fmt: skip

    def test_yaml_booleans(self) -> None:
        assert parse_weekly({"sat": False, "sun": True}) == {
            **{d: () for d in range(6)},
            6: ((MIDNIGHT, MIDNIGHT),),
        }

    def test_unknown_key(self) -> None:
        with pytest.raises(ValueError, match="unknown day 'funday'"):
            parse_weekly({"funday": "08:00-18:00"})

    def test_bad_hours_name_the_day(self) -> None:
        with pytest.raises(ValueError, match=r"^sat: cannot read opening hours '9-5'"):
            parse_weekly({"sat": "9-5"})

    def test_same_day_twice(self) -> None:
        with pytest.raises(ValueError, match="Monday twice"):
            parse_weekly({"mon": "08:00-09:00", "Monday": "10:00-11:00"})


# -- is_open -------------------------------------------------------------------------------------------------


def local(zone: str, *args: int, fold: int = 0) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)  # type: ignore[misc]


class TestIsOpen:
    def test_office_hours(self) -> None:
        s = Schedule("America/Chicago", weekly(weekdays="08:00-18:00", sat="09:00-13:00"))
        assert s.is_open(local("America/Chicago", 2026, 11, 24, 8, 0))
        assert s.is_open(local("America/Chicago", 2026, 11, 24, 17, 59, 59))
        assert not s.is_open(local("America/Chicago", 2026, 11, 24, 18, 0))
        assert not s.is_open(local("America/Chicago", 2026, 11, 24, 7, 59, 59))
        assert s.is_open(local("America/Chicago", 2026, 11, 28, 12, 0))  # Saturday
        assert not s.is_open(local("America/Chicago", 2026, 11, 29, 12, 0))  # Sunday
        # Same instant written in another zone.
        assert s.is_open(dt.datetime(2026, 11, 24, 14, 0, tzinfo=UTC))  # 08:00 CST

    def test_overnight_belongs_to_the_day_it_starts(self) -> None:
        s = Schedule("America/New_York", weekly(fri="22:00-06:00"))
        assert s.is_open(local("America/New_York", 2026, 11, 27, 23, 0))  # Friday night
        assert s.is_open(local("America/New_York", 2026, 11, 28, 5, 59))  # Saturday morning
        assert not s.is_open(local("America/New_York", 2026, 11, 28, 6, 0))
        assert not s.is_open(local("America/New_York", 2026, 11, 27, 5, 0))  # Friday morning: Thursday's

    def test_naive_datetime_is_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            Schedule.always().is_open(dt.datetime(2026, 1, 1, 12, 0))
        with pytest.raises(ValueError, match="timezone-aware"):
            Schedule.always().next_open(dt.datetime(2026, 1, 1, 12, 0))

    def test_always(self) -> None:
        s = Schedule.always("America/Chicago")
        assert s.is_open(dt.datetime(2026, 3, 8, 8, 0, tzinfo=UTC))
        assert s.next_open(local("America/Chicago", 2026, 1, 1)) == dt.datetime(2026, 1, 1, 6, 0, tzinfo=UTC)

    def test_thanksgiving_is_closed_unless_an_exception_says_otherwise(self) -> None:
        hours = weekly(daily="08:00-18:00", wed="20:00-02:00")
        s = Schedule("America/New_York", hours, holiday_country="US")
        assert not s.is_open(local("America/New_York", 2026, 11, 26, 12, 0))
        assert s.is_open(local("America/New_York", 2026, 11, 27, 12, 0))
        # Wednesday's overnight hours run into Thanksgiving morning: they belong to Wednesday.
        assert s.is_open(local("America/New_York", 2026, 11, 26, 1, 0))
        opened = Schedule("America/New_York", hours, {dt.date(2026, 11, 26): ((T(9), T(12)),)}, "US")
        assert opened.is_open(local("America/New_York", 2026, 11, 26, 10, 0))
        assert not opened.is_open(local("America/New_York", 2026, 11, 26, 13, 0))
        closed = Schedule("America/New_York", hours, {dt.date(2026, 11, 25): ()}, "US")
        assert not closed.is_open(local("America/New_York", 2026, 11, 26, 1, 0))  # Wednesday closed

    def test_subdivision_holidays(self) -> None:
        s = Schedule(
            "America/Chicago", weekly(daily="08:00-18:00"), holiday_country="US", holiday_subdivision="TX"
        )
        assert not s.is_open(local("America/Chicago", 2026, 3, 2, 12, 0))  # Texas Independence Day
        assert Schedule("America/Chicago", weekly(daily="08:00-18:00"), holiday_country="US").is_open(
            local("America/Chicago", 2026, 3, 2, 12, 0)
        )

    def test_spring_forward(self) -> None:
        # New York 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        s = Schedule("America/New_York", weekly(sun="02:30-05:00"))
        assert not s.is_open(dt.datetime(2026, 3, 8, 6, 59, tzinfo=UTC))  # 01:59 EST
        assert s.is_open(dt.datetime(2026, 3, 8, 7, 0, tzinfo=UTC))  # 03:00 EDT: the clock passed 02:30
        gap_only = Schedule("America/New_York", weekly(sun="02:10-02:50"))
        day = [dt.datetime(2026, 3, 8, tzinfo=UTC) + dt.timedelta(minutes=m) for m in range(0, 24 * 60, 5)]
        assert not any(gap_only.is_open(at) for at in day)

    def test_fall_back(self) -> None:
        # New York 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:00-02:00 happens twice.
        s = Schedule("America/New_York", weekly(sun="00:00-01:30"))
        assert s.is_open(local("America/New_York", 2026, 11, 1, 1, 29))  # first 01:29
        assert not s.is_open(local("America/New_York", 2026, 11, 1, 1, 31))  # first 01:31: closed
        assert not s.is_open(local("America/New_York", 2026, 11, 1, 1, 10, fold=1))  # no reopening
        late = Schedule("America/New_York", weekly(sun="01:15-03:00"))
        assert not late.is_open(local("America/New_York", 2026, 11, 1, 1, 10))
        assert late.is_open(local("America/New_York", 2026, 11, 1, 1, 20))
        assert late.is_open(local("America/New_York", 2026, 11, 1, 1, 10, fold=1))  # stays open

    def test_fall_back_at_the_end_of_the_repeated_hour(self) -> None:
        # The latest time shown before the repeated hour is 01:59:59, not 02:00: a line that opens at 02:00
        # is still closed during the second 01:xx, and one that closes at 02:00 is still open.
        opens = Schedule("America/New_York", weekly(sun="02:00-04:00"))
        assert not opens.is_open(local("America/New_York", 2026, 11, 1, 1, 30, fold=1))
        assert not opens.is_open(dt.datetime(2026, 11, 1, 6, 59, 59, tzinfo=UTC))  # the last second of it
        assert opens.is_open(dt.datetime(2026, 11, 1, 7, 0, tzinfo=UTC))  # 02:00 EST
        closes = Schedule("America/New_York", weekly(sun="00:30-02:00"))
        assert closes.is_open(local("America/New_York", 2026, 11, 1, 1, 30, fold=1))
        assert not closes.is_open(dt.datetime(2026, 11, 1, 7, 0, tzinfo=UTC))

    def test_a_whole_week_of_24_hours_still_closes_on_an_exception_date(self) -> None:
        s = Schedule("America/Chicago", {day: ((MIDNIGHT, MIDNIGHT),) for day in range(7)},
                     {dt.date(2026, 12, 25): ()})
        assert not s.always_open
        assert not s.is_open(local("America/Chicago", 2026, 12, 25, 12, 0))
        assert s.is_open(local("America/Chicago", 2026, 12, 26, 12, 0))
        assert Schedule.always("America/Chicago").always_open

    def test_overlapping_overnight_ranges_given_directly_run_to_the_later_end(self) -> None:
        # parse_hours refuses overlaps, but a Schedule built from time pairs takes them as their union.
        s = Schedule("UTC", {0: ((T(22), T(6)), (T(23), T(2)))})
        assert s.is_open(dt.datetime(2026, 11, 24, 3, 0, tzinfo=UTC))  # Tuesday 03:00: Monday's 22:00-06:00
        assert not s.is_open(dt.datetime(2026, 11, 24, 6, 0, tzinfo=UTC))

    @settings(max_examples=150, deadline=None)
    @given(case=schedule_and_instant())
    def test_agrees_with_reference_around_transitions(self, case: tuple[Schedule, dt.datetime]) -> None:
        schedule, at = case
        assert schedule.is_open(at) == reference_is_open(schedule, at)

    @settings(max_examples=80, deadline=None)
    @given(
        schedule=schedules(),
        at=st.datetimes(dt.datetime(2025, 6, 1), dt.datetime(2027, 6, 1), timezones=st.just(UTC)),
    )
    def test_agrees_with_reference_any_time(self, schedule: Schedule, at: dt.datetime) -> None:
        assert schedule.is_open(at) == reference_is_open(schedule, at)


# -- steady_span ---------------------------------------------------------------------------------------------


def utc_seconds(*args: int) -> float:
    return dt.datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def probes(at: dt.datetime, since: float, until: float) -> list[dt.datetime]:
    """Instants inside [since, until) to ask: both ends, around ``at``, and evenly in between (the ends
    of an unbounded window are taken two days away)."""
    lo = max(since, at.timestamp() - 2 * 86_400)
    hi = min(until, at.timestamp() + 2 * 86_400)
    seconds = {lo, hi - 0.5, hi - 1e-3, at.timestamp()} | {lo + (hi - lo) * k / 16 for k in range(1, 16)}
    return [dt.datetime.fromtimestamp(x, UTC) for x in sorted(seconds) if lo <= x < hi]


night_times = st.builds(T, st.sampled_from([22, 23, 0, 0, 1, 1, 2, 2, 3]),
                        st.sampled_from([0, 10, 30, 45, 59]))


@st.composite
def transition_schedule_and_instant(draw: st.DrawFn) -> tuple[Schedule, dt.datetime]:
    """A schedule opening and closing in the small hours of a clock-change day, and an instant of that
    night (in the gap, the repeated hour, or just around them)."""
    zone, date = draw(st.sampled_from(TRANSITION_DAYS))
    night = st.lists(st.tuples(night_times, night_times), min_size=1, max_size=3).map(tuple)
    hours = {day: draw(night) for day in range(7)}
    midnight = dt.datetime.combine(date, MIDNIGHT, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    seconds = draw(st.integers(-3 * 3600, 5 * 3600))
    microseconds = draw(st.sampled_from([0, 999_999]))
    return Schedule(zone, hours), midnight + dt.timedelta(seconds=seconds, microseconds=microseconds)


class TestSteadySpan:
    def test_office_hours_window_is_from_opening_to_closing(self) -> None:
        s = Schedule("America/Chicago", weekly(weekdays="08:00-18:00"))
        assert s.steady_span(local("America/Chicago", 2026, 11, 24, 10, 30)) == (
            utc_seconds(2026, 11, 24, 14, 0), utc_seconds(2026, 11, 25, 0, 0),  # 08:00 to 18:00 CST
        )
        # Closed in the evening: from closing time to midnight (the next day is asked afresh).
        assert s.steady_span(local("America/Chicago", 2026, 11, 24, 20, 0)) == (
            utc_seconds(2026, 11, 25, 0, 0), utc_seconds(2026, 11, 25, 6, 0),
        )

    def test_touching_ranges_are_one_window(self) -> None:
        s = Schedule("America/Chicago", weekly(weekdays="08:00-12:00, 12:00-18:00"))
        assert s.is_open(local("America/Chicago", 2026, 11, 24, 12, 0))
        assert s.steady_span(local("America/Chicago", 2026, 11, 24, 10, 30)) == (
            utc_seconds(2026, 11, 24, 14, 0), utc_seconds(2026, 11, 25, 0, 0),  # 08:00 to 18:00 CST
        )

    def test_yesterdays_overnight_hours_end_a_window(self) -> None:
        s = Schedule("America/New_York", weekly(fri="22:00-06:00"))
        since, until = s.steady_span(local("America/New_York", 2026, 11, 28, 3, 0))  # Saturday 03:00, open
        assert (since, until) == (utc_seconds(2026, 11, 28, 5, 0), utc_seconds(2026, 11, 28, 11, 0))

    def test_always_open_never_changes(self) -> None:
        assert Schedule.always().steady_span(dt.datetime(2026, 1, 1, tzinfo=UTC)) == (-math.inf, math.inf)

    def test_a_window_stops_at_a_change_of_utc_offset(self) -> None:
        # New York 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00 UTC; open 02:30-05:00 (takes effect
        # at the jump). At 01:00 EST the closed window ends at the jump, not at "02:30".
        s = Schedule("America/New_York", weekly(sun="02:30-05:00"))
        assert s.steady_span(local("America/New_York", 2026, 3, 8, 1, 0)) == (
            utc_seconds(2026, 3, 8, 5, 0), utc_seconds(2026, 3, 8, 7, 0),
        )
        # At 04:00 EDT the open window starts at the jump, not at "02:30" read with the new offset.
        assert s.steady_span(local("America/New_York", 2026, 3, 8, 4, 0)) == (
            utc_seconds(2026, 3, 8, 7, 0), utc_seconds(2026, 3, 8, 9, 0),
        )

    def test_the_repeated_hour_of_a_fall_back_day_gets_one_second(self) -> None:
        s = Schedule("America/New_York", weekly(sun="00:00-01:30"))
        at = local("America/New_York", 2026, 11, 1, 1, 10, 20, fold=1)
        assert s.steady_span(at) == (at.timestamp(), at.timestamp() + 1)

    def test_naive_datetime_is_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            Schedule.always().steady_span(dt.datetime(2026, 1, 1, 12, 0))

    @pytest.mark.parametrize("at", [dt.datetime(1, 1, 2, tzinfo=UTC),
                                    dt.datetime(9999, 12, 31, 12, tzinfo=UTC)])
    def test_the_ends_of_the_calendar_get_a_window_too(self, at: dt.datetime) -> None:
        s = Schedule("America/New_York", weekly(weekdays="08:00-18:00", fri="20:00-02:00"))
        since, until = s.steady_span(at)
        assert since <= at.timestamp() < until
        assert s.is_open(dt.datetime.fromtimestamp(since, UTC)) == s.is_open(at)

    @settings(max_examples=150, deadline=None)
    @given(case=schedule_and_instant())
    def test_is_open_answers_alike_everywhere_in_the_window(self, case: tuple[Schedule, dt.datetime]) -> None:
        schedule, at = case
        since, until = schedule.steady_span(at)
        assert since <= at.timestamp() < until
        expected = schedule.is_open(at)
        for instant in probes(at, since, until):
            assert schedule.is_open(instant) == expected, (since, until, instant)

    @settings(max_examples=300, deadline=None)
    @given(case=transition_schedule_and_instant())
    def test_is_open_answers_alike_everywhere_in_the_window_on_the_night_of_a_clock_change(
        self, case: tuple[Schedule, dt.datetime]
    ) -> None:
        schedule, at = case
        since, until = schedule.steady_span(at)
        assert since <= at.timestamp() < until
        for instant in probes(at, since, until):
            assert schedule.is_open(instant) == schedule.is_open(at), (since, until, instant)

    @settings(max_examples=60, deadline=None)
    @given(
        schedule=schedules(),
        at=st.datetimes(dt.datetime(2025, 6, 1), dt.datetime(2027, 6, 1), timezones=st.just(UTC)),
    )
    def test_is_open_answers_alike_everywhere_in_the_window_any_time(
        self, schedule: Schedule, at: dt.datetime
    ) -> None:
        since, until = schedule.steady_span(at)
        assert since <= at.timestamp() < until
        for instant in probes(at, since, until):
            assert schedule.is_open(instant) == schedule.is_open(at)


# -- next_open -----------------------------------------------------------------------------------------------


def minutes_between(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """``start`` and every whole UTC minute after it, all before ``end``."""
    first = start.astimezone(UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    count = max(0, int((end - first).total_seconds() // 60) + 1)
    return [m for m in [start, *(first + dt.timedelta(minutes=k) for k in range(count))] if m < end]


class TestNextOpen:
    def test_examples(self) -> None:
        s = Schedule("America/Chicago", weekly(weekdays="08:00-18:00"), holiday_country="US")
        wednesday_evening = local("America/Chicago", 2026, 11, 25, 19, 0)
        # Thanksgiving (Thursday) is closed, so the next opening is Friday 08:00 CST.
        assert s.next_open(wednesday_evening) == dt.datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
        now_open = local("America/Chicago", 2026, 11, 24, 9, 30)
        assert s.next_open(now_open) == now_open.astimezone(UTC)
        assert s.next_open(now_open).tzinfo is UTC  # type: ignore[union-attr]

    def test_never(self) -> None:
        assert Schedule("UTC", {}).next_open(dt.datetime(2026, 1, 1, tzinfo=UTC)) is None
        long_break = Schedule(
            "UTC", weekly(daily="08:00-09:00"),
            {dt.date(2026, 1, 1) + dt.timedelta(days=k): () for k in range(20)},
        )  # fmt: skip
        assert long_break.next_open(dt.datetime(2026, 1, 1, tzinfo=UTC)) is None

    def test_the_horizon_is_exactly_14_days(self) -> None:
        after = dt.datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
        closed = {after.date() + dt.timedelta(days=k): () for k in range(14)}
        at_horizon = Schedule("UTC", weekly(daily="09:00-10:00"), closed)
        assert at_horizon.next_open(after) == after + dt.timedelta(days=14)  # 09:00 in exactly 14 days
        assert at_horizon.next_open(after - dt.timedelta(seconds=1)) is None  # 14 days and 1 s away
        assert at_horizon.next_open(after - dt.timedelta(hours=2)) is None

    def test_spring_forward_opening_inside_the_gap(self) -> None:
        s = Schedule("America/New_York", weekly(sun="02:30-05:00"))
        assert s.next_open(local("America/New_York", 2026, 3, 8, 0, 0)) == dt.datetime(
            2026, 3, 8, 7, 0, tzinfo=UTC
        )
        gap_only = Schedule("America/New_York", weekly(sun="02:10-02:50"))
        assert gap_only.next_open(local("America/New_York", 2026, 3, 8, 0, 0)) == dt.datetime(
            2026, 3, 15, 6, 10, tzinfo=UTC
        )

    def test_fall_back_opening_at_a_repeated_time(self) -> None:
        s = Schedule("America/New_York", weekly(sun="01:30-01:45"))
        first = s.next_open(local("America/New_York", 2026, 11, 1, 0, 0))
        assert first == dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # the first 01:30 (EDT)
        # During the repeated hour the interval has passed: the next one is a week later.
        again = s.next_open(local("America/New_York", 2026, 11, 1, 1, 0, fold=1))
        assert again == dt.datetime(2026, 11, 8, 6, 30, tzinfo=UTC)

    @settings(max_examples=40, deadline=None)
    @given(case=schedule_and_instant())
    def test_is_the_first_open_instant(self, case: tuple[Schedule, dt.datetime]) -> None:
        schedule, after = case
        result = schedule.next_open(after)
        horizon = after + dt.timedelta(days=14)
        if result is None:
            assert not any(schedule.is_open(m) for m in minutes_between(after, horizon))
            return
        assert result.tzinfo is UTC
        assert after <= result <= horizon
        assert schedule.is_open(result)
        assert reference_is_open(schedule, result)
        # Nothing open before it: openness only changes on whole minutes here, so checking ``after`` and
        # each minute up to the result covers every earlier instant.
        assert not any(schedule.is_open(m) for m in minutes_between(after, result))


# -- describe, construction ----------------------------------------------------------------------------------


class TestDescribe:
    def test_brief_example(self) -> None:
        s = Schedule("America/Chicago", weekly(weekdays="08:00-18:00", sat="09:00-13:00"))
        assert s.describe() == "Monday to Friday 8 AM to 6 PM, Saturday 9 AM to 1 PM Central time"

    @pytest.mark.parametrize(
        "zone, hours, text",
        [
            ("America/New_York", dict(daily="09:00-17:30"), "every day 9 AM to 5:30 PM Eastern time"),
            ("America/Los_Angeles", dict(mon="08:00-12:00, 13:00-17:00", wed="08:00-12:00, 13:00-17:00"),
             "Monday and Wednesday 8 AM to noon and 1 PM to 5 PM Pacific time"),
            ("America/Denver", dict(fri="22:00-06:00", sat="22:00-06:00"),
             "Friday and Saturday 10 PM to 6 AM Mountain time"),
            ("America/Indiana/Knox", dict(mon="12:00-24:00"), "Monday noon to midnight Central time"),
            ("Europe/London", dict(weekend="10:00-16:00"), "Saturday and Sunday 10 AM to 4 PM London time"),
            ("America/Phoenix", dict(mon="24h", tue="24h", thu="24h"),
             "Monday, Tuesday and Thursday 24 hours Arizona time"),
            ("UTC", {}, "closed"),
            ("America/Adak", dict(weekdays="08:00-17:00"), "Monday to Friday 8 AM to 5 PM Hawaii-Aleutian time"),
            # Days across the week's end said in the order a caller counts them (not "Monday, Saturday and
            # Sunday"); zones outside the US and Canada named by their city, not by a US zone's offset.
            ("America/Chicago", dict(sat="09:00-17:00", sun="09:00-17:00", mon="09:00-17:00"),
             "Saturday to Monday 9 AM to 5 PM Central time"),
            ("America/Chicago", dict(sun="09:00-17:00", mon="09:00-17:00", wed="09:00-17:00"),
             "Sunday, Monday and Wednesday 9 AM to 5 PM Central time"),
            ("America/Bogota", dict(weekdays="08:00-17:00"), "Monday to Friday 8 AM to 5 PM Bogota time"),
            ("America/Lima", dict(weekdays="08:00-17:00"), "Monday to Friday 8 AM to 5 PM Lima time"),
            ("America/Kentucky/Monticello", dict(mon="08:00-17:00"), "Monday 8 AM to 5 PM Eastern time"),
            ("America/Toronto", dict(mon="08:00-17:00"), "Monday 8 AM to 5 PM Eastern time"),
            # Adak's other name: a zone at Hawaii's standard offset that keeps summer time is Hawaii-Aleutian
            # time, never Hawaii's (which keeps none: an hour off all summer).
            ("America/Atka", dict(mon="08:00-17:00"), "Monday 8 AM to 5 PM Hawaii-Aleutian time"),
        ],
    )  # fmt: skip
    def test_texts(self, zone: str, hours: dict[str, str], text: str) -> None:
        assert Schedule(zone, parse_weekly(hours)).describe() == text

    def test_always_and_holidays(self) -> None:
        assert Schedule.always().describe() == "24 hours a day, 7 days a week"
        s = Schedule("America/Chicago", weekly(weekdays="08:00-18:00"), holiday_country="US")
        assert s.describe() == "Monday to Friday 8 AM to 6 PM Central time, closed on public holidays"


class TestConstruction:
    @pytest.mark.parametrize(
        "kwargs, message",
        [
            (dict(timezone="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
            (dict(weekly={7: ()}), "weekdays 0 (Monday) to 6 (Sunday)"),
            (dict(weekly={0: "08:00-18:00"}), "use parse_hours"),
            (dict(weekly={0: ((T(8),),)}), "(start, end) time pairs"),
            (dict(exceptions={dt.datetime(2026, 1, 1): ()}), "exception keys are dates"),
            (dict(holiday_country="XX"), "no public holiday calendar for 'XX'"),
            (dict(holiday_country="US", holiday_subdivision="ZZ"), "'US / ZZ'"),
            (dict(holiday_subdivision="TX"), "needs a holiday_country"),
        ],
    )
    def test_errors(self, kwargs: dict[str, object], message: str) -> None:
        values: dict[str, object] = {"timezone": "UTC", "weekly": {}}
        values.update(kwargs)
        with pytest.raises(ValueError) as info:
            Schedule(**values)  # type: ignore[arg-type]
        assert message in str(info.value)

    def test_equality_hash_pickle_and_immutability(self) -> None:
        a = Schedule("America/Chicago", weekly(weekdays="08:00-18:00"), {dt.date(2026, 12, 24): ()}, "US")
        b = Schedule(
            "America/Chicago", {d: ((T(8), T(18)),) for d in range(5)}, {dt.date(2026, 12, 24): ()}, "US"
        )
        assert a == b and hash(a) == hash(b)
        assert pickle.loads(pickle.dumps(a)) == a
        assert pickle.loads(pickle.dumps(a)).is_open(local("America/Chicago", 2026, 11, 24, 9, 0))
        with pytest.raises(TypeError):
            a.weekly[5] = ((T(8), T(9)),)  # type: ignore[index]
        assert a.weekly[6] == ()


def test_a_day_may_hold_an_overnight_range_and_an_early_one():
    """Monday 05:00-07:00 and Monday 22:00 to Tuesday 06:00 are two periods: the overnight range runs into
    Tuesday's hours, not Monday's (it used to be refused as an overlap)."""
    assert parse_hours("05:00-07:00, 22:00-06:00") == ((dt.time(5), dt.time(7)), (dt.time(22), dt.time(6)))
