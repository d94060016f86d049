"""A final status kept in the database for an inbound webhook that never comes is kept as a call of its own.

Given the e2e network and a signing carrier, when a call's final status reaches us with the database up
before its inbound webhook was handled, the status is answered and kept for that webhook
(``services.call_status``). When the webhook never comes (it died in the worker, and the carrier played
its own error), then, an hour on, the sweep of every app process (``replay.background_pass``) and
``callbroker calls close-abandoned`` keep the call from the status's own facts, as the spool replay keeps a
spooled final status alone: the caller, the number called, its campaign, its duration, ended, never billable
(``status_only``, ``not_connected``), once, whichever node sweeps and however often; the inbound webhook
handled later makes no second call and rings no one. A call whose inbound webhook did come is left as it
is. Until 2026-12-07 nothing ever turned such a status into a call: the call log lacked a call that
happened.
"""

from __future__ import annotations

import datetime as dt
import io
import time
import uuid

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from callbroker.billing.models import LedgerEntry
from callbroker.calls import replay, services
from callbroker.calls.models import Call, CallAttempt, CallEvent, KeptStatus
from callbroker.network.loader import load_network
from callbroker.network.models import TargetState
from callbroker.network.snapshot import current_snapshot, reset_snapshot
from tests.hostile.strategies import E2E_NETWORK, PlumbingCaller, signing_carrier_settings
from tests.hostile.strategies import PLUMBING_CALLER as CALLER
from tests.hostile.strategies import PLUMBING_NUMBER as PLUMBING



@pytest.fixture
def carrier(transactional_db, settings, tmp_path):
    """The e2e network and a signing carrier; the database up all along (no spool involved)."""
    signing_carrier_settings(settings, tmp_path)
    settings.COUNTERS_BACKEND = "sql"
    reset_snapshot()
    load_network(E2E_NETWORK)
    current_snapshot()
    yield Carrier(Client(raise_request_exception=True))
    reset_snapshot()


class Carrier(PlumbingCaller):
    """Signed webhooks of one caller to the plumbing number."""

    def ended(self, sid: str, seconds: int = 42, **more: str) -> str:
        return self.post("/carriers/twilio/status", {**self.inbound(sid), "CallStatus": "completed",
                                                     "CallDuration": str(seconds), "SequenceNumber": "4", **more})


def status_alone(carrier: Carrier) -> str:
    """A call whose inbound webhook died in the worker: only its final status reached us, the database up."""
    sid = "CA" + uuid.uuid4().hex
    assert "<Response" in carrier.ended(sid)
    assert not Call.objects.filter(call_sid=sid).exists()
    return sid


def received(sid: str) -> dt.datetime:
    return CallEvent.objects.get(call_sid=sid, kind="status").received_at


def assert_kept_from_its_final_status(sid: str) -> Call:
    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.final_status, call.duration_seconds, call.fallback_applied) == (
        "ended", "completed", 42, services.STATUS_ONLY)
    assert (call.caller_number, call.to_number, call.caller_zip) == (CALLER, PLUMBING, "78701")
    assert call.campaign_id is not None and call.publisher_id is not None  # the network's call log shows it
    assert (call.verdict, call.reason_codes, call.connected_target_id) == ("not_billable", ["not_connected"], None)
    assert call.revenue == call.payout == 0 and not LedgerEntry.objects.filter(call_sid=sid).exists()
    assert not CallAttempt.objects.filter(call=call).exists()
    # It ended when its status came (kept a moment after its event was received), and lasted CallDuration.
    assert dt.timedelta(0) <= call.ended_at - received(sid) < dt.timedelta(seconds=1)
    assert call.ended_at - call.started_at == dt.timedelta(seconds=42)
    # Its status_only event, like the spool replay's, is stamped when the status came, not when swept.
    status_only = CallEvent.objects.get(call_sid=sid, kind=services.STATUS_ONLY)
    assert status_only.received_at == call.ended_at
    return call


def test_a_final_status_whose_inbound_webhook_never_came_is_kept_as_a_call_after_an_hour(carrier):
    sid = status_alone(carrier)
    now = timezone.now()
    assert services.close_abandoned(now + dt.timedelta(hours=2)) == []  # holds no slot: not that sweep's
    assert replay.record_kept_statuses(now + replay.STATUS_ONLY_AFTER - dt.timedelta(minutes=1)) == []
    assert not Call.objects.filter(call_sid=sid).exists()  # its inbound webhook may still be handled

    assert replay.record_kept_statuses(now + dt.timedelta(hours=2)) == [sid]

    assert_kept_from_its_final_status(sid)
    assert sorted(CallEvent.objects.filter(call_sid=sid).values_list("kind", flat=True)) == [
        "status", services.STATUS_ONLY]
    assert not KeptStatus.objects.exists()  # done with
    assert replay.record_kept_statuses(now + dt.timedelta(hours=3)) == []  # once


def test_its_inbound_webhook_handled_later_makes_no_second_call_and_rings_no_one(carrier):
    """A stuck worker committing at last, or the carrier's retry: answered ``<Hangup/>``, nothing written."""
    sid = status_alone(carrier)
    replay.record_kept_statuses(timezone.now() + dt.timedelta(hours=2))

    answer = carrier.voice(sid)

    assert "<Hangup" in answer and "<Dial" not in answer
    assert Call.objects.filter(call_sid=sid).count() == 1
    assert_kept_from_its_final_status(sid)
    assert not TargetState.objects.filter(active_calls__gt=0).exists()  # no slot taken


def test_a_call_whose_inbound_webhook_came_after_its_status_is_left_as_it_is(carrier):
    """The usual case of a status first: the inbound webhook, handled after it, records the call as ended;
    the sweep finds it recorded and only forgets the status."""
    sid = status_alone(carrier)
    assert "<Hangup" in carrier.voice(sid)
    before = Call.objects.values().get(call_sid=sid)
    assert before["fallback_applied"] != services.STATUS_ONLY
    assert KeptStatus.objects.filter(call_sid=sid).exists()  # on the list until a sweep finds the call

    assert replay.record_kept_statuses(timezone.now() + dt.timedelta(hours=2)) == []

    assert Call.objects.values().get(call_sid=sid) == before
    assert not CallEvent.objects.filter(call_sid=sid, kind=services.STATUS_ONLY).exists()
    assert not KeptStatus.objects.exists()


def test_sweeping_on_several_nodes_records_the_call_once(carrier):
    """Two nodes read the list at the same moment: the second one's recording finds the first one's event
    (the spool replay's key, ``{CallSid}:status_only``) and writes nothing."""
    sid = status_alone(carrier)
    kept = KeptStatus.objects.get()
    later = timezone.now() + dt.timedelta(hours=2)

    assert replay.record_kept_statuses(later) == [sid]
    kept.save()  # the other node read it before this one deleted it
    assert replay.record_kept_statuses(later) == []

    assert Call.objects.filter(call_sid=sid).count() == 1
    assert CallEvent.objects.filter(call_sid=sid, kind=services.STATUS_ONLY).count() == 1
    assert_kept_from_its_final_status(sid)


def test_a_status_the_previous_release_kept_still_ends_the_call_its_inbound_webhook_records(carrier):
    """During a rolling restart the previous release keeps a status with its event alone (no list): the
    inbound webhook handled by this release still finds it and records the call as ended; the sweep, which
    can't find such a status, changes nothing."""
    sid = status_alone(carrier)
    KeptStatus.objects.all().delete()  # as the previous release left it: the event only

    assert "<Hangup" in carrier.voice(sid)
    assert replay.record_kept_statuses(timezone.now() + dt.timedelta(hours=2)) == []

    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.final_status, call.duration_seconds, call.verdict) == (
        "ended", "completed", 42, "not_billable")
    assert not CallAttempt.objects.filter(call=call).exists()


def test_statuses_that_fail_to_be_recorded_however_many_dont_keep_the_others_from_being_recorded(
        carrier, monkeypatch):
    """A pass looked at most ``limit`` statuses, oldest first, and a status that failed stayed first on the
    list: more of them than that filled every pass, and no other status was ever recorded again."""
    poison = [status_alone(carrier) for _ in range(4)]  # put on the list first, and a pass takes two
    sid = status_alone(carrier)
    record = services.record_from_final_status

    def failing_for_the_poison(inbound, *args, **kwargs):
        if inbound.call_sid in poison:
            raise ValueError("a status the code can't read")
        return record(inbound, *args, **kwargs)

    monkeypatch.setattr(services, "record_from_final_status", failing_for_the_poison)
    later = timezone.now() + dt.timedelta(hours=2)

    assert replay.record_kept_statuses(later, limit=2) == [sid]

    assert_kept_from_its_final_status(sid)
    assert sorted(KeptStatus.objects.values_list("call_sid", flat=True)) == sorted(poison)  # for the next pass
    monkeypatch.setattr(services, "record_from_final_status", record)  # mended: two a pass again
    assert len(replay.record_kept_statuses(later, limit=2)) == 2
    assert len(replay.record_kept_statuses(later, limit=2)) == 2
    assert not KeptStatus.objects.exists()


def test_a_status_that_names_no_number_called_is_kept_for_its_inbound_webhook_only(carrier):
    """No ``To``: nothing to record a call from (no number called); the status is still answered and kept for
    the inbound webhook, as before."""
    sid = "CA" + uuid.uuid4().hex
    params = {**carrier.inbound(sid), "CallStatus": "completed", "CallDuration": "42"}
    del params["To"]
    carrier.post("/carriers/twilio/status", params)

    assert CallEvent.objects.filter(call_sid=sid, kind="status").exists()
    assert not KeptStatus.objects.exists()
    assert replay.record_kept_statuses(timezone.now() + dt.timedelta(hours=2)) == []
    assert not Call.objects.filter(call_sid=sid).exists()


def a_past_hour(sid: str) -> None:
    """The status came two hours ago (the background pass and the command read the clock)."""
    then = timezone.now() - dt.timedelta(hours=2)
    KeptStatus.objects.filter(call_sid=sid).update(received_at=then)
    CallEvent.objects.filter(call_sid=sid).update(received_at=then)


def test_the_background_pass_records_it_when_set_to_sweep(carrier, settings):
    sid = status_alone(carrier)
    a_past_hour(sid)
    settings.CLOSE_ABANDONED_EVERY_S = 0  # off (tests, the CLI)
    replay.background_pass(0.0)
    assert not Call.objects.filter(call_sid=sid).exists()

    settings.CLOSE_ABANDONED_EVERY_S = 600
    replay.background_pass(time.monotonic() + 60)  # not yet
    assert not Call.objects.filter(call_sid=sid).exists()
    replay.background_pass(0.0)

    assert_kept_from_its_final_status(sid)
    connection.close()  # the pass closed this thread's connection; the test's next query opens one


def test_the_background_pass_records_it_when_closing_abandoned_calls_failed(carrier, settings, monkeypatch, caplog):
    """The two sweeps of the pass are independent: closing abandoned calls failing (whatever the reason) kept
    the kept statuses from being recorded, at every pass while it lasted."""
    sid = status_alone(carrier)
    a_past_hour(sid)

    def failing(*args, **kwargs):
        raise RuntimeError("closing abandoned calls failed")

    monkeypatch.setattr(services, "close_abandoned", failing)
    settings.CLOSE_ABANDONED_EVERY_S = 600
    replay.background_pass(0.0)

    assert_kept_from_its_final_status(sid)
    assert "closing abandoned calls failed" in caplog.text  # still logged
    connection.close()


def test_the_command_says_what_it_recorded(carrier):
    sid = status_alone(carrier)
    out = io.StringIO()
    call_command("calls", "close-abandoned", stdout=out)
    assert out.getvalue() == "No call still in progress or holding a slot 6 h after it started.\n"  # the status waits its hour
    a_past_hour(sid)

    out = io.StringIO()
    call_command("calls", "close-abandoned", stdout=out)

    assert out.getvalue().splitlines() == [
        "No call still in progress or holding a slot 6 h after it started.",
        "Recorded 1 call known only from a final status whose inbound webhook never came (1 h after it; "
        "status_only, not billable):",
        f"  {sid}"]
    assert_kept_from_its_final_status(sid)
