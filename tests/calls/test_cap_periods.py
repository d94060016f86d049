"""A call's cap units are counted and given back in the same local hour, day and month.

Given the one-line e2e campaign with an hourly cap, when a call is routed at 07:59:59.990 in the buyer's
time zone (Chicago) and its webhook gets the write lock 30 ms later, in the next hour, then the unit is
counted in the hour the attempt starts in (08), and when the caller hangs up while the line still rings,
the unit is given back in that same hour: no hour keeps a unit for a call that wasn't delivered, and no
unit of another call is taken back.
"""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.utils import timezone

from callbroker.calls import services
from callbroker.calls.events import InboundCall, StatusUpdate
from callbroker.calls.models import CallAttempt
from callbroker.network import live
from callbroker.network.models import Target, TargetUsage

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

ONE_LINE = "+15125550005"  # e2e-concurrency: Solo Heating's only line, America/Chicago
DECIDED = dt.datetime(2026, 11, 27, 13, 59, 59, 990000, tzinfo=dt.UTC)  # 07:59:59.990 in Chicago
WRITTEN = DECIDED + dt.timedelta(milliseconds=30)  # 08:00:00.020: the webhook waited for the write lock


def usage(line: Target) -> dict[str, int]:
    return dict(TargetUsage.objects.filter(target=line, period__startswith="H").values_list("period", "count"))


def test_a_unit_counted_after_the_hour_turned_is_given_back_in_that_hour():
    line = Target.objects.get(key="solo-line")
    line.concurrency_limit, line.hourly_cap = None, 1
    line.save()
    sid = "CA" + "c" * 32
    inbound = InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw="+17375550201", to=ONE_LINE,
                          from_zip="78701", from_state="TX")
    with mock.patch.object(timezone, "now", lambda: DECIDED):
        write = services.prepare_call(inbound)  # routed (reads only), before the write lock
    with mock.patch.object(timezone, "now", lambda: WRITTEN):
        steps = write()
    assert steps[-1].number == line.number
    attempt = CallAttempt.objects.get(call__call_sid=sid)
    hour = live.period_keys(attempt.started_at, "America/Chicago")[0]
    assert hour == "H2026112708" and usage(line) == {hour: 1}

    ended = WRITTEN + dt.timedelta(seconds=20)
    with mock.patch.object(timezone, "now", lambda: ended):
        services.call_status(sid, StatusUpdate(status="completed", duration=20, sequence="3"), now=ended)
    assert set(usage(line).values()) == {0}  # given back where it was counted


# ---- the hour that comes twice: Chicago falls back on 2026-11-01 (02:00 CDT -> 01:00 CST) ----------------

FIRST_ONE_AM = dt.datetime(2026, 11, 1, 6, 30, tzinfo=dt.UTC)  # 01:30 CDT, the first 01:xx
SECOND_ONE_AM = dt.datetime(2026, 11, 1, 7, 30, tzinfo=dt.UTC)  # 01:30 CST, an hour later, the second 01:xx


def rings_the_line_at(n: int, at: dt.datetime, line: Target) -> bool:
    """Whether call ``n``, routed and dialled at ``at`` (the clock stopped there), rings ``line`` (else its
    caller hears the campaign's end: the line is full)."""
    inbound = InboundCall(call_sid="CA" + f"{n:032x}", account_sid="AC" + "0" * 32,
                          from_raw=f"+1737555{n:04d}", to=ONE_LINE, from_zip="78701", from_state="TX")
    with mock.patch.object(timezone, "now", lambda: at):
        steps = services.prepare_call(inbound)()
    return getattr(steps[-1], "number", None) == line.number


def test_each_of_the_two_one_oclock_hours_of_the_fall_back_has_its_own_hourly_cap():
    """Until 2026-12-08 both 01:xx hours were counted under H2026110101: a line capped at one call an hour
    took one call in those two real hours together, the second hour's caller went to the fallback."""
    line = Target.objects.get(key="solo-line")
    line.concurrency_limit, line.hourly_cap = None, 1
    line.save()
    assert rings_the_line_at(1, FIRST_ONE_AM, line)
    assert rings_the_line_at(2, SECOND_ONE_AM, line)
    assert not rings_the_line_at(3, SECOND_ONE_AM + dt.timedelta(minutes=20), line)  # that hour is full
    assert usage(line) == {"H2026110101": 1, "H2026110101b": 1}
    second = CallAttempt.objects.get(call__call_sid="CA" + f"{2:032x}")
    assert second.counted_periods == "H2026110101b"

    # Call 2 hangs up while the line rings: its unit goes back in the hour it was counted in, not the first's.
    ended = SECOND_ONE_AM + dt.timedelta(seconds=20)
    with mock.patch.object(timezone, "now", lambda: ended):
        services.call_status(second.call.call_sid,
                             StatusUpdate(status="completed", duration=20, sequence="3"), now=ended)
    assert usage(line) == {"H2026110101": 1, "H2026110101b": 0}
