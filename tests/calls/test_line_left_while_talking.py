"""A call whose buyer talked on a line that left the network (its target, or its buyer, deleted in the admin while
the line rang or the buyer talked) is not judged ``not_connected``: no rule is left to price it or weigh its talk
time against the line's buffer, so it stays ``pending`` for staff to judge, as a call whose campaign left the
network (docs/call-flow.md, calls staff judge). A call judged by its line's rules before the line left keeps
that verdict; the caller's other calls still make it a duplicate. Until 2026-12-07 such a call was judged
``not_connected``: a buyer talked 90 s, nothing billed, and the record said nobody answered.

Driven by signed webhooks (the Django test client), on the e2e network (tests/e2e/network.yaml): E2E Plumbing
rings Line A (Austin Pipes, 40.00), then Line B (35.00), then Line C; a repeat caller inside a day is a
duplicate.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from callbroker.billing.models import LedgerEntry
from callbroker.billing.reconcile import ledger_mismatches
from callbroker.calls import staff
from callbroker.calls.models import Call, CallAttempt
from callbroker.network.models import Buyer, Target
from tests.calls.signed import TOKEN, post, sid

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

PLUMBING = "+15125550001"
CALLER = "+17205550142"


@pytest.fixture(autouse=True)
def _token(settings):
    settings.TWILIO_AUTH_TOKEN, settings.TWILIO_AUTH_TOKENS_EXTRA, settings.PUBLIC_URL = TOKEN, [], ""


def inbound(n: int) -> str:
    return post("/carriers/twilio/voice", CallSid=sid(n), AccountSid="AC" + "0" * 32, From=CALLER, To=PLUMBING,
                FromZip="78701", FromState="TX", CallStatus="ringing")


def dial_action(n: int, seq: int, status: str, talked: int = 0) -> str:
    params = {"CallSid": sid(n), "DialCallStatus": status, "DialCallSid": "CA" + "d" * 32,
              "CallStatus": "in-progress"}
    if talked:
        params.update(DialCallDuration=str(talked), DialBridged="true")
    return post(f"/carriers/twilio/dial?seq={seq}", **params)


def final_status(n: int, duration: int) -> str:
    return post("/carriers/twilio/status", CallSid=sid(n), CallStatus="completed", CallDuration=str(duration))


LEAVES = {
    "target deleted": lambda: Target.objects.filter(key="pipes-a").delete(),
    "buyer deleted": lambda: Buyer.objects.filter(key="austin-pipes").delete(),  # its targets with it
}
MOMENTS = {
    "while the buyer talks": ("dial", "leave", "status"),
    "while the line rings": ("leave", "dial", "status"),
    "after the final status, the line ringing": ("status", "leave", "dial"),
}


@pytest.mark.parametrize("moment", MOMENTS.values(), ids=MOMENTS.keys())
@pytest.mark.parametrize("leave", LEAVES.values(), ids=LEAVES.keys())
def test_a_call_whose_buyer_talked_on_a_line_that_left_is_pending_for_staff_not_unconnected(leave, moment):
    assert "+15125550101" in inbound(1)  # Line A rings
    for step in moment:
        {"dial": lambda: dial_action(1, 1, "completed", talked=90), "leave": leave,
         "status": lambda: final_status(1, 120)}[step]()

    call = Call.objects.get(call_sid=sid(1))
    assert (call.stage, call.talk_seconds, call.verdict, call.reason_codes) == ("ended", 90, "pending", [])
    assert (call.revenue, call.payout) == (Decimal("0.00"), Decimal("0.00"))
    assert CallAttempt.objects.get(call=call).result == "bridged"
    assert not LedgerEntry.objects.filter(call_sid=sid(1)).exists() and ledger_mismatches() == []
    assert staff.refusals([sid(1)]) == {}  # ended and pending: staff may judge it
    staff.judge_not_billable([sid(1)], by="ops", note="line deleted during the call")
    assert Call.objects.get(call_sid=sid(1)).reason_codes == ["judged_by_staff"]


def test_a_call_billed_before_its_line_left_keeps_its_charge_and_becomes_the_duplicate_of_an_earlier_call():
    """Call 2 talked on Line A and was billed; Line A was deleted; then the caller's earlier call 1, put
    through to Line B, ends billable: call 2 is now its duplicate (charge and payout reversed), for that
    reason alone, not as a call that reached no buyer."""
    inbound(1)  # Line A rings for call 1 …
    assert "+15125550102" in dial_action(1, 1, "no-answer")  # … which goes on to Line B
    inbound(2)  # the same caller again: Line A
    dial_action(2, 1, "completed", talked=90)
    final_status(2, 100)
    assert Call.objects.get(call_sid=sid(2)).revenue == Decimal("40.00")
    Target.objects.filter(key="pipes-a").delete()
    assert Call.objects.get(call_sid=sid(2)).verdict == "billable"  # a deletion judges nothing

    dial_action(1, 2, "completed", talked=95)
    final_status(1, 140)

    first, second = Call.objects.get(call_sid=sid(1)), Call.objects.get(call_sid=sid(2))
    assert (first.verdict, first.revenue) == ("billable", Decimal("35.00"))
    assert (second.verdict, second.reason_codes, second.revenue, second.payout) == (
        "not_billable", ["duplicate"], Decimal("0.00"), Decimal("0.00"))
    assert list(second.reason_notes) == ["duplicate"]  # the sentence it was judged with, kept with the verdict
    assert second.reason_notes["duplicate"].endswith("earlier, inside the 1 day duplicate window")
    kinds = sorted(LedgerEntry.objects.filter(call_sid=sid(2)).values_list("kind", flat=True))
    assert kinds == ["charge", "charge_reversal", "payout", "payout_reversal"]
    assert ledger_mismatches() == []


def test_a_duplicate_whose_line_left_names_the_billable_call_it_now_repeats():
    """Calls 1 and 2 talked on Line A, 20 min apart: call 1 billed, call 2 its duplicate ("20 min earlier").
    Line A is deleted; then the caller's call 0, started 30 min before call 2 and put through to Line B, ends
    billable: call 1 becomes its duplicate, and call 2, judged again without its line, is a duplicate still,
    of call 0 now. Its kept sentence named call 1, no longer billable; it names call 0's time now."""
    inbound(0)  # Line A rings for call 0 …
    assert "+15125550102" in dial_action(0, 1, "no-answer")  # … which goes on to Line B
    inbound(1)
    dial_action(1, 1, "completed", talked=90)
    final_status(1, 100)
    inbound(2)
    now = Call.objects.get(call_sid=sid(2)).started_at
    for n, minutes in ((0, 30), (1, 20)):
        Call.objects.filter(call_sid=sid(n)).update(started_at=now - dt.timedelta(minutes=minutes))
    dial_action(2, 1, "completed", talked=90)
    final_status(2, 100)
    window = "earlier, inside the 1 day duplicate window"
    assert Call.objects.get(call_sid=sid(2)).reason_notes == {
        "duplicate": f"last billable call from this caller was 20 min {window}"}
    Target.objects.filter(key="pipes-a").delete()

    dial_action(0, 2, "completed", talked=95)
    final_status(0, 140)

    assert Call.objects.get(call_sid=sid(1)).reason_codes == ["duplicate"]
    second = Call.objects.get(call_sid=sid(2))
    assert (second.verdict, second.reason_codes, second.revenue) == ("not_billable", ["duplicate"], Decimal("0.00"))
    assert second.reason_notes == {"duplicate": f"last billable call from this caller was 30 min {window}"}
    assert ledger_mismatches() == []


def test_a_call_staff_judged_stays_judged_by_staff_alone_when_an_earlier_call_of_its_caller_ends():
    """Call 2 talked on Line A, deleted while it talked: pending, then judged by staff. The caller's earlier
    call 1, put through to Line B, then ends billable, and judges its caller's later calls again: call 2
    gained ``duplicate`` beside ``judged_by_staff`` (money unchanged, both reasons shown). Staff judged it
    because no rule could: their judgement stands alone, as it was written."""
    inbound(1)  # Line A rings for call 1 …
    assert "+15125550102" in dial_action(1, 1, "no-answer")  # … which goes on to Line B
    inbound(2)  # the same caller again: Line A
    dial_action(2, 1, "completed", talked=90)
    Target.objects.filter(key="pipes-a").delete()
    final_status(2, 100)
    assert Call.objects.get(call_sid=sid(2)).verdict == "pending"
    staff.judge_not_billable([sid(2)], by=staff.FROM_THE_CLI, note="line deleted mid-call")
    judged = Call.objects.get(call_sid=sid(2))

    dial_action(1, 2, "completed", talked=95)
    final_status(1, 140)

    assert Call.objects.get(call_sid=sid(1)).verdict == "billable"
    second = Call.objects.get(call_sid=sid(2))
    assert (second.verdict, second.reason_codes, second.reason_notes, second.qualified_at) == (
        "not_billable", ["judged_by_staff"], judged.reason_notes, judged.qualified_at)
    assert (second.revenue, second.payout) == (Decimal("0.00"), Decimal("0.00"))
    assert not LedgerEntry.objects.filter(call_sid=sid(2)).exists() and ledger_mismatches() == []


@pytest.mark.usefixtures("staff")  # signed in: ``client`` is the staff member's
def test_the_admins_judge_page_says_why_such_a_call_is_pending_not_that_its_campaign_left(client):
    """The calls list's action "Judge not billable" shows the calls it will judge with why no rule can: the
    page said "their campaign left the network while they went on", untrue of such a call, whose campaign is
    still there (staff looked for a deletion that never was)."""
    inbound(1)
    dial_action(1, 1, "completed", talked=90)
    Target.objects.filter(key="pipes-a").delete()
    final_status(1, 120)
    call = Call.objects.get(call_sid=sid(1))
    assert (call.verdict, call.campaign.key) == ("pending", "e2e-plumbing")

    page = client.post(reverse("admin:calls_call_changelist"), {"action": "judge_not_billable_action",
                                                                 "_selected_action": [call.pk], "index": "0"})
    text = page.content.decode()
    assert page.status_code == 200 and sid(1) in text
    assert "(their campaign left the network while they went on)" not in text
    assert "the line a buyer talked on" in text
