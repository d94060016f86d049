"""A publisher with calls can't be deleted: the admin refuses, naming the calls that hold it, and nothing is
deleted (deactivate it instead: ``active``, ``network load --prune``). Until 2026-12-07 the deletion (its
tracking numbers deleted first) set every call it brought to no publisher, silently: the calls no longer said
who brought them, and a call in progress ended billable with its payout posted to no one, ``billing check``
disagreeing ("billable but the call has no publisher").

Driven by signed webhooks (the Django test client) and the admin, on the e2e network (tests/e2e/network.yaml):
E2E Plumbing rings Line A (Austin Pipes, 40.00, payout 10.00); every tracking number is E2E Publisher's.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from callbroker.billing.models import LedgerEntry
from callbroker.billing.reconcile import ledger_mismatches
from callbroker.calls.models import Call
from callbroker.network.models import Publisher, TrackingNumber
from tests.calls.signed import TOKEN, post, sid

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

PLUMBING = "+15125550001"


@pytest.fixture(autouse=True)
def _token(settings):
    settings.TWILIO_AUTH_TOKEN, settings.TWILIO_AUTH_TOKENS_EXTRA, settings.PUBLIC_URL = TOKEN, [], ""


def inbound(n: int) -> str:
    return post("/carriers/twilio/voice", CallSid=sid(n), AccountSid="AC" + "0" * 32, From=f"+1720555{n:04d}",
                To=PLUMBING, FromZip="78701", FromState="TX", CallStatus="ringing")


def talked(n: int, seconds: int) -> None:
    post("/carriers/twilio/dial?seq=1", CallSid=sid(n), DialCallStatus="completed", DialCallDuration=str(seconds),
         DialBridged="true", DialCallSid="CA" + "d" * 32, CallStatus="in-progress")


def ended(n: int, seconds: int) -> None:
    post("/carriers/twilio/status", CallSid=sid(n), CallStatus="completed", CallDuration=str(seconds))


def staff_delete_the_publisher(staff) -> str:
    """As staff do in the admin: its tracking numbers first (they protect it), then its delete page's button."""
    TrackingNumber.objects.filter(publisher__key="e2e-pub").delete()
    publisher = Publisher.objects.get(key="e2e-pub")
    url = reverse("admin:network_publisher_delete", args=[publisher.pk])
    response = staff.post(url, {"post": "yes"})
    assert response.status_code in (200, 302)
    return response.content.decode()


def test_the_admin_refuses_to_delete_a_publisher_whose_calls_are_in_history_naming_them(staff):
    inbound(1)
    ended(1, 20)  # nobody answered: not billable, nothing in the ledger protects the publisher
    page = staff_delete_the_publisher(staff)

    assert "Cannot delete publisher" in page and sid(1) in page  # the refusal names the call that holds it
    assert Publisher.objects.filter(key="e2e-pub").exists()
    assert Call.objects.get(call_sid=sid(1)).publisher.key == "e2e-pub"


def test_a_call_in_progress_when_staff_try_to_delete_its_publisher_is_billed_and_paid_out_as_routed(staff):
    inbound(2)  # Line A rings
    staff_delete_the_publisher(staff)  # refused: the call holds it
    talked(2, 90)
    ended(2, 120)

    call = Call.objects.get(call_sid=sid(2))
    assert (call.verdict, call.revenue, call.payout, call.publisher.key) == (
        "billable", Decimal("40.00"), Decimal("10.00"), "e2e-pub")
    payout = LedgerEntry.objects.get(call_sid=sid(2), kind="payout")
    assert (payout.amount, payout.publisher_id) == (Decimal("10.00"), call.publisher_id)
    assert ledger_mismatches() == []


def test_the_delete_page_of_a_publisher_with_many_calls_names_the_first_ones_and_counts_the_rest(staff):
    """Django's own refusal loads every protecting row and names each: a publisher with a million calls had its
    delete page read them all into memory. The page names the first 20 (linked) and counts the rest."""
    for n in range(1, 26):
        inbound(100 + n)
    page = staff_delete_the_publisher(staff)

    assert "Cannot delete publisher" in page
    named = [n for n in range(1, 26) if sid(100 + n) in page]
    assert named == list(range(1, 21))
    assert "… and 5 more calls" in page
    assert reverse("admin:calls_call_change", args=[Call.objects.get(call_sid=sid(101)).pk]) in page
    assert Publisher.objects.filter(key="e2e-pub").exists()
