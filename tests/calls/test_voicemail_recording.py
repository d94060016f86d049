"""A voicemail left in the fallback keeps its RecordingSid, as a Dial's recording does; a voicemail callback
for a call that left no message changes nothing.

Given a call on the e2e network, when the carrier posts the fallback's ``<Record>`` action (the voicemail
webhook) with ``RecordingSid``, ``RecordingUrl`` and ``RecordingDuration``, then the call holds all three;
the sid was dropped before, so `calls show` and the admin had a recording with no SID to fetch it by.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.test import Client
from twilio.request_validator import RequestValidator

from callbroker.calls import services
from callbroker.calls.events import DialOutcome, InboundCall
from callbroker.calls.models import Call

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

TOKEN = "voicemail-test-token"


def _voicemail(sid: str, **extra: str):
    params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, **extra}
    signature = RequestValidator(TOKEN).compute_signature("http://testserver/carriers/twilio/voicemail", params)
    return Client().post("/carriers/twilio/voicemail", urlencode(params),
                         content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature)


def _call(sid: str, *, answered: bool) -> None:
    """A call to e2e-missed (voicemail fallback): both lines miss (to the voicemail), or the first answers."""
    services.start_call(InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw="+17375550777",
                                    to="+15125550004", from_zip="78701"))
    if answered:
        services.dial_finished(sid, 1, DialOutcome(status="completed", bridged=True, duration=121,
                                                   recording_sid="RE" + "a" * 32, recording_url=BUYER_RECORDING))
        return
    for seq in (1, 2):
        services.dial_finished(sid, seq, DialOutcome(status="no-answer", bridged=False, duration=0))
    assert Call.objects.get(call_sid=sid).fallback_applied == "voicemail"


BUYER_RECORDING = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/REa"
MESSAGE = {"RecordingSid": "RE" + "4" * 32, "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE4",
           "RecordingDuration": "25"}


@pytest.fixture(autouse=True)
def _token(settings):
    settings.TWILIO_AUTH_TOKEN, settings.TWILIO_AUTH_TOKENS_EXTRA, settings.PUBLIC_URL = TOKEN, [], ""


def test_the_voicemail_webhook_stores_the_recording_sid():
    sid = "CA" + "9" * 32
    _call(sid, answered=False)
    response = _voicemail(sid, **MESSAGE)
    assert response.status_code == 200 and b"<Hangup" in response.content
    call = Call.objects.get(call_sid=sid)
    assert (call.recording_sid, call.recording_url, call.recording_seconds) == (
        MESSAGE["RecordingSid"], MESSAGE["RecordingUrl"], 25)


@pytest.mark.parametrize("message", [{}, MESSAGE], ids=["no RecordingUrl", "with a recording"])
def test_a_voicemail_callback_for_a_bridged_call_changes_nothing(message):
    """A signed voicemail callback for a call that talked to its buyer wiped (or replaced) the buyer's
    recording: the call went to no voicemail, so there is no message to store."""
    sid = "CA" + "8" * 32
    _call(sid, answered=True)
    assert b"<Hangup" in _voicemail(sid, **message).content
    call = Call.objects.get(call_sid=sid)
    assert (call.recording_sid, call.recording_url) == ("RE" + "a" * 32, BUYER_RECORDING)


def test_a_voicemail_callback_without_a_recording_keeps_the_message():
    sid = "CA" + "7" * 32
    _call(sid, answered=False)
    _voicemail(sid, **MESSAGE)
    _voicemail(sid, RecordingDuration="3")  # another post, naming no recording
    call = Call.objects.get(call_sid=sid)
    assert (call.recording_sid, call.recording_url, call.recording_seconds) == (
        MESSAGE["RecordingSid"], MESSAGE["RecordingUrl"], 25)


@pytest.mark.parametrize("duration", ["-3", "abc", "10000001", "1_0", "\u0663"])
def test_a_voicemail_with_a_malformed_length_is_kept_with_its_length_unknown(duration):
    """The message was thrown away (the whole webhook refused as malformed) and the caller who had just
    left it was dialled to the fallback forward instead of hearing "thank you"."""
    sid = "CA" + "6" * 32
    _call(sid, answered=False)
    response = _voicemail(sid, **{**MESSAGE, "RecordingDuration": duration})
    assert b"Thank you" in response.content and b"<Dial" not in response.content
    call = Call.objects.get(call_sid=sid)
    assert (call.recording_url, call.recording_seconds) == (MESSAGE["RecordingUrl"], None)
