"""Recording status callbacks: only a completed recording must name its file.

Twilio posts ``RecordingStatus`` ``in-progress``, ``completed`` or ``absent`` (nothing recorded, e.g. the
caller hung up before the bridge); an ``absent`` one has no ``RecordingUrl``. It is a normal callback,
accepted and stored, not a malformed webhook counted as a routing failure; a ``completed`` one without a
URL still is.
"""

from __future__ import annotations

import pytest

from callbroker.carriers import twilio
from callbroker.carriers.twilio import MalformedWebhook

SID = {"CallSid": "CA" + "5" * 32, "RecordingSid": "RE" + "5" * 32}


@pytest.mark.parametrize("status", ["absent", "in-progress", "failed"])
def test_a_recording_that_is_not_there_needs_no_url(status):
    update = twilio.recording_update({**SID, "RecordingStatus": status})
    assert (update.status, update.url) == (status, "")


def test_a_completed_recording_must_name_its_file():
    with pytest.raises(MalformedWebhook, match="RecordingUrl"):
        twilio.recording_update({**SID, "RecordingStatus": "completed"})
    update = twilio.recording_update({**SID, "RecordingUrl": "https://api.twilio.com/rec/RE5"})
    assert (update.status, update.url) == ("completed", "https://api.twilio.com/rec/RE5")
