"""A call's real final status that comes after the six-hour close replaces what the close made up.

Given the e2e network and a call whose final status did not come within six hours (an outage longer than
that), ``close_abandoned`` ended it: an ``abandoned`` event, the close's time as its end, no carrier status, no
duration, its slot given back, judged. When its real final status still comes (delivered late by the carrier,
or replayed from the spool of a node that was down), the call ends as that status says, as if it had come in
time: when the status came, with its ``CallStatus`` and ``CallDuration``; a leg the close canceled rang until
then. The ``abandoned`` event stays in the log; nothing is given back twice (SQL and Redis counters alike);
the verdict is judged again only when what it rests on changed (the duration caps the talk time); a second
delivery changes nothing. Until 2026-12-07 the status found an ended call and was dropped: the call kept the
close's end time and no duration.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from callbroker.billing.models import LedgerEntry
from callbroker.billing.reconcile import check_ledger
from callbroker.calls import replay, services, spool
from callbroker.calls.models import Call, CallAttempt, CallEvent
from callbroker.network.models import TargetState, TargetUsage
from tests.calls.test_degraded_limits import (  # noqa: F401 - the world fixture
    REAL_HANDLE_ONCE,
    SOLO_LINE,
    cap_the_solo_line_hourly,
    solo_counters,
    world,
)
from tests.calls.test_replayed_event_times import carrier, replayed_at  # noqa: F401 - the carrier fixture

CLOSED_AFTER = dt.timedelta(hours=7)  # the sweep that closes the call: six hours and more after it started


def new_sid() -> str:
    return "CA" + uuid.uuid4().hex


def counted() -> tuple:
    """Everything the call path counts and the money it posted, to compare before and after the late status."""
    return (sorted(TargetState.objects.values_list("target_id", "active_calls")),
            sorted(TargetUsage.objects.values_list("target_id", "period", "count")),
            sorted(LedgerEntry.objects.values_list("call_sid", "kind", "generation", "amount")),
            CallAttempt.objects.filter(slot_held=True).count())


def the_call(sid: str) -> dict:
    call = Call.objects.get(call_sid=sid)
    return {**model_to_dict(call), "attempts": [model_to_dict(a) for a in CallAttempt.objects.filter(call=call)]}


def closed_by_the_sweep(sid: str) -> Call:
    """The six-hour close runs (the final status lost so far): the call is ended without a status."""
    started = Call.objects.get(call_sid=sid).started_at
    assert services.close_abandoned(started + CLOSED_AFTER) == [sid]
    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.final_status, call.duration_seconds, call.ended_at) == (
        "ended", "", None, started + CLOSED_AFTER)
    return call


def at(moment: dt.datetime, monkeypatch, deliver) -> str:
    """A webhook handled live with the clock at ``moment``."""
    with monkeypatch.context() as clock:
        clock.setattr(timezone, "now", lambda: moment)
        return deliver()


def talked(carrier, sid: str, seconds: int) -> None:  # noqa: F811 - the fixture's carrier
    """A plumbing call routed live, its buyer bridged for ``seconds``: it holds its line until its end."""
    answer = carrier.voice(sid)
    assert "<Dial" in answer
    carrier.bridged(answer, sid, seconds)
    assert CallAttempt.objects.get(call__call_sid=sid).slot_held


def test_a_final_status_delivered_live_after_the_close_ends_the_call_as_it_says(carrier, monkeypatch):  # noqa: F811
    sid = new_sid()
    talked(carrier, sid, 85)
    closed = closed_by_the_sweep(sid)
    assert closed.verdict == "billable"
    before, judged = counted(), (closed.verdict, closed.reason_codes, closed.revenue, closed.payout,
                                 closed.qualified_at, closed.talk_seconds)
    came = closed.ended_at + dt.timedelta(minutes=20)  # the carrier delivers it late

    at(came, monkeypatch, lambda: carrier.ended(sid, 100))

    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.final_status, call.duration_seconds, call.ended_at) == ("ended", "completed", 100, came)
    assert (call.verdict, call.reason_codes, call.revenue, call.payout, call.qualified_at,
            call.talk_seconds) == judged  # talked 85 s of 100: nothing the verdict rests on changed
    assert counted() == before  # the close gave the line back; the status gives nothing back again
    assert CallEvent.objects.filter(call_sid=sid, kind="abandoned").count() == 1  # what the sweep did, kept
    assert CallEvent.objects.filter(call_sid=sid, kind="status").count() == 1
    assert check_ledger().ok


def test_a_leg_the_close_canceled_rang_until_the_late_status_came(carrier, monkeypatch):  # noqa: F811
    """The line rang and nothing more came (Dial action and final status lost): the close canceled the leg at
    its own time; the late status says when the caller hung up."""
    sid = new_sid()
    assert "<Dial" in carrier.voice(sid)
    closed = closed_by_the_sweep(sid)
    leg = CallAttempt.objects.get(call=closed)
    assert (leg.result, leg.ended_at, leg.slot_held) == ("canceled", closed.ended_at, False)
    before = counted()
    came = leg.started_at + dt.timedelta(hours=6, minutes=30)

    at(came, monkeypatch, lambda: carrier.ended(sid, 20))

    leg.refresh_from_db()
    assert (leg.result, leg.ended_at, leg.ring_seconds) == (
        "canceled", came, int((came - leg.started_at).total_seconds()))
    call = Call.objects.get(call_sid=sid)
    assert (call.ended_at, call.final_status, call.duration_seconds, call.verdict) == (
        came, "completed", 20, "not_billable")
    assert counted() == before  # its slot and cap unit went back with the close, once


def test_a_final_status_replayed_after_the_close_ends_the_call_when_it_came(carrier, monkeypatch):  # noqa: F811
    """The status came during the outage, to a node that spooled it and was down until after the close."""
    sid = new_sid()
    talked(carrier, sid, 85)
    carrier.down = True
    carrier.ended(sid, 100)  # answered from memory, spooled
    carrier.down = False
    [line] = spool.read(spool.path_of(sid))
    status_came = dt.datetime.fromisoformat(line["ended_at"])
    closed = closed_by_the_sweep(sid)
    before, verdict = counted(), (closed.verdict, closed.revenue, closed.qualified_at)

    replayed_at(closed.ended_at + dt.timedelta(hours=1), monkeypatch)

    call = Call.objects.get(call_sid=sid)
    assert (call.final_status, call.duration_seconds, call.ended_at) == ("completed", 100, status_came)
    assert call.ended_at < closed.ended_at  # when the carrier said so, not when the sweep gave up
    assert (call.verdict, call.revenue, call.qualified_at) == verdict
    assert counted() == before
    assert not spool.path_of(sid).exists()
    assert CallEvent.objects.filter(call_sid=sid, kind="abandoned").count() == 1


def test_the_late_status_delivered_again_or_replayed_again_changes_nothing(
        carrier, settings, tmp_path, monkeypatch):  # noqa: F811
    """Delivered twice live, and the same webhook spooled by another node (the carrier's retry reached it
    during the outage) replayed after both: the first delivery only counts."""
    sid = new_sid()
    talked(carrier, sid, 85)
    settings.DATA_DIR = tmp_path / "b"  # another node, down during the outage: it spooled the retry
    carrier.down = True
    carrier.ended(sid, 100)
    carrier.down = False
    settings.DATA_DIR = tmp_path
    closed = closed_by_the_sweep(sid)
    came = closed.ended_at + dt.timedelta(minutes=5)
    at(came, monkeypatch, lambda: carrier.ended(sid, 100))
    once, before = the_call(sid), counted()
    assert (once["final_status"], once["duration_seconds"], once["ended_at"]) == ("completed", 100, came)

    at(came + dt.timedelta(minutes=1), monkeypatch, lambda: carrier.ended(sid, 100))  # the carrier's retry
    settings.DATA_DIR = tmp_path / "b"
    replayed_at(came + dt.timedelta(hours=1), monkeypatch)

    assert the_call(sid) == once
    assert counted() == before
    assert CallEvent.objects.filter(call_sid=sid, kind="status").count() == 1
    assert not spool.path_of(sid).exists()


def test_a_second_final_status_after_the_late_one_changes_nothing(carrier, monkeypatch):  # noqa: F811
    """Once the late status ended the call, another final status (any sequence) finds a call ended by its own
    status, which keeps the current behaviour: nothing changes."""
    sid = new_sid()
    talked(carrier, sid, 85)
    closed = closed_by_the_sweep(sid)
    came = closed.ended_at + dt.timedelta(minutes=5)
    at(came, monkeypatch, lambda: carrier.ended(sid, 100))
    once, before = the_call(sid), counted()
    assert (once["final_status"], once["duration_seconds"], once["ended_at"]) == ("completed", 100, came)

    at(came + dt.timedelta(minutes=1), monkeypatch, lambda: carrier.post("/carriers/twilio/status", {
        **carrier.inbound(sid), "CallStatus": "failed", "CallDuration": "3", "SequenceNumber": "9"}))

    assert the_call(sid) == once
    assert counted() == before


def test_a_late_duration_shorter_than_the_talk_time_judges_the_call_again(carrier, monkeypatch):  # noqa: F811
    """The talk time comes from the Dial action; the carrier's duration caps it (``_qualify``). The close had no
    duration, so the Dial action's 85 s were billed; the carrier says the whole call lasted 40 s: under the
    campaign's 60 s buffer, not billable, the charge and payout taken back."""
    sid = new_sid()
    talked(carrier, sid, 85)
    closed = closed_by_the_sweep(sid)
    assert closed.verdict == "billable" and LedgerEntry.objects.filter(call_sid=sid).exists()

    at(closed.ended_at + dt.timedelta(minutes=5), monkeypatch, lambda: carrier.ended(sid, 40))

    call = Call.objects.get(call_sid=sid)
    assert (call.duration_seconds, call.talk_seconds, call.verdict) == (40, 40, "not_billable")
    assert sum(LedgerEntry.objects.filter(call_sid=sid).values_list("amount", flat=True)) == 0
    assert check_ledger().ok
    assert not CallAttempt.objects.filter(slot_held=True).exists()


@pytest.mark.usefixtures("clear_of_the_hour")
def test_with_redis_counters_the_replayed_late_status_gives_back_nothing_twice(world, monkeypatch):  # noqa: F811
    """Redis counters: the call reached the one-line buyer live (its slot and hourly unit in Redis) and talked;
    its final status came during the outage (degraded mode marked its end in Redis); the close gave the line
    back. The replayed status ends the call as it says, takes nothing off Redis's counters, and its end mark
    goes with the replay."""
    cap_the_solo_line_hourly()
    up = pytest.MonkeyPatch()
    up.setattr(services, "handle_once", REAL_HANDLE_ONCE)
    sid = new_sid()
    try:
        assert SOLO_LINE in world.voice(sid)  # routed live
        world.dial(sid, 1, bridged=True, talk=95)
    finally:
        up.undo()
    world.ended(sid, 110)  # during the outage: spooled
    [line] = spool.read(spool.path_of(sid))
    assert (solo_counters().active, solo_counters().hour) == (1, 1)  # degraded mode gives back no live slot
    monkeypatch.undo()  # the database is back; the node that spooled the status is not (yet)
    closed = closed_by_the_sweep(sid)
    assert (solo_counters().active, solo_counters().hour) == (0, 1)  # the line back, the delivered call counted
    before = counted()

    assert replay.replay_ready().errors == []

    call = Call.objects.get(call_sid=sid)
    assert (call.final_status, call.duration_seconds, call.ended_at) == (
        "completed", 110, dt.datetime.fromisoformat(line["ended_at"]))
    assert (call.verdict, call.qualified_at) == ("billable", closed.qualified_at)  # judged once, by the close
    assert (solo_counters().active, solo_counters().hour) == (0, 1)
    assert counted() == before
    assert not spool.path_of(sid).exists()
    assert SOLO_LINE in world.voice(new_sid())  # the one line takes the next caller
