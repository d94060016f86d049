"""A call whose final status arrives before its bridged dial result still counts against the caps.

Given the e2e network's one-line campaign (tests/e2e/network.yaml: e2e-concurrency, Only line) with a
daily cap of 1, when a call rings the line and the carrier's final status callback arrives before the
Dial action saying the two talked (the callbacks have no ordering guarantee), then the status gives the
cap unit back (a call that ended while ringing was not delivered) and the late bridged result must take
it again: the call was delivered, is billable, and the next caller finds the line's day full. The
counters agree with the calls' attempts, from which the Redis backend rebuilds them.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from callbroker.calls import services
from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
from callbroker.calls.models import Call
from callbroker.network import live
from callbroker.network.models import Target
from callbroker.network.snapshot import current_snapshot

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

ONE_LINE = "+15125550005"  # e2e-concurrency's tracking number


@pytest.fixture
def line() -> Target:
    line = Target.objects.get(key="solo-line")
    line.daily_cap = 1
    line.save()  # a network change: the snapshot is built again
    return line


def call(n: int) -> tuple[str, tuple]:
    sid = f"CA{n:032x}"
    steps = services.start_call(InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=f"+1737555020{n}",
                                            to=ONE_LINE, from_zip="78701", from_state="TX"))
    return sid, steps


def day_count(line: Target) -> int:
    info = current_snapshot().targets[line.pk]
    counters, _ = live.read([info.core], {line.pk: info.timezone}, timezone.now())
    return counters[line.pk].day


def test_the_late_bridged_result_takes_back_the_cap_unit_the_early_status_gave_back(line):
    sid, steps = call(1)
    assert steps[-1].number == line.number
    assert day_count(line) == 1
    services.call_status(sid, StatusUpdate(status="completed", duration=150, sequence="3"))
    assert day_count(line) == 0  # ended while (as far as we knew) still ringing: not delivered
    services.dial_finished(sid, 1, DialOutcome(status="completed", bridged=True, duration=120))
    first = Call.objects.get(call_sid=sid)
    assert first.connected_target_id == line.pk and first.verdict == "billable"
    assert day_count(line) == 1  # delivered after all: counted again

    other, steps = call(2)
    assert not any(getattr(step, "number", None) == line.number for step in steps)
    assert Call.objects.get(call_sid=other).decision["excluded"] == {"daily_cap": [line.pk]}


def test_a_call_that_really_ended_while_ringing_gives_its_unit_back_for_good(line):
    sid, _ = call(3)
    services.call_status(sid, StatusUpdate(status="completed", duration=20, sequence="3"))
    services.dial_finished(sid, 1, DialOutcome(status="canceled", bridged=False, duration=0))
    assert day_count(line) == 0
    _, steps = call(4)
    assert steps[-1].number == line.number  # the day's one call is still free
