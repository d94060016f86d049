"""Balances and statements: sums of the entries posted in a month, exact to the cent, per currency.

Given calls posted in November and December (one of them reversed in December), when we ask for a buyer's
charges or a publisher's payouts of a month, then every entry posted that month is on its call's line, the
lines sum to the total, and the total is the balance.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from callbroker.billing.statements import (
    Period,
    buyer_charges,
    buyer_statement,
    publisher_payouts,
    publisher_statement,
)
from tests.billing.conftest import DEC, NOV, post

pytestmark = pytest.mark.django_db


@pytest.fixture
def posted(make_billable, clock):
    """Two calls charged in November, one of them reversed in December, a third charged in December, and
    a call that was never billable."""
    first = make_billable(revenue="45.00", payout="20.00")
    second = make_billable(revenue="45.10", payout="20.20")
    third = make_billable(revenue="30.05", payout="10.00", started_at=DEC - dt.timedelta(minutes=3))
    never = make_billable(verdict="not_billable")
    with clock.at(NOV):
        post(first)
        post(second)
        post(never)
    with clock.at(DEC):
        second.verdict, second.reason_codes = "not_billable", ["caller_velocity"]
        second.revenue = second.payout = Decimal("0.00")
        post(second)
        post(third)
    return {"first": first, "second": second, "third": third, "never": never}


def test_period_month_is_a_utc_calendar_month():
    november = Period.month("2026-11")
    assert (november.start, november.end, november.label) == (
        dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 12, 1, tzinfo=dt.UTC), "2026-11")
    assert Period.month("2026-12").end == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert Period.month_of(dt.datetime(2026, 11, 30, 23, 59, tzinfo=dt.UTC)) == november
    two_hours_east = dt.timezone(dt.timedelta(hours=2))
    assert Period.month_of(dt.datetime(2026, 12, 1, 0, 30, tzinfo=two_hours_east)) == november


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "26-11", "2026-1", "2026/11", "November", "",
                                  "0000-01", "9999-12", "２０２６-11"])
def test_period_month_refuses_anything_but_yyyy_mm(text):
    with pytest.raises(ValueError, match="YYYY-MM"):
        Period.month(text)


def test_buyer_statement_has_a_line_per_call_and_lines_sum_to_the_balance(posted, acme):
    november, december = Period.month("2026-11"), Period.month("2026-12")

    nov = buyer_statement(acme, november)
    assert [(line.call_sid, line.amount) for line in nov.lines] == [
        (posted["first"].call_sid, Decimal("45.00")), (posted["second"].call_sid, Decimal("45.10"))]
    assert nov.totals == {"USD": Decimal("90.10")} == buyer_charges(acme, november)

    dec = buyer_statement(acme, december)
    # The reversal is posted in December, on the line of the call it belongs to: November stays as it was.
    assert [(line.call_sid, line.amount, [e.kind for e in line.entries]) for line in dec.lines] == [
        (posted["second"].call_sid, Decimal("-45.10"), ["charge_reversal"]),
        (posted["third"].call_sid, Decimal("30.05"), ["charge"])]
    assert dec.totals == {"USD": Decimal("-15.05")} == buyer_charges(acme, december)
    assert dec.lines[0].entries[0].memo == "call no longer billable (caller_velocity)"
    assert dec.lines[0].call_started_at == posted["second"].started_at
    assert dec.lines[0].campaign == "Austin Plumbing"
    # Nothing in October.
    assert buyer_statement(acme, Period.month("2026-10")).lines == ()
    assert buyer_charges(acme, Period.month("2026-10")) == {}


def test_a_statement_keeps_the_calls_archived_since(posted, acme, google):
    """The ledger outlives the calls (docs/database.md, retention): a closed month reads the same after its
    call rows are archived, the start time of each call left out."""
    from django.db import connection

    november = Period.month("2026-11")
    before = buyer_statement(acme, november)
    with connection.cursor() as cursor:  # as the retention procedure does: the rows, not the ledger's
        cursor.execute("DELETE FROM calls_callattempt")
        cursor.execute("DELETE FROM calls_call WHERE call_sid = %s", [posted["first"].call_sid])
    after = buyer_statement(acme, november)
    assert [(line.call_sid, line.amount) for line in after.lines] == [(line.call_sid, line.amount) for line in before.lines]
    assert after.totals == {"USD": Decimal("90.10")} == buyer_charges(acme, november)
    assert [line.call_started_at for line in after.lines] == [None, posted["second"].started_at]
    assert publisher_statement(google, november).totals == {"USD": Decimal("40.20")}


def test_publisher_statement_sums_payouts(posted, google):
    nov = publisher_statement(google, Period.month("2026-11"))
    assert [line.amount for line in nov.lines] == [Decimal("20.00"), Decimal("20.20")]
    assert nov.totals == {"USD": Decimal("40.20")} == publisher_payouts(google, Period.month("2026-11"))
    assert publisher_payouts(google, Period.month("2026-12")) == {"USD": Decimal("-10.20")}


def test_totals_are_exact_decimals(make_billable, acme, clock):
    # Ten calls at 0.10: a float sum would be 0.9999999999999999.
    with clock.at(NOV):
        for _ in range(10):
            post(make_billable(revenue="0.10", payout="0.01"))
    assert buyer_charges(acme, Period.month("2026-11")) == {"USD": Decimal("1.00")}
    statement = buyer_statement(acme, Period.month("2026-11"))
    assert statement.totals == {"USD": Decimal("1.00")}
    assert all(isinstance(line.amount, Decimal) for line in statement.lines)


def test_totals_are_kept_apart_per_currency(make_billable, make_campaign, make_target, make_tracking_number,
                                            make_call, acme, google, clock):
    canada = make_campaign(key="toronto-plumbing", name="Toronto Plumbing", currency="CAD")
    target = make_target(campaign=canada, buyer=acme, price=Decimal("60.00"))
    tracking = make_tracking_number(campaign=canada, publisher=google)
    cad_call = make_call(tracking_number=tracking, verdict="billable", revenue=Decimal("60.00"),
                         payout=Decimal("25.00"), attempts=[{"target": target, "result": "bridged",
                                                             "talk_seconds": 90}])
    with clock.at(NOV):
        post(make_billable(revenue="45.00"))
        post(cad_call)
    assert buyer_charges(acme, Period.month("2026-11")) == {"CAD": Decimal("60.00"), "USD": Decimal("45.00")}
    statement = buyer_statement(acme, Period.month("2026-11"))
    assert statement.totals == {"CAD": Decimal("60.00"), "USD": Decimal("45.00")}
    assert statement.to_dict()["totals"] == {"CAD": "60.00", "USD": "45.00"}
