"""A buyer's unanswered leg counts the same whether its Dial result comes before or after the call's end.

Given the e2e network's E2E Missed campaign (tests/e2e/network.yaml: missed-call protection pauses a line
after 2 unanswered calls within an hour; Sleepy line first, Awake line second), when the caller hangs up
while a line rings and the carrier's final status callback arrives before the Dial action saying the line
didn't answer (the callbacks have no ordering guarantee), then the attempt records what the line did (no
answer, busy, declined: not "the caller hung up"), its DialCallSid is kept, and missed-call protection
counts it: two such calls pause the line, as the same callbacks in order do.
"""

from __future__ import annotations

import pytest

from callbroker.calls import services
from callbroker.calls import steps as s
from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
from callbroker.calls.models import CallAttempt
from callbroker.network.models import Target, TargetState

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

MISSED = "+15125550004"


def first_number(steps) -> str:
    return next(step.number for step in steps if isinstance(step, s.DialTarget))


def unanswered_call(n: int, status: str, *, end_first: bool, bridged: bool = False) -> CallAttempt:
    sid = f"CA{n:032x}"
    steps = services.start_call(InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=f"+1737555040{n}",
                                            to=MISSED, from_zip="78701", from_state="TX"))
    assert first_number(steps) == Target.objects.get(key="sparky-sleepy").number
    leg = DialOutcome(status=status, bridged=bridged, duration=0, dial_call_sid=f"CA{n:031x}f")
    end = StatusUpdate(status="completed", duration=40, sequence="3")
    if end_first:
        services.call_status(sid, end)
        services.dial_finished(sid, 1, leg)
    else:
        services.dial_finished(sid, 1, leg)
        services.call_status(sid, end)
    return CallAttempt.objects.get(call__call_sid=sid, sequence=1)


@pytest.mark.parametrize("end_first", [False, True], ids=["in order", "final status first"])
def test_two_unanswered_legs_pause_the_line_in_either_order(end_first):
    for n, status in ((1, "no-answer"), (2, "busy")):
        attempt = unanswered_call(n, status, end_first=end_first)
        assert attempt.result == status and attempt.dial_call_sid == f"CA{n:031x}f"
    sleepy = Target.objects.get(key="sparky-sleepy")
    assert "missed 2 calls" in TargetState.objects.get(target=sleepy).pause_reason
    steps = services.start_call(InboundCall(call_sid="CA" + "3" * 32, account_sid="AC" + "0" * 32,
                                            from_raw="+17375550499", to=MISSED, from_zip="78701"))
    assert first_number(steps) == Target.objects.get(key="sparky-awake").number


def test_a_late_declined_leg_is_recorded_as_declined_and_not_counted_as_a_miss():
    attempt = unanswered_call(4, "completed", end_first=True)  # answered, whisper declined: never bridged
    assert attempt.result == "declined" and attempt.call.verdict == "not_billable"
    assert not TargetState.objects.filter(target=attempt.target, paused_until__isnull=False).exists()


def test_a_leg_the_caller_hung_up_on_stays_canceled():
    attempt = unanswered_call(5, "canceled", end_first=True)
    assert attempt.result == "canceled"
