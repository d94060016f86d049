"""A voicemail left in the fallback keeps its RecordingSid, as a Dial's recording does.

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
from callbroker.calls.events import InboundCall
from callbroker.calls.models import Call

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

TOKEN = "voicemail-test-token"


def test_the_voicemail_webhook_stores_the_recording_sid(settings):
    settings.TWILIO_AUTH_TOKEN, settings.TWILIO_AUTH_TOKENS_EXTRA, settings.PUBLIC_URL = TOKEN, [], ""
    sid = "CA" + "9" * 32
    services.start_call(InboundCall(call_sid=sid, account_sid="AC" + "0" * 32, from_raw="+17375550777",
                                    to="+15125550004", from_zip="78701"))
    params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "RecordingSid": "RE" + "4" * 32,
              "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE4", "RecordingDuration": "25"}
    signature = RequestValidator(TOKEN).compute_signature("http://testserver/carriers/twilio/voicemail", params)
    response = Client().post("/carriers/twilio/voicemail", urlencode(params),
                             content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 200 and b"<Hangup" in response.content
    call = Call.objects.get(call_sid=sid)
    assert (call.recording_sid, call.recording_url, call.recording_seconds) == (
        params["RecordingSid"], params["RecordingUrl"], 25)
