"""Cap counts of finished periods deleted (``network/cap_counts.py``): never a row a cap can still read, in any
time zone, around any period boundary; the old ones gone, in small batches, by ``network prune-cap-counts`` and
by the background pass; nothing else deleted. They were never deleted: 315 targets with caps wrote 740,000
rows in six months."""

from __future__ import annotations

import datetime as dt
import io
import types
import zoneinfo

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st

from callbroker.network import cap_counts
from callbroker.network import models as m
from callbroker.network.cap_counts import KEPT_AFTER_ITS_END, forget_finished_periods, last_finished_periods, may_go
from callbroker.network.live import period_keys

#: Every zone a buyer may name (the loader takes any IANA name).
ZONES = sorted(zoneinfo.available_timezones() - {"Factory", "localtime"})
#: The zones furthest from UTC, drawn as often as all the others together.
EDGES = ("Etc/GMT+12", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Pacific/Chatham", "Asia/Kathmandu", "UTC")
ZONE_NAMES = st.one_of(st.sampled_from(EDGES), st.sampled_from(ZONES))
#: How long after a moment a cap reads its periods: from KEPT_AFTER_ITS_END before (a late write), often close
#: to that edge, to years on.
LATER = st.one_of(st.timedeltas(min_value=-KEPT_AFTER_ITS_END, max_value=-KEPT_AFTER_ITS_END + dt.timedelta(days=2)),
                  st.timedeltas(min_value=-KEPT_AFTER_ITS_END, max_value=dt.timedelta(days=800)))
MOMENTS = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2090, 1, 1), timezones=st.just(dt.UTC))


@settings(max_examples=400, deadline=None)
@given(MOMENTS, ZONE_NAMES, LATER)
def test_no_period_a_cap_can_read_may_go_in_any_zone(now, zone, later):
    """A cap reads the hour, day and month of the moment a call is routed or reserved (now, or later), and a
    late final status or a replay writes in the periods of a call started up to KEPT_AFTER_ITS_END ago."""
    at = now + later
    assert not [key for key in period_keys(at, zone) if may_go(key, now)], (at, zone)


@settings(max_examples=400, deadline=None)
@given(MOMENTS, ZONE_NAMES, st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=3000)))
def test_every_period_over_everywhere_long_enough_ago_goes(now, zone, earlier):
    """A month over in every zone (the latest, UTC-12, ends 12 h after UTC) three days ago: its hours, days and
    itself go."""
    at = now - KEPT_AFTER_ITS_END - dt.timedelta(days=32, hours=28) - earlier
    assert all(may_go(key, now) for key in period_keys(at, zone)), (at, zone, last_finished_periods(now))


@pytest.mark.parametrize("now,expected", [
    # edge = now - 14 h - 3 days = 2026-12-04 00:00: the last hour and the day of the 3rd end at it, November
    # before it. A minute earlier, neither has ended.
    (dt.datetime(2026, 12, 7, 14, tzinfo=dt.UTC), ("H2026120323", "D20261203", "M202611")),
    (dt.datetime(2026, 12, 7, 13, 59, tzinfo=dt.UTC), ("H2026120322", "D20261202", "M202611")),
    (dt.datetime(2026, 12, 4, 13, 59, tzinfo=dt.UTC), ("H2026113022", "D20261129", "M202610")),
    (dt.datetime(2027, 1, 4, 14, tzinfo=dt.UTC), ("H2026123123", "D20261231", "M202612")),
])
def test_the_last_periods_that_go_at_their_boundaries(now, expected):
    assert last_finished_periods(now) == expected


# ---- in the database -------------------------------------------------------------------------------------


@pytest.fixture
def targets(db):
    campaign = m.Campaign.objects.create(key="c", name="C", category="plumbing")
    buyers = [m.Buyer.objects.create(key=f"b{n}", name=f"B{n}", timezone=zone)
              for n, zone in enumerate(("Pacific/Kiritimati", "Etc/GMT+12", "America/Chicago"))]
    return [m.Target.objects.create(key=f"t{n}", campaign=campaign, buyer=buyer, number=f"+1512555015{n}",
                                    hourly_cap=5, daily_cap=20, monthly_cap=100) for n, buyer in enumerate(buyers)]


NOW = dt.datetime(2026, 12, 7, 14, tzinfo=dt.UTC)


def _usage() -> set[tuple[int, str]]:
    return set(m.TargetUsage.objects.values_list("target_id", "period"))


@pytest.mark.django_db
def test_the_rows_of_finished_periods_go_and_those_a_cap_reads_stay(targets):
    rows = set()
    for target in targets:
        zone = target.buyer.timezone
        # What caps read now and what a late status may still write (KEPT_AFTER_ITS_END back), every hour.
        for hours in range(-int(KEPT_AFTER_ITS_END / dt.timedelta(hours=1)), 48):
            rows |= {(target.id, key) for key in period_keys(NOW + dt.timedelta(hours=hours), zone)}
        # Months of old periods.
        for hours in range(24 * 30 * 3):
            rows |= {(target.id, key) for key in period_keys(NOW - dt.timedelta(days=5, hours=hours), zone)}
    odd = {(targets[0].id, period) for period in ("d:2026-12-01", "H20261", "X2026120100", "h2026110100",
                                                  "D2026110", "M20261")}  # no key of period_keys: left alone
    m.TargetUsage.objects.bulk_create([m.TargetUsage(target_id=t, period=p, count=1) for t, p in rows | odd])
    states = m.TargetState.objects.count()

    deleted = forget_finished_periods(NOW, batch=50)

    kept = _usage()
    assert kept == {(t, p) for t, p in rows if not may_go(p, NOW)} | odd
    assert deleted == len(rows | odd) - len(kept) > 5000
    for target in targets:  # every period a cap reads now or later, or a late write may reach, still there
        for hours in range(-int(KEPT_AFTER_ITS_END / dt.timedelta(hours=1)), 48):
            assert {(target.id, key) for key in period_keys(NOW + dt.timedelta(hours=hours), target.buyer.timezone)} <= kept
    assert m.Target.objects.count() == 3 and m.TargetState.objects.count() == states


@pytest.mark.django_db
def test_they_go_in_small_batches_along_the_targets_period_index(targets):
    old = [m.TargetUsage(target=targets[0], period=f"H202611{day:02d}{hour:02d}", count=1)
           for day in range(1, 11) for hour in range(24)]  # 240 finished hours
    m.TargetUsage.objects.bulk_create(old)

    with CaptureQueriesContext(connection) as queries:
        assert forget_finished_periods(NOW, batch=100, most=150) == 150  # at most: the next pass goes on
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert forget_finished_periods(NOW, batch=100) == 90 and not _usage()

    assert len(deletes) == 2  # 100, then the 50 left of "most": one transaction each
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + deletes[0])
        plan = [row[-1] for row in cursor.fetchall()]
    assert any("USING COVERING INDEX" in step and "target_id=?" in step and "period>?" in step for step in plan), plan
    assert not [step for step in plan if step.startswith("SCAN")], plan


@pytest.mark.django_db
def test_the_command_deletes_them_showing_its_progress(targets, monkeypatch):
    from callbroker.network.management.commands import network

    m.TargetUsage.objects.bulk_create([m.TargetUsage(target=t, period="H2020010100", count=3) for t in targets]
                                      + [m.TargetUsage(target=targets[0], period="M209901", count=1)])
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(network, "PROGRESS_EVERY_S", 0.0)  # a line after each target, as in a long run

    call_command("network", "prune-cap-counts", stdout=out, stderr=err)

    assert out.getvalue().startswith("Deleted 3 cap counts of finished periods (hours up to H")
    assert err.getvalue() == "… 1 of 3 targets, 1 cap count deleted so far\n… 2 of 3 targets, 2 cap counts deleted so far\n"
    assert _usage() == {(targets[0].id, "M209901")}
    out = io.StringIO()
    call_command("network", "prune-cap-counts", stdout=out, stderr=io.StringIO())
    assert out.getvalue().startswith("No cap count of a finished period to delete (kept: hours after H")


@pytest.mark.django_db
def test_a_quick_run_prints_no_progress(targets, monkeypatch):
    """A line a target, of nothing deleted, was the whole output of a run on the demo network (15 lines)."""
    from callbroker.network.management.commands import network

    m.TargetUsage.objects.bulk_create([m.TargetUsage(target=t, period="H2020010100", count=3) for t in targets])
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(network, "clock", lambda: 1000.0)  # the run within its first second, however slow

    call_command("network", "prune-cap-counts", stdout=out, stderr=err)

    assert out.getvalue().startswith("Deleted 3 cap counts") and err.getvalue() == ""


@pytest.mark.django_db(transaction=True)
def test_the_background_pass_deletes_them_when_set_to(settings, targets):
    from callbroker.calls import replay

    now = dt.datetime.now(dt.UTC)
    current = period_keys(now, "Etc/GMT+12")
    m.TargetUsage.objects.bulk_create([m.TargetUsage(target=targets[1], period=p, count=1)
                                       for p in ("H2020010100", "D20200101", "M202001", *current)])
    settings.CLOSE_ABANDONED_EVERY_S = 0  # off (tests, the CLI)
    replay.background_pass(0.0)
    assert len(_usage()) == 6
    settings.CLOSE_ABANDONED_EVERY_S = 600
    replay.background_pass(0.0)
    assert _usage() == {(targets[1].id, p) for p in current}
    assert cap_counts.MOST_A_PASS >= 10_000


@pytest.mark.django_db
def test_calls_close_abandoned_deletes_them_as_the_background_pass_does(settings, targets):
    """Where the app processes don't sweep (``CALLBROKER_CLOSE_ABANDONED_EVERY=0``), ``calls close-abandoned`` runs
    from a timer as the background pass's sweeps, once (deploy/env.example): it closed the calls and kept the
    statuses but left the cap counts to grow for good, the very thing the pass now deletes."""
    settings.CLOSE_ABANDONED_EVERY_S = 0
    current = period_keys(dt.datetime.now(dt.UTC), "Etc/GMT+12")
    m.TargetUsage.objects.bulk_create([m.TargetUsage(target=targets[1], period=p, count=1)
                                       for p in ("H2020010100", "D20200101", "M202001", *current)])
    out = io.StringIO()

    call_command("calls", "close-abandoned", stdout=out)

    assert _usage() == {(targets[1].id, p) for p in current}
    assert "Deleted 3 cap counts of finished periods" in out.getvalue(), out.getvalue()
    out = io.StringIO()
    call_command("calls", "close-abandoned", stdout=out)
    assert "cap count" not in out.getvalue()  # nothing to delete: nothing said, as before


@pytest.mark.django_db
def test_an_hours_second_time_goes_once_over_as_the_hours_up_to_it(targets):
    """When the clocks go back, an hour's second time has a key of its own (``H2026110101b``, Chicago's
    second 01:xx, ``core.periods.REPEATED_HOUR``), a character longer than an hour's: its rows were never
    deleted. It goes once the hour after its first time is over everywhere long enough ago, with that hour; a
    key like it but for its last character, or longer, is no key and stays."""
    chicago = targets[2]
    hours = ("H2026110100", "H2026110101", "H2026110101b", "H2026110102")
    odd = ("H2026110101B", "H2026110101c", "H20261101011", "H2026110101bb")
    m.TargetUsage.objects.bulk_create([m.TargetUsage(target=chicago, period=p, count=1) for p in hours + odd])
    first_over = dt.datetime(2026, 11, 4, 16, tzinfo=dt.UTC)  # the last hour over everywhere 3 days ago: 01
    assert last_finished_periods(first_over)[0] == "H2026110101"

    assert forget_finished_periods(first_over) == 2
    assert {p for _, p in _usage()} == {"H2026110101b", "H2026110102", *odd}
    assert forget_finished_periods(first_over + dt.timedelta(hours=1)) == 2
    assert {p for _, p in _usage()} == set(odd)
    assert [p for p in hours + odd if may_go(p, first_over)] == ["H2026110100", "H2026110101"]
    assert [p for p in hours + odd if may_go(p, first_over + dt.timedelta(hours=1))] == list(hours)


def _clock_at(moment: dt.datetime) -> types.SimpleNamespace:
    """What the command reads of ``datetime``, at ``moment``."""

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return moment.astimezone(tz)

    return types.SimpleNamespace(datetime=Frozen, UTC=dt.UTC)


@pytest.mark.django_db
def test_the_command_names_what_it_keeps_after_a_fall_back_hour(targets, monkeypatch):
    """When the last hour over everywhere is a fall-back's first 01:xx, its second time (``H…01b``) is kept:
    the line said "kept: hours from H2026110102", as if ``H2026110101b`` were gone. It names the last hour
    that goes and keeps what comes after it, the second time included."""
    from callbroker.network.management.commands import network

    chicago = targets[2]
    m.TargetUsage.objects.bulk_create([m.TargetUsage(target=chicago, period=p, count=1)
                                       for p in ("H2026110101", "H2026110101b")])
    monkeypatch.setattr(network, "dt", _clock_at(dt.datetime(2026, 11, 4, 16, 30, tzinfo=dt.UTC)))

    out = io.StringIO()
    call_command("network", "prune-cap-counts", stdout=out, stderr=io.StringIO())
    assert out.getvalue() == ("Deleted 1 cap count of finished periods (hours up to H2026110101, days up to "
                              "D20261031, months up to M202610, each over in every time zone 3 days ago); the counts "
                              "a cap can still read are kept.\n")
    out = io.StringIO()
    call_command("network", "prune-cap-counts", stdout=out, stderr=io.StringIO())
    assert out.getvalue() == ("No cap count of a finished period to delete (kept: hours after H2026110101, days "
                              "after D20261031, months after M202610).\n")
    assert {p for _, p in _usage()} == {"H2026110101b"}
