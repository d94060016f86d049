"""A call whose final status never came (the carrier gave up after its retry, or nothing could take it)
would hold its target's slot for good: a one-line buyer would get no call again. Six hours after it
started (longer than any call: a Dial lasts at most 4 h), it is closed as a final status would close it,
once, and ``callbroker calls close-abandoned`` says which.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from callbroker.calls import services
from callbroker.calls.events import DialOutcome, InboundCall
from callbroker.calls.models import Call, CallAttempt, CallEvent
from callbroker.network.models import TargetState

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

SOLO, SOLO_LINE = "+15125550005", "+15125550121"  # e2e-concurrency: one target, concurrency 1


def inbound(n: int) -> InboundCall:
    return InboundCall(call_sid=f"CA{n:032x}", account_sid="AC" + "0" * 32, from_raw=f"+1737555{n:04d}", to=SOLO,
                       from_zip="78701", from_state="TX")


def rings_the_line(steps) -> bool:
    return any(getattr(step, "number", None) == SOLO_LINE for step in steps)


def test_a_call_whose_final_status_never_came_is_closed_and_gives_its_slot_back():
    assert rings_the_line(services.start_call(inbound(1)))
    services.dial_finished(f"CA{1:032x}", 1, DialOutcome(status="completed", bridged=True, duration=95))
    assert not rings_the_line(services.start_call(inbound(2)))  # the one line is taken: the fallback
    later = timezone.now() + services.ABANDONED_AFTER - dt.timedelta(minutes=1)
    assert services.close_abandoned(later) == []  # not yet: it may still be talking

    assert services.close_abandoned(later + dt.timedelta(minutes=2)) == [f"CA{1:032x}"]

    call = Call.objects.get(call_sid=f"CA{1:032x}")
    assert (call.stage, call.verdict, call.final_status) == ("ended", "billable", "")  # talked 95 s
    assert not CallAttempt.objects.filter(slot_held=True).exists()
    assert TargetState.objects.get(target__number=SOLO_LINE).active_calls == 0
    assert CallEvent.objects.filter(call_sid=call.call_sid, kind="abandoned").count() == 1
    assert services.close_abandoned(later + dt.timedelta(hours=1)) == []  # once
    assert rings_the_line(services.start_call(inbound(3)))  # the line takes calls again


def test_the_command_says_what_it_closed():
    services.start_call(inbound(1))  # rings the line, and nothing more ever comes
    out = io.StringIO()
    call_command("calls", "close-abandoned", stdout=out)
    assert out.getvalue() == "No call holds a slot 6 h after it started.\n"
    CallAttempt.objects.update(started_at=timezone.now() - dt.timedelta(hours=7))
    out = io.StringIO()
    call_command("calls", "close-abandoned", stdout=out)
    assert out.getvalue().splitlines() == [
        "Closed 1 call whose final status never came (6 h after they started), their slots given back:",
        f"  CA{1:032x}"]
    call = Call.objects.get(call_sid=f"CA{1:032x}")
    assert call.stage == "ended" and call.verdict == "not_billable"
    assert CallAttempt.objects.get(call=call).result == "canceled"


@pytest.mark.django_db(transaction=True)
def test_the_background_pass_closes_them_when_set_to(settings):
    import time

    from callbroker.calls import replay

    services.start_call(inbound(1))
    CallAttempt.objects.update(started_at=timezone.now() - dt.timedelta(hours=7))
    settings.CLOSE_ABANDONED_EVERY_S = 0  # off (tests, the CLI)
    assert replay.background_pass(0.0) == (False, 0.0)
    assert Call.objects.get().stage != "ended"
    settings.CLOSE_ABANDONED_EVERY_S = 600
    busy, next_sweep = replay.background_pass(time.monotonic() + 60)  # not yet
    assert Call.objects.get().stage != "ended"
    busy, next_sweep = replay.background_pass(0.0)
    assert not busy and next_sweep > time.monotonic() + 590
    assert Call.objects.get().stage == "ended"


def test_closing_a_call_not_in_the_database_stores_nothing_that_would_stop_a_later_close():
    sid = f"CA{9:032x}"  # spooled on another node, not replayed yet
    assert services.close_without_status(sid) is False
    assert not CallEvent.objects.filter(call_sid=sid).exists()
    services.start_call(inbound(9))  # replayed (or live) later: it rings the line …
    CallAttempt.objects.update(started_at=timezone.now() - dt.timedelta(hours=7))  # … and its end is lost
    assert services.close_abandoned() == [sid]



def test_a_new_callbroker_run_closes_the_simulated_calls_the_last_one_left_unfinished():
    """``callbroker run`` stopped at once (a second Ctrl-C, a kill) leaves its calls ringing; the emulator
    playing them is gone, so the next run closes them when it starts (only calls of its own account: not
    those of `sim traffic`, nor of other carriers)."""
    from callbroker.ops.management.commands.run import RUN_ACCOUNT_SID
    from callbroker.ops.management.commands.run import Command as Run

    simulated = InboundCall(call_sid="CA" + "5" * 32, account_sid=RUN_ACCOUNT_SID, from_raw="+17375550001",
                            to=SOLO, from_zip="78701", from_state="TX")
    assert rings_the_line(services.start_call(simulated))
    services.start_call(inbound(2))  # another account's call, in IVR or fallback: not the run's to close
    assert services.unfinished_calls_of(RUN_ACCOUNT_SID) == [simulated.call_sid]

    out = io.StringIO()
    Run(stdout=out).close_leftovers()

    assert "Closed 1 simulated call an earlier run left unfinished" in out.getvalue()
    assert Call.objects.get(call_sid=simulated.call_sid).stage == "ended"
    assert Call.objects.get(call_sid=f"CA{2:032x}").stage != "ended"
    assert TargetState.objects.get(target__number=SOLO_LINE).active_calls == 0
    assert services.unfinished_calls_of(RUN_ACCOUNT_SID) == []
    out = io.StringIO()
    Run(stdout=out).close_leftovers()
    assert out.getvalue() == ""
