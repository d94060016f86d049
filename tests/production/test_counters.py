"""The live counters behave the same on both backends: Redis (Lua scripts) and SQL on PostgreSQL.

Given a target with a concurrency limit and caps, when calls reserve and release, then the slot and
every cap are taken all or nothing, given back on release, and counted per period of the buyer's
local time.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from tests.production.conftest import TZ, now_utc


def test_reserve_respects_the_concurrency_limit(counters):
    target = counters.target(concurrency_limit=2)
    now = now_utc()
    assert counters.reserve(target, now) is None
    assert counters.reserve(target, now) is None
    assert counters.reserve(target, now) == "concurrency_full"
    assert counters.read([target], now)[target["id"]][0] == 2


def test_an_unlimited_target_is_still_counted(counters):
    target = counters.target()
    now = now_utc()
    for _ in range(3):
        assert counters.reserve(target, now) is None
    assert counters.read([target], now)[target["id"]] == (3, 0, 0, 0)


def test_a_limit_of_zero_takes_no_call(counters):
    now = now_utc()
    assert counters.reserve(counters.target(concurrency_limit=0), now) == "concurrency_full"
    assert counters.reserve(counters.target(hourly_cap=0), now) == "hourly_cap"
    assert counters.reserve(counters.target(monthly_cap=0), now) == "monthly_cap"


def test_every_cap_is_enforced_and_named(counters):
    now = now_utc()
    for field, code in (("hourly_cap", "hourly_cap"), ("daily_cap", "daily_cap"), ("monthly_cap", "monthly_cap")):
        target = counters.target(**{field: 2})
        assert counters.reserve(target, now) is None
        assert counters.reserve(target, now) is None
        assert counters.reserve(target, now) == code, field


def test_reservation_is_all_or_nothing(counters):
    """A call refused by the daily cap leaves the slot and the hourly and monthly counts untouched."""
    target = counters.target(concurrency_limit=5, hourly_cap=10, daily_cap=2, monthly_cap=10)
    now = now_utc()
    assert counters.reserve(target, now) is None
    assert counters.reserve(target, now) is None
    for _ in range(3):
        assert counters.reserve(target, now) == "daily_cap"
    assert counters.read([target], now)[target["id"]] == (2, 2, 2, 2)


def test_concurrency_is_checked_before_the_caps(counters):
    target = counters.target(concurrency_limit=1, hourly_cap=1)
    now = now_utc()
    assert counters.reserve(target, now) is None
    assert counters.reserve(target, now) == "concurrency_full"
    counters.release(target, now, undo_usage=False)
    assert counters.reserve(target, now) == "hourly_cap"
    assert counters.read([target], now)[target["id"]] == (0, 1, 0, 0)


def test_release_gives_the_slot_back_and_undoes_usage_only_when_asked(counters):
    target = counters.target(concurrency_limit=1, hourly_cap=5, daily_cap=5, monthly_cap=5)
    now = now_utc()
    assert counters.reserve(target, now) is None
    counters.release(target, now, undo_usage=False)  # delivered: the call counts towards the caps
    assert counters.read([target], now)[target["id"]] == (0, 1, 1, 1)
    assert counters.reserve(target, now) is None
    counters.release(target, now, undo_usage=True)  # not delivered: the caps get it back
    assert counters.read([target], now)[target["id"]] == (0, 1, 1, 1)


def test_release_never_goes_below_zero(counters):
    target = counters.target(concurrency_limit=1, hourly_cap=1)
    now = now_utc()
    counters.release(target, now, undo_usage=True)
    counters.release(target, now, undo_usage=True, known=False)  # a deleted target: slot only
    assert counters.read([target], now)[target["id"]] == (0, 0, 0, 0)
    assert counters.reserve(target, now) is None
    assert counters.reserve(target, now) == "concurrency_full"


def test_caps_count_per_period_of_the_buyers_local_time(counters):
    """Chicago: 23:30 and 00:30 local are one UTC day but two local days (and two local hours)."""
    chicago = ZoneInfo(TZ)
    day = (dt.datetime.now(chicago) + dt.timedelta(days=2)).date()  # ahead: Redis keys expire after the period
    late = dt.datetime.combine(day, dt.time(23, 30), tzinfo=chicago)
    later_same_day = dt.datetime.combine(day, dt.time(23, 50), tzinfo=chicago)
    next_day = late + dt.timedelta(hours=1)
    assert late.astimezone(dt.UTC).date() == next_day.astimezone(dt.UTC).date()
    target = counters.target(daily_cap=1)
    assert counters.reserve(target, late) is None
    assert counters.reserve(target, later_same_day) == "daily_cap"
    assert counters.reserve(target, next_day) is None
    hourly = counters.target(hourly_cap=1)
    assert counters.reserve(hourly, late) is None
    assert counters.reserve(hourly, later_same_day) == "hourly_cap"
    assert counters.reserve(hourly, next_day) is None


def test_undo_applies_to_the_period_the_call_was_counted_in(counters):
    chicago = ZoneInfo(TZ)
    day = (dt.datetime.now(chicago) + dt.timedelta(days=2)).date()
    started = dt.datetime.combine(day, dt.time(23, 59), tzinfo=chicago)
    ended = started + dt.timedelta(minutes=2)  # the next local day
    target = counters.target(daily_cap=1)
    assert counters.reserve(target, started) is None
    counters.release(target, started, undo_usage=True)  # released after midnight, counted before it
    assert counters.reserve(target, started) is None
    assert counters.read([target], ended)[target["id"]][2] == 0
    assert counters.read([target], started)[target["id"]][2] == 1
