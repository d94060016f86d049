"""Missed-call protection records its pause even when the target has no live-state row.

Given the e2e network (tests/e2e/network.yaml: e2e-missed pauses a line for 30 min after 2 misses in an
hour), when the sleepy line leaves two calls unanswered and its ``TargetState`` row is missing meanwhile
(as for a target made outside the loader and the admin whose slots Redis counts), then the row is made
with the pause: an update alone found no row and lost it.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from callbroker.calls import services
from callbroker.calls.events import DialOutcome, InboundCall
from callbroker.network.models import Target, TargetState

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

MISSED = "+15125550004"  # e2e-missed's tracking number


def test_missed_call_protection_pauses_a_target_without_a_state_row():
    sleepy = Target.objects.get(key="sparky-sleepy")
    for n in range(2):
        sid = f"CA{n + 1:032x}"
        steps = services.start_call(InboundCall(call_sid=sid, account_sid="AC" + "0" * 32,
                                                from_raw=f"+1737555010{n}", to=MISSED, from_zip="78701",
                                                from_state="TX"))
        assert steps[-1].number == sleepy.number  # the sleepy line is rung first (priority 1)
        TargetState.objects.filter(target=sleepy).delete()
        services.dial_finished(sid, 1, DialOutcome(status="no-answer", bridged=False, duration=0))
    state = TargetState.objects.get(target=sleepy)
    assert state.paused_until is not None and state.paused_until > timezone.now()
    assert state.pause_reason.startswith("missed 2 calls within 60 min")


def test_a_pause_cleared_by_staff_is_not_started_again_by_the_misses_that_caused_it():
    from callbroker.network.services import clear_auto_pause

    sleepy = Target.objects.get(key="sparky-sleepy")

    def missed(n: int) -> None:
        sid = f"CA{n:032x}"
        services.start_call(InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=f"+1737555{n:04d}",
                                        to=MISSED, from_zip="78701", from_state="TX"))
        services.dial_finished(sid, 1, DialOutcome(status="no-answer", bridged=False, duration=0))

    missed(1)
    missed(2)
    assert TargetState.objects.get(target=sleepy).paused_until > timezone.now()  # two misses: paused
    assert clear_auto_pause(TargetState.objects.filter(target=sleepy)) == 1
    state = TargetState.objects.get(target=sleepy)
    assert state.paused_until <= timezone.now() and state.pause_reason == ""
    missed(3)  # one more miss: one since the pause ended, not three
    assert TargetState.objects.get(target=sleepy).paused_until <= timezone.now()
    missed(4)  # two since the pause ended: paused again
    assert TargetState.objects.get(target=sleepy).paused_until > timezone.now()
