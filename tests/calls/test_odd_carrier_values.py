"""Signed carrier webhooks whose values are odd or contradictory end in a call record that is still true.

Given the e2e network (tests/e2e/network.yaml; E2E Plumbing rings Line A, then B, then C), when a carrier
says something odd — a Dial result after the caller hung up during the whisper, a bridged leg whose status
says busy, a duration that isn't a number, a state that isn't one, an IVR answer out of turn — then the
call is recorded as what happened, in whatever order the callbacks come, and never billed for more than
the call itself lasted.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import pytest
from django.test import Client
from twilio.request_validator import RequestValidator

from callbroker.calls import services
from callbroker.calls import steps as s
from callbroker.calls.events import DialOutcome, InboundCall, StatusUpdate
from callbroker.calls.models import Call, CallAttempt
from callbroker.carriers import twilio
from callbroker.network.models import TargetState

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

PLUMBING, IVR = "+15125550001", "+15125550003"
TOKEN = "odd-values-token"


@pytest.fixture(autouse=True)
def _token(settings):
    settings.TWILIO_AUTH_TOKEN, settings.TWILIO_AUTH_TOKENS_EXTRA, settings.PUBLIC_URL = TOKEN, [], ""


def post(path: str, **params: str):
    url = f"http://testserver{path}"
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    return Client().post(path, urlencode(params), content_type="application/x-www-form-urlencoded",
                         HTTP_X_TWILIO_SIGNATURE=signature)


def start(sid: str, to: str = PLUMBING, **extra: str) -> tuple:
    return services.start_call(InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw="+17375550777",
                                           to=to, **{"from_zip": "78701", "from_state": "TX", **extra}))


def dialled(steps) -> list[str]:
    return [step.number for step in steps if isinstance(step, s.DialTarget)]


def held_slots() -> int:
    return sum(TargetState.objects.values_list("active_calls", flat=True))


def leg_and_end(sid: str, leg: DialOutcome, end: StatusUpdate, *, end_first: bool) -> tuple:
    """Line A's Dial action and the call's final status, in the order given; the Dial action's answer."""
    if end_first:
        services.call_status(sid, end)
    steps = services.dial_finished(sid, 1, leg)
    if not end_first:
        services.call_status(sid, end)
    return steps


# ----------------------------------------------------------------------------- the caller gone


@pytest.mark.parametrize("end_first", [False, True], ids=["in order", "final status first"])
def test_a_caller_who_hangs_up_during_the_whisper_rings_no_one_else(end_first):
    """The buyer answered, the caller hung up while the buyer heard the whisper: the carrier's Dial action
    says DialCallStatus=completed, DialBridged=false, CallStatus=completed. Line B was dialled after the
    caller had gone (a slot taken, an attempt for a buyer never rung) and Line A recorded as declining."""
    sid = "CA" + "1" * 32
    start(sid)
    leg = twilio.dial_outcome({"DialCallStatus": "completed", "DialBridged": "false", "DialCallDuration": "1",
                               "CallStatus": "completed", "DialCallSid": "CA" + "d" * 32})
    assert leg.caller_gone and not leg.bridged
    steps = leg_and_end(sid, leg, StatusUpdate(status="completed", duration=12, sequence="3"), end_first=end_first)
    assert dialled(steps) == [] and isinstance(steps[-1], s.Hangup)
    call = Call.objects.get(call_sid=sid)
    [attempt] = CallAttempt.objects.filter(call=call)
    assert (attempt.result, attempt.dial_call_sid) == ("canceled", "CA" + "d" * 32)
    assert (call.ring_position, call.fallback_applied, call.verdict) == (1, "", "not_billable")
    assert held_slots() == 0


@pytest.mark.parametrize("end_first", [False, True], ids=["in order", "final status first"])
def test_a_leg_canceled_by_the_caller_keeps_its_dial_call_sid_in_either_order(end_first):
    sid = "CA" + "2" * 32
    start(sid)
    leg = DialOutcome(status="canceled", bridged=False, duration=0, dial_call_sid="CA" + "e" * 32, caller_gone=True)
    leg_and_end(sid, leg, StatusUpdate(status="completed", duration=9, sequence="3"), end_first=end_first)
    attempt = CallAttempt.objects.get(call__call_sid=sid)
    assert (attempt.result, attempt.dial_call_sid) == ("canceled", "CA" + "e" * 32)


@pytest.mark.parametrize(("digits", "typed"), [("78701", "78701"), ("00000", "")], ids=["a ZIP", "not a ZIP"])
def test_a_zip_posted_after_the_caller_hung_up_at_the_prompt_is_recorded_and_rings_no_one(digits, typed):
    """The carrier posts the Gather action after the caller hung up at the prompt (``CallStatus=completed``):
    Line A was dialled (its slot held until the final status gave it back) or the ZIP asked again, for a
    caller who was gone."""
    sid = "CA" + "0" * 31 + "4"
    start(sid, from_zip="", from_state="")  # E2E Plumbing asks a caller without the carrier's ZIP
    response = post("/carriers/twilio/ivr/zip?attempt=1", CallSid=sid, Digits=digits, CallStatus="completed")
    assert response.status_code == 200 and response.content.decode().endswith("<Response><Hangup /></Response>")
    call = Call.objects.get(call_sid=sid)
    assert (call.caller_zip, call.zip_attempts, call.stage, call.decision) == (typed, 1, "ivr", None)
    assert (CallAttempt.objects.filter(call=call).count(), held_slots()) == (0, 0)
    services.call_status(sid, StatusUpdate(status="completed", duration=9, sequence="3"))
    ended = Call.objects.get(call_sid=sid)
    assert (ended.stage, ended.caller_zip, ended.reason_codes) == ("ended", typed, ["not_connected"])
    assert ended.zip_source == ("ivr" if typed else "unknown")


def test_a_category_answer_posted_after_the_caller_hung_up_is_recorded_and_rings_no_one():
    sid = "CA" + "0" * 31 + "5"
    start(sid, to=IVR, from_zip="", from_state="")
    services.zip_entered(sid, 1, "80202")  # the question
    response = post("/carriers/twilio/ivr/category", CallSid=sid, Digits="2", CallStatus="completed")
    assert response.content.decode().endswith("<Response><Hangup /></Response>")  # the roofer was dialled
    call = Call.objects.get(call_sid=sid)
    assert (call.category_confirmed, call.stage, call.decision, held_slots()) == (False, "ivr", None, 0)
    assert services.category_answered(sid, "1") == (s.Hangup(),)  # answered already: another changes nothing
    services.call_status(sid, StatusUpdate(status="completed", duration=9, sequence="3"))
    ended = Call.objects.get(call_sid=sid)
    assert (ended.category_confirmed, ended.reason_codes) == (False, ["not_connected", "wrong_category"])
    assert not CallAttempt.objects.filter(call=ended).exists()


# ----------------------------------------------------------------------------- contradictory figures


@pytest.mark.parametrize("status", ["no-answer", "busy", "canceled", "failed"])
def test_a_leg_that_was_not_answered_is_never_bridged_whatever_dial_bridged_says(status):
    """DialBridged=true beside a status saying the leg never answered was billed (500 s of talk)."""
    leg = twilio.dial_outcome({"DialCallStatus": status, "DialBridged": "true", "DialCallDuration": "500"})
    assert not leg.bridged
    sid = "CA" + "3" * 32
    start(sid)
    services.dial_finished(sid, 1, leg)
    services.call_status(sid, StatusUpdate(status="completed", duration=30, sequence="9"))
    call = Call.objects.get(call_sid=sid)
    assert (call.verdict, call.reason_codes, call.connected_target_id, call.talk_seconds) == (
        "not_billable", ["not_connected"], None, 0)


@pytest.mark.parametrize("end_first", [False, True], ids=["in order", "final status first"])
def test_talk_time_longer_than_the_call_is_counted_as_the_call(end_first, caplog):
    """The buyer can't have talked longer than the caller's call lasted: 500 s of talk on a call of 30 s
    would pass the 60 s buffer."""
    sid = "CA" + "4" * 32
    start(sid)
    leg_and_end(sid, DialOutcome(status="completed", bridged=True, duration=500),
                StatusUpdate(status="completed", duration=30, sequence="9"), end_first=end_first)
    call = Call.objects.get(call_sid=sid)
    assert (call.talk_seconds, call.verdict, call.reason_codes) == (30, "not_billable", ["below_buffer"])
    assert "talk time 500 s is longer than the call (30 s)" in caplog.text


# ----------------------------------------------------------------------------- values of the wrong shape


@pytest.mark.parametrize("raw", ["-5", "abc", "1.0", "99999999", "1_0", "+5", "\u0663\u0660"])
def test_a_final_status_with_a_malformed_duration_still_ends_the_call(raw):
    """The whole status was refused as malformed: the call stayed ringing, holding Line A's slot for good."""
    sid = "CA" + "5" * 32
    start(sid)
    assert held_slots() == 1
    response = post("/carriers/twilio/status", CallSid=sid, CallStatus="completed", CallDuration=raw,
                    SequenceNumber="9")
    assert response.status_code == 200
    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.duration_seconds, call.verdict) == ("ended", None, "not_billable")
    assert held_slots() == 0


@pytest.mark.parametrize("raw", ["1_0_0", "\u0663\u0660\u0660", "+100", " 100", "86401"])
def test_a_dial_duration_is_ascii_digits_within_a_day(raw):
    with pytest.raises(twilio.MalformedWebhook, match="DialCallDuration"):
        twilio.dial_outcome({"DialCallStatus": "completed", "DialBridged": "true", "DialCallDuration": raw})
    assert twilio.dial_outcome({"DialCallStatus": "completed", "DialCallDuration": "86400"}).duration == 86400


@pytest.mark.parametrize("attempt", ["+1", "\uff11", "1_0", " 1"])
def test_a_number_in_a_callback_url_is_ascii_digits(attempt):
    sid = "CA" + "6" * 32
    start(sid, to=IVR, from_zip="")
    response = post(f"/carriers/twilio/ivr/zip?{urlencode({'attempt': attempt})}", CallSid=sid, Digits="80202")
    assert response.status_code == 200
    assert Call.objects.get(call_sid=sid).caller_zip == ""  # refused: nothing typed was taken


@pytest.mark.parametrize(("given", "stored", "disclosure"), [
    ("TX", "TX", False), (" tx", "TX", False), ("ON", "ON", False),
    ("XX", "", True), ("Pennsylvania", "", True), ("P", "", True), ("\u00df\u00df", "", True), ("", "", True),
])
def test_a_state_that_is_not_one_is_unknown_and_the_caller_hears_the_disclosure(given, stored, disclosure):
    """E2E Plumbing records; a caller of unknown state hears the disclosure "to be safe". ``XX`` counted as
    a known state (no disclosure), "Pennsylvania" was stored as PE, "ßß" as SSSS in a 2-character column."""
    sid = "CA" + "7" * 32
    steps = start(sid, from_state=given, from_zip="")  # no ZIP: the state stays the carrier's
    assert Call.objects.get(call_sid=sid).caller_state == stored
    assert any(isinstance(step, s.Say) and "recorded" in step.text.lower() for step in steps) is disclosure


# ----------------------------------------------------------------------------- the number called


def voice(sid: str, to: str):
    return post("/carriers/twilio/voice", CallSid=sid, AccountSid="AC" + "0" * 32, From="+17375550777", To=to,
                FromZip="78701", FromState="TX", CallStatus="ringing", Direction="inbound")


@pytest.mark.parametrize("to", ["+\uff11\uff15\uff11\uff12\uff15\uff15\uff15\uff10\uff10\uff10\uff11",
                                "+1 512 555 0001", "(512) 555-0001", " +15125550001 "])
def test_the_number_called_is_stored_in_e164_and_what_is_no_number_as_received(to):
    """Full-width digits or spaces were stored as received: the call was routed on its tracking number but
    listed, searched and shown under a number no tracking number has. What is no phone number is kept as
    the carrier sent it, and the call still gets an answer: the unknown tracking number's."""
    sid = "CA" + "a" * 32
    response = voice(sid, to)
    assert response.status_code == 200 and "<Dial" in response.content.decode()
    call = Call.objects.get(call_sid=sid)
    assert (call.to_number, call.tracking_number.number, call.stage) == (PLUMBING, PLUMBING, "dialing")

    for n, odd in enumerate(["sip:tracking@example.com", "+1555", "\uff0b\uff11", "x" * 32]):
        sid = f"CA{n:032d}"
        response = voice(sid, odd)
        assert response.status_code == 200 and "<Response>" in response.content.decode()
        call = Call.objects.get(call_sid=sid)
        assert (call.to_number, call.fallback_applied, call.campaign_id) == (odd, "unknown_number", None)


# ----------------------------------------------------------------------------- IVR answers out of turn


def test_a_category_answer_while_the_zip_is_asked_changes_nothing():
    sid = "CA" + "8" * 32
    steps = start(sid, to=IVR, from_zip="")
    assert any(isinstance(step, s.AskZip) for step in steps)
    assert services.category_answered(sid, "1") == (s.Hangup(),)
    call = Call.objects.get(call_sid=sid)
    assert (call.stage, call.category_confirmed, call.decision) == ("ivr", None, None)
    steps = services.zip_entered(sid, 1, "80202")  # the caller's own answer still counts
    assert any(isinstance(step, s.AskCategory) for step in steps)


def test_a_zip_for_a_prompt_not_asked_or_after_one_was_typed_changes_nothing():
    sid = "CA" + "9" * 32
    start(sid, to=IVR, from_zip="")
    assert services.zip_entered(sid, 2, "80203") == (s.Hangup(),)  # prompt 2 was never asked
    services.zip_entered(sid, 1, "80202")
    assert services.zip_entered(sid, 2, "90210") == (s.Hangup(),)  # a ZIP typed already
    assert services.zip_entered(sid, 1, "90210") == (s.Hangup(),)
    call = Call.objects.get(call_sid=sid)
    assert (call.caller_zip, call.caller_state) == ("80202", "CO")


def test_another_answer_to_the_last_zip_prompt_changes_nothing():
    """Two ZIPs we don't know: the category question is asked. A second answer to prompt 2 (other digits) was
    taken: its ZIP recorded and the question asked again (the call's IVR step was read from ``zip_attempts``
    alone, which says 2 both while prompt 2 waits and once it was answered)."""
    sid = "CA" + "f" * 32
    start(sid, to=IVR, from_zip="", from_state="")
    assert services.zip_entered(sid, 1, "00000") == (s.AskZip(services.ZIP_REPROMPT, 2),)
    assert any(isinstance(step, s.AskCategory) for step in services.zip_entered(sid, 2, "00001"))
    assert services.zip_entered(sid, 2, "80202") == (s.Hangup(),)
    call = Call.objects.get(call_sid=sid)
    assert (call.caller_zip, call.zip_source, call.stage, call.decision) == ("", "unknown", "ivr", None)
    services.category_answered(sid, "1")  # the question asked still counts
    assert Call.objects.get(call_sid=sid).category_confirmed is True


def test_a_category_answer_while_the_second_zip_prompt_is_asked_changes_nothing():
    """The category question comes after the ZIP; an answer to it while prompt 2 waited routed the call."""
    sid = "CA" + "0" * 31 + "1"
    start(sid, to=IVR, from_zip="", from_state="")
    services.zip_entered(sid, 1, "00000")  # prompt 2 asked
    assert services.category_answered(sid, "1") == (s.Hangup(),)
    call = Call.objects.get(call_sid=sid)
    assert (call.category_confirmed, call.stage, call.decision, held_slots()) == (None, "ivr", None, 0)
    assert any(isinstance(step, s.AskCategory) for step in services.zip_entered(sid, 2, "80202"))


def test_a_zip_when_no_zip_prompt_was_asked_changes_nothing():
    """A campaign that asks the ZIP only when the carrier gives none, and then the category: a caller with
    the carrier's ZIP hears the question only. A ZIP callback then replaced the carrier's ZIP."""
    from callbroker.network.models import Campaign
    from callbroker.network.snapshot import reset_snapshot

    Campaign.objects.filter(key="e2e-plumbing").update(confirm_category="If you need a plumber, press 1.")
    reset_snapshot()
    sid = "CA" + "0" * 31 + "2"
    assert any(isinstance(step, s.AskCategory) for step in start(sid))  # the carrier's ZIP: 78701
    assert services.zip_entered(sid, 1, "78702") == (s.Hangup(),)
    call = Call.objects.get(call_sid=sid)
    assert (call.caller_zip, call.zip_source, call.stage) == ("78701", "carrier", "ivr")


def test_a_call_written_by_the_previous_release_takes_its_answers_as_then():
    """During a rolling restart the previous release writes calls without their IVR question (not recorded):
    read from the ZIP and ``zip_attempts`` as before, the caller's answers still count."""
    sid = "CA" + "0" * 31 + "3"
    start(sid, to=IVR, from_zip="", from_state="")
    Call.objects.filter(call_sid=sid).update(ivr_prompt="")
    assert services.category_answered(sid, "1") == (s.Hangup(),)  # the first ZIP prompt waits
    assert any(isinstance(step, s.AskCategory) for step in services.zip_entered(sid, 1, "80202"))
    Call.objects.filter(call_sid=sid).update(ivr_prompt="")
    assert dialled(services.category_answered(sid, "1")) == ["+13035550101"]


@pytest.mark.parametrize("end_first", [False, True], ids=["in order", "final status first"])
def test_a_category_no_counts_in_either_order(end_first):
    """The caller pressed 2 and hung up; when the final status was handled first the answer was dropped
    and the verdict lost ``wrong_category``."""
    sid = "CA" + "a" * 32
    start(sid, to=IVR, from_zip="")
    services.zip_entered(sid, 1, "80202")
    end = StatusUpdate(status="completed", duration=8, sequence="9")
    if end_first:
        services.call_status(sid, end)
        services.category_answered(sid, "2")
    else:
        services.category_answered(sid, "2")
        services.call_status(sid, end)
    call = Call.objects.get(call_sid=sid)
    assert call.category_confirmed is False
    assert call.reason_codes == ["not_connected", "wrong_category"]


@pytest.mark.parametrize("to, typed, state", [(IVR, "80202", "CO"), (PLUMBING, "78701", "TX")],
                         ids=["ZIP and category asked", "ZIP asked when missing"])
@pytest.mark.parametrize("end_first", [False, True], ids=["in order", "final status first"])
def test_a_zip_typed_before_the_caller_hung_up_is_kept_in_either_order(to, typed, state, end_first):
    """The caller typed the ZIP and hung up; when the final status was handled first the ZIP was dropped as
    a stray callback (the call stayed of unknown location)."""
    sid = "CA" + ("c" if end_first else "d") * 32
    start(sid, to=to, from_zip="", from_state="")
    end = StatusUpdate(status="completed", duration=15, sequence="3")
    if end_first:
        services.call_status(sid, end)
        assert services.zip_entered(sid, 1, typed) == (s.Hangup(),)  # nothing is dialled for a caller gone
    else:
        services.zip_entered(sid, 1, typed)
        services.call_status(sid, end)
    call = Call.objects.get(call_sid=sid)
    assert (call.caller_zip, call.zip_source, call.caller_state) == (typed, "ivr", state)
    assert (call.stage, call.verdict, call.reason_codes) == ("ended", "not_billable", ["not_connected"])
    assert held_slots() == 0


def test_a_zip_after_the_final_status_for_a_prompt_not_asked_or_not_a_zip_changes_nothing():
    sid = "CA" + "e" * 32
    start(sid, to=IVR, from_zip="", from_state="")
    services.call_status(sid, StatusUpdate(status="completed", duration=15, sequence="3"))
    assert services.zip_entered(sid, 2, "80202") == (s.Hangup(),)  # prompt 2 was never asked
    assert services.zip_entered(sid, 1, "00000") == (s.Hangup(),)  # not a ZIP
    call = Call.objects.get(call_sid=sid)
    assert (call.caller_zip, call.zip_source) == ("", "unknown")


# ----------------------------------------------------------------------------- logs


def test_a_signed_value_cannot_start_a_log_line_of_its_own():
    from callbroker.ops.logging import PlainFormatter

    record = logging.LogRecord("callbroker.carriers.views", logging.WARNING, __file__, 1,
                               "webhook %s malformed (CallSid=%s)", ("/x", "CA2\n2026-12-07 ERROR forged"), None)
    record.call_sid_tag = ""
    assert "\n" not in PlainFormatter().format(record)
    assert PlainFormatter().format(record).endswith("(CallSid=CA2?2026-12-07 ERROR forged)")


@pytest.mark.parametrize(("message", "heard"), [
    ("", "No one can take your call right now. Please leave a message after the tone."),
    ("No electrician is free.", "No electrician is free. Please leave a message after the tone."),
    ("Leave your name and address after the tone.", "Leave your name and address after the tone."),
    ("Speak after the BEEP.", "Speak after the BEEP."),
])
def test_the_voicemail_prompt_says_what_to_do_at_the_tone_once(message, heard):
    """The demo's roofing message ends "… after the tone." and was followed by "Please leave a message
    after the tone.": the caller heard it twice."""
    from callbroker.network.models import Campaign
    from callbroker.network.snapshot import reset_snapshot

    Campaign.objects.filter(key="e2e-missed").update(fallback_message=message)
    reset_snapshot()
    sid = "CA" + "b" * 32
    start(sid, to="+15125550004")
    for seq in (1, 2):
        steps = services.dial_finished(sid, seq, DialOutcome(status="no-answer", bridged=False, duration=0))
    [take] = [step for step in steps if isinstance(step, s.TakeMessage)]
    assert take.prompt == heard
