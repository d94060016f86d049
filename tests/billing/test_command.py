"""``callbroker billing statement|check``: statements as a table or JSON; the ledger checked against calls.

Given posted calls, when an operator asks for a statement, then it lists each call and the total; when
anyone changes a call's money or the ledger behind the call flow's back, ``billing check`` says which call
and what, and exits non-zero.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from callbroker.billing.models import LedgerEntry
from callbroker.billing.reconcile import check_ledger, ledger_mismatches
from callbroker.calls.models import Call
from tests.billing.conftest import DEC, NOV, post

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("billing", *args, stdout=out)
    return out.getvalue()


def run_failing(*args: str) -> tuple[str, str]:
    """(stdout, error message) of a command that must fail."""
    out = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("billing", *args, stdout=out)
    return out.getvalue(), str(failure.value)


@pytest.fixture
def calls(make_billable, clock):
    """Two billable calls posted in November, one not billable."""
    first = make_billable(revenue="45.00", payout="20.00", call_sid="CA" + "1" * 32)
    second = make_billable(revenue="40.00", payout="15.00", call_sid="CA" + "2" * 32)
    never = make_billable(verdict="not_billable", call_sid="CA" + "3" * 32)
    with clock.at(NOV):
        for call in (first, second, never):
            post(call)
    return first, second, never


# ---- statement -----------------------------------------------------------------------------------


def test_statement_lists_each_call_and_the_total(calls):
    text = run("statement", "--buyer", "acme", "--month", "2026-11")
    lines = text.splitlines()
    assert lines[0] == "Charges to buyer ACME Plumbing (acme), posted in 2026-11 (UTC)"
    assert lines[1].split() == ["CALL", "STARTED", "(UTC)", "CALLSID", "CAMPAIGN", "ENTRIES", "AMOUNT"]
    assert "CA" + "1" * 32 in lines[2] and lines[2].endswith("$45.00") and "charge" in lines[2]
    assert "CA" + "2" * 32 in lines[3] and lines[3].endswith("$40.00")
    assert "CA" + "3" * 32 not in text
    assert lines[-1] == "Total: $85.00 (2 calls)"


def test_a_reversal_on_a_statement_says_why(calls, clock):
    """The row said "charge, reversal" and $0.00; why it was reversed (its memo) was in ``--json`` alone."""
    first, _second, _never = calls
    first.verdict, first.reason_codes, first.revenue, first.payout = "not_billable", ["duplicate"], 0, 0
    with clock.at(DEC):
        post(first)
    lines = run("statement", "--buyer", "acme", "--month", "2026-12").splitlines()
    assert "CA" + "1" * 32 in lines[2] and lines[2].endswith("-$45.00") and "reversal" in lines[2]
    assert lines[3] == " " * 21 + "reversal -$45.00: call no longer billable (duplicate)"
    assert lines[4] == "Total: -$45.00 (1 call)"


def test_statement_as_json_has_money_as_strings_and_times_in_utc(calls):
    data = json.loads(run("statement", "--buyer", "ACME plumbing", "--month", "2026-11", "--json"))  # by name
    assert (data["party"], data["key"], data["calls"]) == ("buyer", "acme", 2)
    assert data["period"] == {"label": "2026-11", "from": "2026-11-01T00:00:00Z",
                              "to": "2026-12-01T00:00:00Z"}
    assert data["totals"] == {"USD": "85.00"}
    first = data["lines"][0]
    assert (first["call_sid"], first["amount"], first["currency"], first["campaign"]) == (
        "CA" + "1" * 32, "45.00", "USD", "Austin Plumbing")
    assert first["call_started_at"] == "2026-11-27T14:05:00Z"
    assert first["entries"] == [{"kind": "charge", "kind_label": "Buyer charge", "generation": 1,
                                 "amount": "45.00", "posted_at": "2026-11-27T14:10:00Z",
                                 "memo": "billable call"}]
    assert sum(Decimal(line["amount"]) for line in data["lines"]) == Decimal(data["totals"]["USD"])


def test_a_call_charged_in_two_currencies_counts_once(calls, plumbing, clock):
    """A charge posted again after its campaign's currency changed puts the call on a line per currency;
    it is still one call (the count said "3 calls" for two)."""
    first, _second, _never = calls
    plumbing.currency = "EUR"
    plumbing.save()
    first.revenue = Decimal("50.00")  # a late callback judged it again at the new price
    with clock.at(NOV):
        post(first)
    text = run("statement", "--buyer", "acme", "--month", "2026-11")
    data = json.loads(run("statement", "--buyer", "acme", "--month", "2026-11", "--json"))
    assert [(line["call_sid"], line["currency"]) for line in data["lines"]] == [
        (first.call_sid, "USD"), ("CA" + "2" * 32, "USD"), (first.call_sid, "EUR")]
    assert data["calls"] == 2
    assert data["totals"] == {"EUR": "50.00", "USD": "40.00"}
    assert text.splitlines()[-1] == "Total: €50.00, $40.00 (2 calls)"


def test_publisher_statement(calls):
    text = run("statement", "--publisher", "google", "--month", "2026-11")
    assert text.splitlines()[0] == "Payouts to publisher Google Ads Pub (google), posted in 2026-11 (UTC)"
    assert text.splitlines()[-1] == "Total: $35.00 (2 calls)"
    data = json.loads(run("statement", "--publisher", "google", "--month", "2026-11", "--json"))
    assert [line["amount"] for line in data["lines"]] == ["20.00", "15.00"]


def test_statement_of_a_month_without_entries(calls):
    assert run("statement", "--buyer", "acme", "--month", "2026-10").splitlines()[1] == "Nothing posted."
    assert json.loads(run("statement", "--buyer", "acme", "--month", "2026-10", "--json"))["totals"] == {}


def test_statement_defaults_to_this_month(calls, clock):
    with clock.at(NOV + dt.timedelta(days=1)):
        assert "posted in 2026-11" in run("statement", "--buyer", "acme")
    with clock.at(DEC):
        assert run("statement", "--buyer", "acme").splitlines()[1] == "Nothing posted."


@pytest.mark.parametrize("args,message", [
    (["--buyer", "nobody"], "No buyer with key or name 'nobody'."),
    (["--publisher", "nobody"], "No publisher with key or name 'nobody'."),
    (["--buyer", "acme", "--month", "2026-13"],
     "--month: '2026-13' is not a month: use YYYY-MM, e.g. 2026-11"),
    # Empty values are refused, not read as "not given" (a traceback, or this month).
    (["--buyer", ""], "--buyer: give the buyer's key or name (it is empty)."),
    (["--publisher", " "], "--publisher: give the publisher's key or name (it is empty)."),
    (["--buyer", "acme", "--month", ""], "--month: '' is not a month: use YYYY-MM, e.g. 2026-11"),
])
def test_statement_errors_name_the_problem(calls, args, message):
    assert run_failing("statement", *args)[1] == message


def test_statement_needs_exactly_one_party():
    for args in ([], ["--buyer", "acme", "--publisher", "google"]):
        with pytest.raises(CommandError):
            call_command("billing", "statement", *args, stdout=io.StringIO(), stderr=io.StringIO())


# ---- check ---------------------------------------------------------------------------------------


def test_check_refuses_an_empty_month(calls):
    assert run_failing("check", "--month", "")[1] == "--month: '' is not a month: use YYYY-MM, e.g. 2026-11"


def test_check_passes_when_ledger_and_calls_agree(calls):
    text = run("check")
    assert text.splitlines() == [
        "Ledger check of every call: 2 calls billable or with entries, 2 billable, 2 charged, 2 paid out.",
        "OK: the ledger agrees with every call.",
    ]
    data = json.loads(run("check", "--json"))
    assert (data["ok"], data["billable_calls"], data["charged_calls"], data["mismatches"]) == (True, 2, 2, [])


def test_check_catches_a_call_whose_revenue_was_changed_behind_the_ledgers_back(calls):
    first = calls[0]
    Call.objects.filter(pk=first.pk).update(revenue=Decimal("99.00"))  # tampered: no re-qualification
    out, error = run_failing("check")
    assert f"  {first.call_sid}: charged 45.00 in the ledger, the call says 99.00" in out.splitlines()
    assert error == "The ledger disagrees with 1 call (1 problem)."
    out, _ = run_failing("check", "--json")
    data = json.loads(out)
    assert data["ok"] is False
    assert data["mismatches"] == [{"call_sid": first.call_sid,
                                   "problem": "charged 45.00 in the ledger, the call says 99.00"}]


def test_check_catches_a_verdict_flipped_without_posting(calls):
    first, _, never = calls
    Call.objects.filter(pk=first.pk).update(verdict="not_billable", revenue=0, payout=0)
    Call.objects.filter(pk=never.pk).update(verdict="billable", revenue=Decimal("45.00"),
                                            payout=Decimal("20.00"))
    assert [str(m) for m in ledger_mismatches()] == [
        f"{first.call_sid}: not billable but charged 45.00 in the ledger",
        f"{first.call_sid}: not billable but paid out 20.00 in the ledger",
        f"{never.call_sid}: billable but not charged in the ledger",
        f"{never.call_sid}: billable but not paid out in the ledger",
    ]
    assert run_failing("check")[1] == "The ledger disagrees with 2 calls (4 problems)."


def test_check_catches_ledger_rows_added_or_removed_by_hand(calls):
    first, second, _ = calls
    # A second charge slipped in under a new generation, without reversing the first.
    LedgerEntry.objects.create(call=first, call_sid=first.call_sid, kind="charge", generation=2,
                               amount=Decimal("45.00"), buyer=first.buyer, campaign=first.campaign,
                               memo="by hand")
    # A payout row deleted with SQL (SQLite lets the owner of the file do that; PostgreSQL refuses).
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_ledgerentry WHERE call_sid = %s AND kind = 'payout'",
                       [second.call_sid])
    # An entry whose call does not exist.
    LedgerEntry.objects.create(call_id=987654, call_sid="CAghost", kind="payout", generation=1,
                               amount=Decimal("5.00"), memo="by hand")
    assert [str(m) for m in ledger_mismatches()] == [
        f"{first.call_sid}: charged 2 times (generations 1, 2)",
        f"{first.call_sid}: charged 90.00 in the ledger, the call says 45.00",
        f"{second.call_sid}: billable but not paid out in the ledger",
        "CAghost: ledger entries for call #987654, which does not exist",
    ]
    result = check_ledger()
    assert (result.billable_calls, result.charged_calls, result.paid_calls) == (2, 2, 1)


def test_check_catches_a_reversal_that_does_not_match_its_charge(calls):
    first = calls[0]
    LedgerEntry.objects.create(call=first, call_sid=first.call_sid, kind="charge_reversal", generation=1,
                               amount=Decimal("-40.00"), buyer=first.buyer, campaign=first.campaign,
                               memo="by hand")
    LedgerEntry.objects.create(call=first, call_sid=first.call_sid, kind="payout_reversal", generation=3,
                               amount=Decimal("-20.00"), publisher=first.publisher, memo="by hand")
    problems = [m.problem for m in ledger_mismatches()]
    assert "charge_reversal #1 is -40.00, the charge was 45.00" in problems
    assert "payout_reversal #3 reverses nothing" in problems
    assert "billable but not charged in the ledger" in problems


def test_check_catches_a_reversal_filed_to_another_party_campaign_or_currency(calls, make_buyer):
    """Taken back from buyer Y for a charge to buyer X, then charged to X again: X pays twice and Y is
    credited for nothing, though every generation nets to zero and the call's total is right."""
    first = calls[0]
    other = make_buyer(key="other", name="Other Buyer")
    charge = LedgerEntry.objects.get(call=first, kind="charge")
    LedgerEntry.objects.create(call=first, call_sid=first.call_sid, kind="charge_reversal", generation=1,
                               amount=Decimal("-45.00"), buyer=other, campaign=first.campaign, currency="EUR",
                               memo="by hand")
    LedgerEntry.objects.create(call=first, call_sid=first.call_sid, kind="charge", generation=2,
                               amount=Decimal("45.00"), buyer=first.buyer, campaign=first.campaign, memo="by hand")
    problems = [m.problem for m in ledger_mismatches()]
    assert problems == [f"charge_reversal #1 is filed to buyer {other.pk}, the charge to buyer {charge.buyer_id}",
                        f"charge_reversal #1 is filed to currency EUR, the charge to currency {charge.currency}"]


def test_check_of_one_month_looks_at_calls_started_in_it(calls, make_billable, clock):
    december = make_billable(started_at=DEC, revenue="10.00")
    Call.objects.filter(pk=december.pk).update(verdict="billable")  # never posted
    assert run("check", "--month", "2026-11").splitlines()[-1] == "OK: the ledger agrees with every call."
    out, _ = run_failing("check", "--month", "2026-12")
    assert out.splitlines()[0].startswith("Ledger check of calls started in 2026-12 (UTC): 1 call billable")
    assert f"{december.call_sid}: billable but not charged in the ledger" in out
    # An entry whose call is gone (archived) counts in the month it was posted.
    LedgerEntry.objects.create(call_id=987654, call_sid="CAarchived", kind="payout", generation=1,
                               amount=Decimal("5.00"), memo="by hand", created_at=DEC)
    assert run("check", "--month", "2026-11").splitlines()[-1] == "OK: the ledger agrees with every call."
    assert "CAarchived: ledger entries for call #987654" in run_failing("check", "--month", "2026-12")[0]


def test_a_buyer_is_found_by_a_name_in_any_case_beyond_ascii(calls):
    from callbroker.network.models import Buyer

    Buyer.objects.filter(key="acme").update(name="Ñandú Plumbing")
    for written in ("Ñandú Plumbing", "ñandú plumbing", "ÑANDÚ PLUMBING"):
        assert run("statement", "--buyer", written, "--month", "2026-11").startswith(
            "Charges to buyer Ñandú Plumbing (acme)"), written
