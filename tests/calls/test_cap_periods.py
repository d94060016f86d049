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
