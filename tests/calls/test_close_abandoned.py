"""A call whose final status never came (the carrier gave up after its retry, or nothing could take it)
would hold its target's slot for good: a one-line buyer would get no call again. One that holds no slot
(left at the IVR, in a fallback, or whose leg was dialled in degraded mode:
``test_close_abandoned_degraded.py``) would stay in progress and ``pending`` for good, listed by
``calls list --verdict pending``. Six hours after it started (longer than any call: a Dial lasts at most
4 h), it is closed as a final status would close it, once, and ``callbroker calls close-abandoned`` says
which. An ended call left ``pending`` for staff to judge, and a call not six hours old, are left alone.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.utils import timezone

from callbroker.billing.models import LedgerEntry
from callbroker.calls import services
from callbroker.calls.events import DialOutcome, EventIn, InboundCall, StatusUpdate
from callbroker.calls.models import Call, CallAttempt, CallEvent
from callbroker.network.models import TargetState

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

SOLO, SOLO_LINE = "+15125550005", "+15125550121"  # e2e-concurrency: one target, concurrency 1
PLUMBING = "+15125550001"  # e2e-plumbing: asks the ZIP when the carrier gives none
IVR = "+15125550003"  # e2e-ivr: asks the ZIP always, then "If you need a roofer, press 1."
AFTER_HOURS = "+15125550002"  # e2e-after-hours: never open, a message
MISSED = "+15125550004"  # e2e-missed: two electricians, then a voicemail
NOT_OURS = "+15125550009"  # no tracking number


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

    # The second call, whose fallback's final status was lost too, holds no slot: closed after the first.
    assert services.close_abandoned(later + dt.timedelta(minutes=2)) == [f"CA{1:032x}", f"CA{2:032x}"]

    call = Call.objects.get(call_sid=f"CA{1:032x}")
    assert (call.stage, call.verdict, call.final_status) == ("ended", "billable", "")  # talked 95 s
    assert not CallAttempt.objects.filter(slot_held=True).exists()
    assert TargetState.objects.get(target__number=SOLO_LINE).active_calls == 0
    assert CallEvent.objects.filter(call_sid=call.call_sid, kind="abandoned").count() == 1
    assert services.close_abandoned(later + dt.timedelta(hours=1)) == []  # once
    assert rings_the_line(services.start_call(inbound(3)))  # the line takes calls again


def caller(n: int, to: str, **carrier: str) -> InboundCall:
    return InboundCall(call_sid=f"CA{n:032x}", account_sid="AC" + "0" * 32, from_raw=f"+1720555{n:04d}", to=to,
                       **carrier)


def at_the_zip_prompt(n: int) -> None:
    assert "AskZip" in repr(services.start_call(caller(n, PLUMBING)))


def at_the_category_question(n: int) -> None:
    services.start_call(caller(n, IVR, from_zip="80202", from_state="CO"))
    assert "AskCategory" in repr(services.zip_entered(f"CA{n:032x}", 1, "80203"))


def hearing_a_closed_message(n: int) -> None:
    assert "We are closed right now." in repr(services.start_call(caller(n, AFTER_HOURS, from_zip="78701")))


def leaving_a_voicemail(n: int) -> None:
    """Both electricians rang out; the caller is asked for a message (whose callback never comes either)."""
    services.start_call(caller(n, MISSED, from_zip="78701", from_state="TX"))
    services.dial_finished(f"CA{n:032x}", 1, DialOutcome(status="no-answer", bridged=False, duration=0))
    assert "TakeMessage" in repr(services.dial_finished(f"CA{n:032x}", 2, DialOutcome(status="no-answer",
                                                                                     bridged=False, duration=0)))


def calling_a_number_not_ours(n: int) -> None:
    services.start_call(caller(n, NOT_OURS, from_zip="78701"))


@pytest.mark.parametrize("left", [at_the_zip_prompt, at_the_category_question, hearing_a_closed_message,
                                  leaving_a_voicemail, calling_a_number_not_ours], ids=lambda f: f.__name__)
def test_a_call_holding_no_slot_whose_final_status_never_came_is_closed_not_billable(left):
    """Nothing holds a slot for it, so it was never found: it stayed in progress and pending for good."""
    left(1)
    sid = f"CA{1:032x}"
    call = Call.objects.get(call_sid=sid)
    assert call.stage != "ended" and call.verdict == "pending"
    assert not CallAttempt.objects.filter(call=call, slot_held=True).exists()
    started = call.started_at
    assert services.close_abandoned(started + services.ABANDONED_AFTER - dt.timedelta(minutes=1)) == []

    assert services.close_abandoned(started + dt.timedelta(hours=7)) == [sid]

    event = CallEvent.objects.get(call_sid=sid, kind="abandoned")
    assert event.params == {"reason": "no final status 6 h after the call started"}  # not "6:00:00"
    call.refresh_from_db()
    assert (call.stage, call.final_status, call.ended_at) == ("ended", "", started + dt.timedelta(hours=7))
    assert (call.verdict, call.reason_codes, call.revenue, call.payout) == (
        "not_billable", ["not_connected"], Decimal("0.00"), Decimal("0.00"))  # no buyer ever talked to it
    assert not LedgerEntry.objects.exists()
    assert CallEvent.objects.filter(call_sid=sid, kind="abandoned").count() == 1
    assert services.close_abandoned(started + dt.timedelta(hours=8)) == []  # once
    out = io.StringIO()
    call_command("calls", "list", "--verdict", "pending", "--json", stdout=out)
    assert json.loads(out.getvalue()) == []


def failing_to_end(monkeypatch, poison) -> Callable[[], None]:
    """``services._end_call`` raising for the CallSids in ``poison`` (a bug, a row the code can't judge), the
    other calls ended as before. Returns what mends it."""
    end_call = services._end_call

    def failing_for_the_poison(call, *args, **kwargs):
        if call.call_sid in poison:
            raise ValueError("a call the code can't judge")
        return end_call(call, *args, **kwargs)

    monkeypatch.setattr(services, "_end_call", failing_for_the_poison)
    return lambda: monkeypatch.setattr(services, "_end_call", end_call)


def test_a_call_that_fails_to_close_is_left_for_the_next_sweep_and_the_others_are_closed(monkeypatch, caplog):
    """One call whose closing raised (a bug, a row the code can't judge) stopped the sweep at it, at every
    sweep: no other abandoned call was ever closed again."""
    for n in (1, 2, 3):
        at_the_zip_prompt(n)
    poison = f"CA{2:032x}"
    mend = failing_to_end(monkeypatch, {poison})
    later = Call.objects.get(call_sid=poison).started_at + dt.timedelta(hours=7)

    assert sorted(services.close_abandoned(later)) == [f"CA{1:032x}", f"CA{3:032x}"]

    assert Call.objects.get(call_sid=poison).verdict == "pending"
    assert not CallEvent.objects.filter(call_sid=poison, kind="abandoned").exists()  # rolled back with it
    assert f"call {poison}: could not be closed" in caplog.text
    mend()  # whatever it was is mended: the next sweep closes it
    assert services.close_abandoned(later + dt.timedelta(minutes=10)) == [poison]


@pytest.mark.parametrize("holding_a_slot", [False, True], ids=["at-the-ivr", "holding-a-slot"])
def test_calls_that_fail_to_close_however_many_dont_keep_the_others_from_being_closed(monkeypatch, holding_a_slot):
    """A pass took at most ``limit`` calls and tried each: more calls failing to close than that (each tried
    again at every pass) filled every pass, and no other abandoned call was ever closed again."""
    for n in range(1, 7):
        at_the_zip_prompt(n)
    poison = {f"CA{n:032x}" for n in range(1, 6)}  # five, listed before the sixth, and a pass takes three
    if holding_a_slot:  # the first listing, whose filling a pass used to end at
        for n, sid in enumerate(sorted(poison), start=1):
            CallAttempt.objects.create(call=Call.objects.get(call_sid=sid), sequence=1, number=SOLO_LINE,
                                       started_at=Call.objects.get(call_sid=sid).started_at, slot_held=True)
    mend = failing_to_end(monkeypatch, poison)
    later = timezone.now() + dt.timedelta(hours=7)

    assert services.close_abandoned(later, limit=3) == [f"CA{6:032x}"]

    assert set(Call.objects.filter(call_sid__in=poison).values_list("verdict", flat=True)) == {"pending"}
    mend()  # closed three a pass again
    assert len(services.close_abandoned(later, limit=3)) == 3
    assert len(services.close_abandoned(later, limit=3)) == 2
    assert not Call.objects.exclude(stage="ended").exists()


def test_a_call_that_fails_to_close_is_tried_once_a_pass(monkeypatch, caplog):
    """A call ringing when its final status was lost is on both of a pass's lists: holding a slot, and not
    ended. Failing to close, it was tried (and logged with its traceback) once on each, twice a pass."""
    assert rings_the_line(services.start_call(inbound(1)))
    sid = f"CA{1:032x}"
    tried = []

    def failing(call, *args, **kwargs):
        tried.append(call.call_sid)
        raise ValueError("a call the code can't judge")

    monkeypatch.setattr(services, "_end_call", failing)
    later = Call.objects.get(call_sid=sid).started_at + dt.timedelta(hours=7)

    assert services.close_abandoned(later) == []

    assert tried == [sid]
    assert caplog.text.count(f"call {sid}: could not be closed") == 1
    assert CallAttempt.objects.get(call__call_sid=sid).slot_held  # left for the next pass


def test_a_call_failing_to_close_at_every_pass_logs_its_traceback_once_then_a_line_a_pass(monkeypatch,
                                                                                          caplog):
    """The background pass runs every 10 minutes for good: a call that fails to close logged a traceback at
    every pass, for good, one for each such call. Now once a call in the process, then one line a pass
    naming them all; the calls closable are still closed, whatever the pass's limit."""
    for n in (1, 2, 3):
        at_the_zip_prompt(n)
    poison = [f"CA{1:032x}", f"CA{2:032x}"]
    mend = failing_to_end(monkeypatch, poison)
    later = Call.objects.get(call_sid=poison[0]).started_at + dt.timedelta(hours=7)

    assert services.close_abandoned(later, limit=1) == [f"CA{3:032x}"]
    logged = [r for r in caplog.records if "could not be closed" in r.getMessage()]
    assert [r.exc_info is not None for r in logged] == [True, True]  # each with its traceback

    for minutes in (10, 20):
        caplog.clear()
        assert services.close_abandoned(later + dt.timedelta(minutes=minutes), limit=1) == []
        lines = [r for r in caplog.records if "could not be closed" in r.getMessage()]
        assert len(lines) == 1 and lines[0].exc_info is None
        assert lines[0].getMessage().startswith(
            "2 calls could not be closed again (no final status 6 h after the call started; tracebacks "
            f"logged when each first failed): {poison[0]} (ValueError: a call the code can't judge), "
            f"{poison[1]} ")

    mend()  # closed, and not remembered as failing
    caplog.clear()
    assert services.close_abandoned(later + dt.timedelta(minutes=30)) == poison
    assert "could not be closed" not in caplog.text and services._failed_to_close == set()


def test_a_call_that_failed_to_close_then_closed_by_its_final_status_is_forgotten_at_the_next_pass(monkeypatch,
                                                                                                  caplog):
    """A call remembered as failing (its traceback logged once) that is then closed otherwise (its final status
    came, another process's sweep or the command closed it) is listed no more, so no pass tried it again to
    forget it: each app process kept its CallSid for good, one more for every such call, a set that only
    grew. A pass that tries every call listed keeps only those it tried."""
    at_the_zip_prompt(1)
    call_sid = f"CA{1:032x}"
    mend = failing_to_end(monkeypatch, {call_sid})
    later = Call.objects.get(call_sid=call_sid).started_at + dt.timedelta(hours=7)
    assert services.close_abandoned(later) == []
    assert services._failed_to_close == {call_sid}

    mend()
    services.call_status(call_sid, StatusUpdate(status="completed", duration=40))  # closed otherwise
    assert services.close_abandoned(later + dt.timedelta(minutes=10)) == []
    assert services._failed_to_close == set()


def test_an_outage_stops_the_sweep(monkeypatch):
    for n in (1, 2):
        at_the_zip_prompt(n)
    calls = []

    def database_gone(call, *args, **kwargs):
        calls.append(call.call_sid)
        raise OperationalError("connection refused")

    monkeypatch.setattr(services, "_end_call", database_gone)
    with pytest.raises(OperationalError):
        services.close_abandoned(timezone.now() + dt.timedelta(hours=7))
    assert len(calls) == 1  # the next call not tried: the database is away for it too


def test_an_ended_call_left_pending_for_staff_and_a_younger_call_are_left_alone():
    services.start_call(caller(1, PLUMBING, from_zip="78701", from_state="TX"))  # rings a plumber …
    Call.objects.filter(call_sid=f"CA{1:032x}").update(campaign=None)  # … whose campaign is deleted meanwhile
    services.call_status(f"CA{1:032x}", StatusUpdate(status="completed", duration=40))
    assert Call.objects.get(call_sid=f"CA{1:032x}").verdict == "pending"  # no campaign to judge by: staff do
    at_the_zip_prompt(2)
    later = Call.objects.get(call_sid=f"CA{2:032x}").started_at + dt.timedelta(hours=7)
    Call.objects.filter(call_sid=f"CA{2:032x}").update(started_at=later - dt.timedelta(hours=5))
    at_the_zip_prompt(3)
    Call.objects.filter(call_sid=f"CA{3:032x}").update(campaign=None)  # its campaign deleted while at the IVR

    assert services.close_abandoned(later) == [f"CA{3:032x}"]

    assert [(c.call_sid, c.stage, c.verdict) for c in Call.objects.order_by("call_sid")] == [
        (f"CA{1:032x}", "ended", "pending"), (f"CA{2:032x}", "ivr", "pending"),
        (f"CA{3:032x}", "ended", "pending")]  # closed, still for staff to judge
    assert not CallEvent.objects.filter(call_sid__in=[f"CA{1:032x}", f"CA{2:032x}"], kind="abandoned").exists()
    assert services.close_abandoned(later) == []  # the one closed is ended: not taken again


def test_a_pass_closes_at_most_its_limit_of_calls_the_next_one_the_rest():
    assert rings_the_line(services.start_call(inbound(1)))
    at_the_zip_prompt(2)
    at_the_zip_prompt(3)
    later = timezone.now() + dt.timedelta(hours=7)
    first = services.close_abandoned(later, limit=2)
    assert first[0] == f"CA{1:032x}" and len(first) == 2
    assert services.close_abandoned(later, limit=2) == sorted({f"CA{2:032x}", f"CA{3:032x}"} - set(first))
    assert set(Call.objects.values_list("stage", flat=True)) == {"ended"}


def test_the_command_says_what_it_closed():
    services.start_call(inbound(1))  # rings the line, and nothing more ever comes
    out = io.StringIO()
    call_command("calls", "close-abandoned", stdout=out)
    assert out.getvalue() == "No call still in progress or holding a slot 6 h after it started.\n"
    CallAttempt.objects.update(started_at=timezone.now() - dt.timedelta(hours=7))
    out = io.StringIO()
    call_command("calls", "close-abandoned", stdout=out)
    assert out.getvalue().splitlines() == [
        "Closed 1 call whose final status never came (6 h after they started), any slot held given back:",
        f"  CA{1:032x}"]
    call = Call.objects.get(call_sid=f"CA{1:032x}")
    assert call.stage == "ended" and call.verdict == "not_billable"
    assert CallAttempt.objects.get(call=call).result == "canceled"


@pytest.mark.parametrize(("failing", "refusal"), [
    ("callbroker.calls.replay.record_kept_statuses",
     "Cannot record calls known only from a final status (database is locked). Already done: calls "
     "closed: 1."),
    ("callbroker.network.cap_counts.forget_finished_periods",
     "Cannot delete cap counts of finished periods (database is locked). Already done: calls closed: 1, "
     "calls recorded from a final status: 0."),
], ids=["recording", "deleting-cap-counts"])
def test_a_later_step_failing_says_which_and_what_was_done(monkeypatch, failing, refusal):
    """The command's steps after closing the calls (recording the final statuses kept alone, deleting the
    cap counts of finished periods) failing said "Cannot close calls", though the calls were closed."""
    services.start_call(inbound(1))
    CallAttempt.objects.update(started_at=timezone.now() - dt.timedelta(hours=7))

    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(failing, locked)
    with pytest.raises(CommandError) as refused:
        call_command("calls", "close-abandoned", stdout=io.StringIO())
    assert str(refused.value) == f"{refusal} Is the database reachable (DATABASE_URL)?"
    assert Call.objects.get(call_sid=f"CA{1:032x}").stage == "ended"  # as it says


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


@pytest.mark.parametrize("started", [rings_the_line, at_the_zip_prompt], ids=["holding a slot", "at the IVR"])
def test_a_call_whose_final_status_comes_while_the_sweep_is_at_it_is_not_taken_for_closed(monkeypatch, started):
    """The sweep lists the calls, then closes them one by one; a call's late final status handled in between
    (another worker, at that moment) ends it. The sweep then found an ended call and took it for one it
    closed: listed among the calls whose final status never came, logged so, with an ``abandoned`` event
    beside the final status that did come. The same when another node's sweep closed it in between
    (PostgreSQL, two nodes at once: tests/postgres/test_sweeps_at_once.py)."""
    n = 1
    if started is rings_the_line:
        assert rings_the_line(services.start_call(inbound(n)))
    else:
        started(n)
    sid = f"CA{n:032x}"
    close_without_status = services.close_without_status

    def status_first(call_sid, *args, **kwargs):  # the final status, handled as the status webhook does
        event = EventIn(call_sid=call_sid, kind="status", dedupe_key=f"{call_sid}:status:completed:9",
                        params={"CallSid": call_sid, "CallStatus": "completed"})
        services.handle_once(event, lambda: services.call_status(call_sid, StatusUpdate("completed", 30)),
                             lambda steps: "")
        return close_without_status(call_sid, *args, **kwargs)

    monkeypatch.setattr(services, "close_without_status", status_first)

    assert services.close_abandoned(timezone.now() + dt.timedelta(hours=7)) == []

    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.final_status, call.duration_seconds) == ("ended", "completed", 30)
    assert not CallEvent.objects.filter(call_sid=sid, kind="abandoned").exists()
    assert not CallAttempt.objects.filter(slot_held=True).exists()
    assert TargetState.objects.get(target__number=SOLO_LINE).active_calls == 0


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


def test_the_calls_still_in_progress_are_found_by_the_verdict_index():
    """Not by ``started_at``: every call of the past started more than 6 h ago (PostgreSQL: tests/postgres)."""
    from django.db import connection

    from tests.calls.test_schema_indexes import query_plan

    at_the_zip_prompt(1)
    ran = []

    def capture(execute, sql, params, many, context):
        ran.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        assert services.close_abandoned(timezone.now() + dt.timedelta(hours=7)) == [f"CA{1:032x}"]
    [(sql, params)] = [(sql, params) for sql, params in ran if '"calls_call"."stage"' in sql]
    assert "SEARCH calls_call USING INDEX calls_call_verdict_" in query_plan(sql, params)


def test_an_outage_part_way_through_closing_says_how_many_were_closed_before_it(monkeypatch):
    """The first step failing after it had closed calls said only "Cannot close calls (…)", as if none had
    been: the later steps say what was done before them, this one didn't."""
    assert rings_the_line(services.start_call(inbound(1)))
    at_the_zip_prompt(2)
    end_call = services._end_call

    def gone_at_the_second(call, *args, **kwargs):
        if call.call_sid == f"CA{2:032x}":
            raise OperationalError("database is locked")
        return end_call(call, *args, **kwargs)

    monkeypatch.setattr(services, "_end_call", gone_at_the_second)
    Call.objects.update(started_at=timezone.now() - dt.timedelta(hours=7))
    CallAttempt.objects.update(started_at=timezone.now() - dt.timedelta(hours=7))
    out = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("calls", "close-abandoned", stdout=out)
    assert str(refused.value) == ("Cannot close calls (database is locked). Already done: calls closed: 1 "
                                  "(listed above). Is the database reachable (DATABASE_URL)?")
    assert out.getvalue().splitlines() == [
        "Closed 1 call whose final status never came (6 h after they started), any slot held given back:",
        f"  CA{1:032x}"]
    assert [(c.call_sid, c.stage) for c in Call.objects.order_by("call_sid")] == [
        (f"CA{1:032x}", "ended"), (f"CA{2:032x}", "ivr")]
