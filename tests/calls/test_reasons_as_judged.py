"""A reason a call is not billable is explained with the figures it was judged by, kept with the verdict
(``Call.reason_notes``), not worked out again from the campaign's and line's rules as they are now.

Until 2026-12-07 ``calls show`` and the admin's call page worked the sentence out when shown, from the rules of
the moment: a call judged 45 s short of a 60 s buffer read "50 s needed" once the buffer was 50 s. Driven by
signed webhooks (the Django test client), on the e2e network (tests/e2e/network.yaml): E2E Plumbing, a 60 s
buffer and a one-day duplicate window, rings Line A of Austin Pipes first.
"""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from callbroker.calls import staff as judged_by_staff
from callbroker.calls.models import Call
from callbroker.calls.presenters import REASON_LABELS
from callbroker.network.models import Campaign, Target
from tests.calls.signed import TOKEN, post, sid

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

PLUMBING = "+15125550001"
CALLER = "+17205550142"


@pytest.fixture(autouse=True)
def _token(settings):
    settings.TWILIO_AUTH_TOKEN, settings.TWILIO_AUTH_TOKENS_EXTRA, settings.PUBLIC_URL = TOKEN, [], ""


def talked(n: int, seconds: int, caller: str = CALLER) -> Call:
    """Call ``n``: Line A answers, its buyer talks ``seconds``, the caller hangs up; the call as judged."""
    post("/carriers/twilio/voice", CallSid=sid(n), AccountSid="AC" + "0" * 32, From=caller, To=PLUMBING,
         FromZip="78701", FromState="TX", CallStatus="ringing")
    post("/carriers/twilio/dial?seq=1", CallSid=sid(n), DialCallStatus="completed", DialCallSid="CA" + "d" * 32,
         CallStatus="in-progress", DialCallDuration=str(seconds), DialBridged="true")
    post("/carriers/twilio/status", CallSid=sid(n), CallStatus="completed", CallDuration=str(seconds + 10))
    return Call.objects.get(call_sid=sid(n))


def shown(call_sid: str, *options: str) -> str:
    out = StringIO()
    call_command("calls", "show", call_sid, *options, stdout=out)
    return out.getvalue()


def page(client, call: Call) -> str:
    return client.get(reverse("admin:calls_call_change", args=[call.pk])).content.decode()


def test_a_reason_keeps_the_buffer_it_was_judged_by_after_the_buffer_changes(staff):
    # given a call whose buyer talked 45 s, judged against the campaign's 60 s buffer
    call = talked(1, 45)
    assert (call.verdict, call.reason_codes) == ("not_billable", ["below_buffer"])
    # when the campaign's buffer is lowered to 50 s (45 s is still short of it)
    Campaign.objects.filter(key="e2e-plumbing").update(buffer_seconds=50)
    # then calls show, its --json and the admin's call page and list give the buffer that applied: 60 s
    judged = "talked 45 s with the buyer; 60 s needed"
    assert f"    - below_buffer: {judged}\n" in shown(call.call_sid)
    assert json.loads(shown(call.call_sid, "--json"))["reason_notes"] == {"below_buffer": judged}
    html = page(staff, call)
    assert f'<span title="below_buffer">{judged}</span>' in html
    assert "50 s needed" not in html
    listed = staff.get(reverse("admin:calls_call_changelist")).content.decode()
    assert f'<span title="{judged}">' in listed


def test_a_duplicate_says_when_the_last_billable_call_was_and_its_window(staff):
    # given a caller billed once, who calls again within the campaign's one-day duplicate window
    assert talked(1, 90).verdict == "billable"
    again = talked(2, 90)
    assert again.reason_codes == ["duplicate"]
    # then the reason says how long before the last billable call was, and the window it fell in
    words = json.loads(shown(again.call_sid, "--json"))["reason_notes"]["duplicate"]
    assert re.fullmatch(r"last billable call from this caller was \d+ s earlier, inside the 1 day duplicate "
                        r"window", words), words
    assert f"    - duplicate: {words}\n" in shown(again.call_sid)
    assert f'<span title="duplicate">{words}</span>' in page(staff, again)


def test_staff_judgement_keeps_staff_own_reason(staff):
    # given a call whose buyer talked on a line deleted before the call ended: pending, for staff
    post("/carriers/twilio/voice", CallSid=sid(1), AccountSid="AC" + "0" * 32, From=CALLER, To=PLUMBING,
         FromZip="78701", FromState="TX", CallStatus="ringing")
    post("/carriers/twilio/dial?seq=1", CallSid=sid(1), DialCallStatus="completed", DialCallSid="CA" + "d" * 32,
         CallStatus="in-progress", DialCallDuration="90", DialBridged="true")
    Target.objects.filter(key="pipes-a").delete()
    post("/carriers/twilio/status", CallSid=sid(1), CallStatus="completed", CallDuration="100")
    assert Call.objects.get(call_sid=sid(1)).verdict == "pending"
    # when staff judge it not billable, with their note
    judged_by_staff.judge_not_billable([sid(1)], by="ops", note="test call from the installer")
    # then the reason gives who judged it and why
    words = "judged not billable by staff (ops): test call from the installer"
    call = Call.objects.get(call_sid=sid(1))
    assert call.reason_notes == {"judged_by_staff": words}
    assert f"    - judged_by_staff: {words}\n" in shown(call.call_sid)


def test_a_call_judged_before_the_upgrade_is_explained_by_its_labels(staff, make_call):
    # given a call judged before reasons kept their sentences (none stored)
    call = make_call(verdict="not_billable", reason_codes=["below_buffer", "duplicate"])
    assert call.reason_notes == {}
    # then each reason is its label, nothing worked out again from the rules as they are now
    assert f"    - below_buffer: {REASON_LABELS['below_buffer']}\n" in shown(call.call_sid)
    assert json.loads(shown(call.call_sid, "--json"))["reason_notes"] == {"below_buffer": None, "duplicate": None}
    assert f'<span title="below_buffer">{REASON_LABELS["below_buffer"]}</span>' in page(staff, call)
