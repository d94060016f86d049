"""Posting a call's verdict to the ledger: once, never twice, reversed when the verdict changes.

Given a finished call with a verdict, when ``post_verdict`` runs (as the call flow runs it, in the
transaction that wrote the verdict), then the ledger holds exactly one open charge and one open payout for
a billable call and none for any other, and every change after posting is a reversal, never an edit.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError
from django.db.transaction import TransactionManagementError

from callbroker.billing.models import AppendOnly, LedgerEntry
from callbroker.billing.reconcile import ledger_mismatches
from callbroker.billing.services import post_verdict
from tests.billing.conftest import NOV, post

pytestmark = pytest.mark.django_db


def ledger(call) -> list[tuple[str, int, Decimal]]:
    return [(e.kind, e.generation, e.amount) for e in LedgerEntry.objects.filter(call_sid=call.call_sid)
            .order_by("id")]


def test_a_billable_call_is_charged_to_its_buyer_and_paid_to_its_publisher_once(make_billable, acme, google,
                                                                               plumbing, clock):
    call = make_billable(revenue="45.00", payout="20.00")
    with clock.at(NOV):
        posted = post(call)
    assert sorted((e.kind, e.amount) for e in posted) == [("charge", Decimal("45.00")),
                                                           ("payout", Decimal("20.00"))]
    charge = LedgerEntry.objects.get(call_sid=call.call_sid, kind="charge")
    assert (charge.call_id, charge.generation, charge.buyer, charge.publisher, charge.campaign) == (
        call.pk, 1, acme, None, plumbing)
    assert (charge.currency, charge.created_at, charge.memo) == ("USD", NOV, "billable call")
    payout = LedgerEntry.objects.get(call_sid=call.call_sid, kind="payout")
    assert (payout.publisher, payout.buyer, payout.amount) == (google, None, Decimal("20.00"))
    # Posting the same verdict again (a duplicated webhook, a spool replay) posts nothing.
    assert post(call) == [] and post(call) == []
    assert ledger(call) == [("charge", 1, Decimal("45.00")), ("payout", 1, Decimal("20.00"))]
    assert ledger_mismatches() == []


@pytest.mark.parametrize("verdict", ["not_billable", "pending"])
def test_a_call_that_is_not_billable_posts_nothing(make_billable, verdict):
    call = make_billable(verdict=verdict)
    assert post(call) == []
    assert ledger(call) == []
    assert ledger_mismatches() == []


def test_a_billable_call_at_zero_price_is_still_posted_once(make_billable):
    call = make_billable(revenue="0.00", payout="0.00")
    post(call)
    assert ledger(call) == [("charge", 1, Decimal("0.00")), ("payout", 1, Decimal("0.00"))]
    call.verdict, call.reason_codes = "not_billable", ["duplicate"]
    post(call)
    reversal = LedgerEntry.objects.get(kind="charge_reversal")
    assert str(reversal.amount) == "0.00"  # never "-0.00"


def test_the_database_refuses_a_second_charge_of_the_same_generation(make_billable):
    # given a call charged once
    call = make_billable()
    post(call)
    first = LedgerEntry.objects.get(call_sid=call.call_sid, kind="charge")
    # when anyone (a racing transaction, a script) posts the same charge again
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(call=call, call_sid=call.call_sid, kind="charge", generation=1,
                                   amount=first.amount, buyer=first.buyer, memo="again")
    # then the database refuses it, and the call is still charged once
    assert ledger(call) == [("charge", 1, Decimal("45.00")), ("payout", 1, Decimal("20.00"))]


@pytest.mark.parametrize("bad", [
    {"kind": "charge", "amount": Decimal("-45.00")},  # a charge is never negative
    {"kind": "charge_reversal", "amount": Decimal("45.00")},  # a reversal never adds money
    {"kind": "charge", "generation": 0},
    {"kind": "refund"},  # not a kind
])
def test_the_database_refuses_entries_that_break_the_ledger_rules(make_billable, bad):
    call = make_billable()
    fields = {"call": call, "call_sid": call.call_sid, "generation": 1, "amount": Decimal("45.00"),
              "memo": "x", **bad}
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(**fields)


def test_a_verdict_that_flips_is_reversed_and_a_flip_back_posts_again(make_billable, clock):
    # given a billable call, charged and paid out
    call = make_billable(revenue="45.00", payout="20.00")
    post(call)
    # when qualification runs again and the call is no longer billable
    call.verdict, call.reason_codes = "not_billable", ["duplicate"]
    call.revenue = call.payout = Decimal("0.00")
    reversals = post(call)
    # then both postings are reversed (minus their amounts), nothing is changed, the net is zero
    assert sorted((e.kind, e.generation, e.amount) for e in reversals) == [
        ("charge_reversal", 1, Decimal("-45.00")), ("payout_reversal", 1, Decimal("-20.00"))]
    assert {e.memo for e in reversals} == {"call no longer billable (duplicate)"}
    assert post(call) == []
    # when it flips back to billable, it is posted again (generation 2), once
    call.verdict, call.reason_codes = "billable", []
    call.revenue, call.payout = Decimal("45.00"), Decimal("20.00")
    post(call)
    post(call)
    assert ledger(call) == [
        ("charge", 1, Decimal("45.00")), ("payout", 1, Decimal("20.00")),
        ("charge_reversal", 1, Decimal("-45.00")), ("payout_reversal", 1, Decimal("-20.00")),
        ("charge", 2, Decimal("45.00")), ("payout", 2, Decimal("20.00")),
    ]
    assert LedgerEntry.objects.get(call_sid=call.call_sid, kind="charge", generation=2).memo == (
        "billable call, posted again after re-qualification")
    assert ledger_mismatches() == []


def test_an_amount_that_changes_while_billable_is_reversed_and_posted_again(make_billable):
    call = make_billable(revenue="45.00", payout="20.00")
    post(call)
    call.revenue = Decimal("50.00")  # the buyer's price changed before qualification ran again
    post(call)
    assert ledger(call) == [("charge", 1, Decimal("45.00")), ("payout", 1, Decimal("20.00")),
                            ("charge_reversal", 1, Decimal("-45.00")), ("charge", 2, Decimal("50.00"))]
    assert LedgerEntry.objects.get(kind="charge_reversal").memo == "amount changed to 50.00 (was 45.00)"
    assert ledger_mismatches() == []


def test_a_buyer_that_changes_while_billable_moves_the_charge(make_billable, make_buyer, acme):
    call = make_billable()
    post(call)
    other = make_buyer(key="bob", name="Bob's Pipes")
    call.buyer = other
    post(call)
    charges = LedgerEntry.objects.filter(kind__in=("charge", "charge_reversal")).order_by("id")
    assert [(e.kind, e.buyer, e.amount) for e in charges] == [
        ("charge", acme, Decimal("45.00")), ("charge_reversal", acme, Decimal("-45.00")),
        ("charge", other, Decimal("45.00"))]
    assert ledger_mismatches() == []


def test_the_currency_is_the_campaigns(make_billable, plumbing):
    plumbing.currency = "CAD"
    plumbing.save()
    call = make_billable()
    post(call)
    assert set(LedgerEntry.objects.values_list("currency", flat=True)) == {"CAD"}


def test_a_charge_posted_again_in_a_new_currency_takes_the_payout_with_it(make_billable, plumbing):
    """One call's money is in one currency: its pages show the charge and the payout in the currency of
    its latest entry. Before, a new price after a currency change posted the charge again in EUR and left
    the payout open in USD, shown as EUR on the call while the publisher's statement said USD."""
    call = make_billable(revenue="45.00", payout="20.00")
    post(call)
    plumbing.currency = "EUR"
    plumbing.save()
    assert post(call) == []  # nothing changed but the campaign's currency: what was posted stays
    call.revenue = Decimal("50.00")  # the buyer's price in the new currency
    post(call)
    entries = [(e.kind, e.generation, e.amount, e.currency)
               for e in LedgerEntry.objects.filter(call_sid=call.call_sid).order_by("id")]
    assert entries == [
        ("charge", 1, Decimal("45.00"), "USD"), ("payout", 1, Decimal("20.00"), "USD"),
        ("charge_reversal", 1, Decimal("-45.00"), "USD"), ("charge", 2, Decimal("50.00"), "EUR"),
        ("payout_reversal", 1, Decimal("-20.00"), "USD"), ("payout", 2, Decimal("20.00"), "EUR")]
    assert LedgerEntry.objects.get(kind="payout_reversal").memo == "currency changed to EUR (was USD)"
    assert post(call) == []
    assert ledger_mismatches() == []


def test_ledger_entries_are_never_changed_or_deleted(make_billable):
    call = make_billable()
    post(call)
    entry = LedgerEntry.objects.get(kind="charge")
    entry.amount = Decimal("1.00")
    with pytest.raises(AppendOnly):
        entry.save()
    with pytest.raises(AppendOnly):
        entry.delete()
    with pytest.raises(AppendOnly):
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=Decimal("1.00"))
    with pytest.raises(AppendOnly):
        LedgerEntry.objects.all().delete()
    # Below the ORM, the database refuses too.
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE billing_ledgerentry SET amount = 1 WHERE id = %s", [entry.pk])
    # A call with ledger entries can't be deleted (the ledger would lose its call).
    with pytest.raises(ProtectedError):
        call.delete()
    assert LedgerEntry.objects.get(pk=entry.pk).amount == Decimal("45.00")


@pytest.mark.django_db(transaction=True)
def test_posting_outside_the_verdicts_transaction_is_refused(make_billable):
    call = make_billable()
    with pytest.raises(TransactionManagementError):
        post_verdict(call)
    assert LedgerEntry.objects.count() == 0
