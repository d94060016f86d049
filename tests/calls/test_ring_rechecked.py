"""A target further down a ring is dialled only if it is still open and not paused when its turn comes.

The ring is decided when the call arrives; each target before it may ring for half a minute. Given the
e2e plumbing campaign (Line A, then B, then C), when Line B closes or is paused while Line A rings and
Line A doesn't answer, then Line B is passed over (the reason kept with the decision) and Line C is
dialled. Caps and concurrency are checked again at each dial by the reservation.
"""

from __future__ import annotations

import datetime as dt
import itertools
from unittest import mock

import pytest
from django.utils import timezone

from callbroker.calls import services
from callbroker.calls.events import DialOutcome, InboundCall
from callbroker.calls.models import Call
from callbroker.network.models import Target, TargetState
from tests.calls.conftest import deliver

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

PLUMBING = "+15125550001"
_sids = itertools.count(0x7200)
NO_ANSWER = DialOutcome(status="no-answer", bridged=False, duration=0)


def start(at: dt.datetime | None = None) -> tuple[str, tuple]:
    sid = f"CA{next(_sids):032x}"
    inbound = InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw=f"+1737555{next(_sids) % 10_000:04d}",
                          to=PLUMBING, from_zip="78701", from_state="TX")
    with mock.patch.object(timezone, "now", lambda: at or dt.datetime.now(dt.UTC)):
        return sid, services.start_call(inbound)


def next_dial(sid: str, at: dt.datetime | None = None) -> str | None:
    """Line A's Dial action (no answer), through ``handle_once`` as the carrier view sends it."""
    at = at or dt.datetime.now(dt.UTC)
    with mock.patch.object(timezone, "now", lambda: at):
        answered = deliver(sid, "dial:1", lambda: services.dial_finished(sid, 1, NO_ANSWER, now=at))
    return getattr(answered[-1], "number", None)


def test_a_target_whose_hours_ended_while_the_first_rang_is_passed_over():
    line_b = Target.objects.get(key="pipes-b")
    line_b.hours = {"weekly": {"daily": "08:00-17:00"}}  # America/Chicago, the buyer's zone
    line_b.save()
    sid, steps = start(dt.datetime(2026, 11, 27, 22, 59, 50, tzinfo=dt.UTC))  # 16:59:50 in Chicago
    assert steps[-1].number == "+15125550101" and Call.objects.get(call_sid=sid).decision["ring"][1] == line_b.pk
    assert next_dial(sid, dt.datetime(2026, 11, 27, 23, 0, 20, tzinfo=dt.UTC)) == "+15125550103"  # Line C
    assert Call.objects.get(call_sid=sid).decision["refused_at_dial"] == [[line_b.pk, "closed"]]


def test_a_target_paused_while_the_first_rang_is_passed_over():
    sid, _ = start()
    line_b = Target.objects.get(key="pipes-b")
    line_b.paused = True  # the buyer asked to stop; staff paused Line B while Line A rang
    line_b.save()
    assert next_dial(sid) == "+15125550103"
    assert Call.objects.get(call_sid=sid).decision["refused_at_dial"] == [[line_b.pk, "paused"]]


def test_a_target_paused_by_missed_call_protection_while_the_first_rang_is_passed_over():
    sid, _ = start()
    line_b = Target.objects.get(key="pipes-b")
    TargetState.objects.update_or_create(target_id=line_b.pk, defaults={
        "paused_until": timezone.now() + dt.timedelta(minutes=30), "pause_reason": "missed 3 calls"})
    assert next_dial(sid) == "+15125550103"
    assert Call.objects.get(call_sid=sid).decision["refused_at_dial"] == [[line_b.pk, "paused"]]


def test_an_open_target_is_dialled_in_its_turn():
    sid, _ = start()
    assert next_dial(sid) == "+15125550102"
    assert "refused_at_dial" not in Call.objects.get(call_sid=sid).decision
