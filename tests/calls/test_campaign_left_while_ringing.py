"""A buyer's Dial action that comes after the call's campaign left the network (deleted in the admin while the
buyer's line rang: its targets went with it) is recorded: the leg as it ended, a bridge with its buyer and talk
time on the call, which stays ``pending`` for staff to judge (docs/call-flow.md, calls staff judge). Until
2026-12-07 it was handled as the Dial action of an unknown call: nothing recorded, the call reading as answered
by no one although the buyer talked, and the bridged leg answered with the installation's fallback (a forward
ringing after the buyer hung up).

Driven by signed webhooks (the Django test client), on the e2e network (tests/e2e/network.yaml): E2E
Concurrency rings its one line, Solo Heating's.
"""

from __future__ import annotations

import pytest

from callbroker.billing.models import LedgerEntry
from callbroker.billing.reconcile import ledger_mismatches
from callbroker.calls import staff
from callbroker.calls.models import Call, CallAttempt, CallEvent
from callbroker.network.models import Buyer, Campaign, TrackingNumber
from tests.calls.signed import TOKEN, post

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

SOLO = "+15125550005"  # e2e-concurrency: rings Solo Heating's one line at once
SID = "CA" + "c" * 32
LEG = "CA" + "d" * 32


@pytest.fixture(autouse=True)
def _token(settings):
    settings.TWILIO_AUTH_TOKEN, settings.TWILIO_AUTH_TOKENS_EXTRA, settings.PUBLIC_URL = TOKEN, [], ""
    settings.FALLBACK_NUMBER = ""


def inbound() -> str:
    return post("/carriers/twilio/voice", CallSid=SID, AccountSid="AC" + "0" * 32, From="+17205550142", To=SOLO,
                FromZip="78701", FromState="TX", CallStatus="ringing")


def campaign_leaves_the_network() -> None:
    """Deleted as staff delete it in the admin: its tracking numbers first (they protect it), its targets with it."""
    TrackingNumber.objects.filter(campaign__key="e2e-concurrency").delete()
    Campaign.objects.filter(key="e2e-concurrency").delete()


def dial_action(status: str, *, talked: int = 0, caller_status: str = "in-progress") -> str:
    params = {"CallSid": SID, "DialCallStatus": status, "DialCallSid": LEG, "CallStatus": caller_status}
    if talked:
        params.update(DialCallDuration=str(talked), DialBridged="true")
    return post("/carriers/twilio/dial?seq=1", **params)


def final_status(duration: int) -> str:
    return post("/carriers/twilio/status", CallSid=SID, CallStatus="completed", CallDuration=str(duration))


ORDERS = {
    "dial action first": ("dial", "status"),
    "final status first": ("status", "dial"),
    "dial action twice": ("dial", "dial", "status", "dial"),
}


@pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS.keys())
def test_a_buyer_who_talked_after_the_campaign_left_is_recorded_on_the_call(order):
    assert "+15125550121" in inbound()  # Solo Heating's line rings
    campaign_leaves_the_network()
    answers = [dial_action("completed", talked=95) if step == "dial" else final_status(130) for step in order]

    call = Call.objects.get(call_sid=SID)
    attempt = CallAttempt.objects.get(call=call)
    solo = Buyer.objects.get(key="solo")
    assert (attempt.result, attempt.talk_seconds, attempt.buyer_id, attempt.dial_call_sid, attempt.slot_held) == (
        "bridged", 95, solo.pk, LEG, False)
    assert (call.stage, call.buyer_id, call.talk_seconds, call.duration_seconds) == ("ended", solo.pk, 95, 130)
    assert (call.verdict, call.reason_codes) == ("pending", [])  # no rules left: staff judge it
    for step, answer in zip(order, answers):
        if step == "dial":
            assert "<Hangup />" in answer and "<Dial" not in answer  # the buyer hung up: nobody else rung
    assert CallEvent.objects.filter(call_sid=SID, kind="dial").count() == 1
    assert not LedgerEntry.objects.filter(call_sid=SID).exists() and ledger_mismatches() == []
    assert staff.refusals([SID]) == {}  # ended and pending: staff may judge it


def test_a_call_judged_unconnected_before_the_campaign_left_is_pending_again_when_its_buyer_talked():
    """The final status came first (the leg still ringing: closed canceled, the call judged ``not_connected``),
    then the campaign left, then the bridged Dial action: no rule is left to judge the bridge by, and
    ``not_connected`` is untrue, so the call is pending again, for staff."""
    inbound()
    final_status(130)
    assert Call.objects.get(call_sid=SID).reason_codes == ["not_connected"]
    campaign_leaves_the_network()
    assert "<Hangup />" in dial_action("completed", talked=95)

    call = Call.objects.get(call_sid=SID)
    assert (call.verdict, call.reason_codes, call.qualified_at, call.talk_seconds) == ("pending", [], None, 95)
    assert CallAttempt.objects.get(call=call).result == "bridged"
    assert ledger_mismatches() == []


def test_a_caller_whose_buyer_did_not_answer_after_the_campaign_left_hears_the_fallback_not_silence():
    inbound()
    campaign_leaves_the_network()
    answer = dial_action("no-answer")
    assert "<Say" in answer and "<Hangup />" in answer and "<Dial" not in answer  # the apology: no line left
    final_status(40)

    call = Call.objects.get(call_sid=SID)
    attempt = CallAttempt.objects.get(call=call)
    assert (attempt.result, attempt.slot_held, attempt.dial_call_sid) == ("no-answer", False, LEG)
    assert (call.stage, call.verdict, call.buyer_id, call.talk_seconds) == ("ended", "pending", None, 0)
    assert ledger_mismatches() == []
