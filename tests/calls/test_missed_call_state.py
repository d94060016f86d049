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
