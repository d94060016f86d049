"""A buyer's unanswered leg is recorded the same replayed after an outage as live, in either order.

Given a call on the e2e network's E2E Missed campaign dialled live, when the database goes away and the
carrier's final status and the Dial action saying the line didn't answer are spooled (in either order)
and replayed, then the attempt records the line's no-answer with its DialCallSid, as the live path does
when the final status comes first (tests/calls/test_reordered_misses.py), not "the caller hung up".
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from callbroker.calls import replay, services, spool
from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
from callbroker.calls.models import CallAttempt

MISSED = "+15125550004"
LEG = DialOutcome(status="no-answer", bridged=False, duration=0, dial_call_sid="CA" + "f" * 32)
END = StatusUpdate(status="completed", duration=40, sequence="3")


@pytest.mark.parametrize("end_first", [False, True], ids=["dial result first", "final status first"])
def test_a_replayed_unanswered_leg_is_recorded_as_live(replay_network, end_first):
    sid = "CA" + ("2" if end_first else "3") * 32
    with transaction.atomic():  # dialled live, then the database went away
        services.start_call(InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw="+17375550401",
                                        to=MISSED, from_zip="78701", from_state="TX"))
    at = timezone.now() - dt.timedelta(minutes=3)
    records = [{"kind": "status", "update": dataclasses.asdict(END)},
               {"kind": "dial", "seq": 1, "outcome": dataclasses.asdict(LEG)}]
    for i, record in enumerate(records if end_first else records[::-1]):
        spool.append(sid, {"received_at": (at + dt.timedelta(seconds=i)).isoformat(),
                           "params": {"CallSid": sid}, "query": {}, "answer": "", **record})
    replay.replay_ready()
    attempt = CallAttempt.objects.get(call__call_sid=sid, sequence=1)
    assert (attempt.result, attempt.dial_call_sid) == ("no-answer", LEG.dial_call_sid)
