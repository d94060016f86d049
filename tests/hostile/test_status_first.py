"""A call's final status handled before its inbound webhook (the caller hung up while the inbound webhook
waited, e.g. past the carrier's timeout; the carrier gives no ordering guarantee).

The status finds no call: it is kept (its event stored) and answered; the inbound webhook, handled
after it, records the call as ended and judged, rings no one and takes no slot. Before, the call was
left ringing for good, holding its target's only slot: every later caller heard "The line is busy."
"""

from __future__ import annotations

from callbroker.calls.models import Call, CallAttempt, CallEvent
from tests.hostile.conftest import inbound, post_signed

SOLO = "+15125550005"  # e2e-concurrency: one target, concurrency 1
SEEDED = "CA" + "f6" * 16  # carrier_world's call ringing that target


def ended(world, sid: str, status: str = "completed"):
    return post_signed(world.client, world.target, "/carriers/twilio/status",
                       {"CallSid": sid, "CallStatus": status, "CallDuration": "4", "SequenceNumber": "2",
                        "To": SOLO, "From": "+15125559876", "Direction": "inbound"})


def test_a_final_status_before_the_inbound_webhook_ends_the_call_and_takes_no_slot(carrier_world):
    world = carrier_world
    assert ended(world, SEEDED).status_code == 200  # the seeded call is over: the line is free
    sid = "CA" + "ab" * 16
    assert ended(world, sid).status_code == 200
    assert CallEvent.objects.filter(call_sid=sid, kind="status").count() == 1  # kept for its inbound webhook

    answer = post_signed(world.client, world.target, "/carriers/twilio/voice", inbound(sid, SOLO)).content.decode()

    assert "<Dial" not in answer and "<Hangup" in answer
    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.verdict, call.final_status, call.duration_seconds) == ("ended", "not_billable",
                                                                                    "completed", 4)
    assert "not_connected" in call.reason_codes
    assert not CallAttempt.objects.filter(call=call).exists()
    following = post_signed(world.client, world.target, "/carriers/twilio/voice", inbound("CA" + "cd" * 16, SOLO))
    assert "+15125550121" in following.content.decode()  # the one line takes the next caller


def test_a_status_that_is_not_final_before_the_inbound_webhook_changes_nothing(carrier_world):
    world = carrier_world
    assert ended(world, SEEDED).status_code == 200
    sid = "CA" + "ee" * 16
    assert ended(world, sid, status="in-progress").status_code == 200
    answer = post_signed(world.client, world.target, "/carriers/twilio/voice", inbound(sid, SOLO)).content.decode()
    assert "+15125550121" in answer  # the call goes on and is routed
    assert Call.objects.get(call_sid=sid).stage == "dialing"



def test_a_call_to_an_unknown_number_whose_final_status_came_first_is_judged_too(carrier_world):
    world = carrier_world
    sid = "CA" + "9a" * 16
    assert ended(world, sid).status_code == 200
    answer = post_signed(world.client, world.target, "/carriers/twilio/voice",
                         inbound(sid, "+15125559990")).content.decode()  # no tracking number
    assert "<Dial" not in answer
    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.fallback_applied, call.verdict, call.reason_codes) == (
        "ended", "unknown_number", "not_billable", ["not_connected"])
