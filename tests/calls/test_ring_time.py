"""How long a leg rang, as ``calls show`` says it: measured by the server's clock from the attempt's start to its
Dial action, less the talk time the carrier reports (the Dial action says nothing of the ring). The carrier
emulator at ``--time-scale`` below 1 (0: no waiting at all) posts 90 s of talk a moment after the dial: the
difference came out below 0, kept as 0, and every bridged attempt said "rang 0 s". The ring time is unknown
then, and says so.

Driven by signed webhooks (the Django test client), on the e2e network (tests/e2e/network.yaml): E2E Plumbing
rings Line A first."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command

from callbroker.calls.models import CallAttempt
from tests.calls.signed import TOKEN, post, sid

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("e2e_network")]

PLUMBING = "+15125550001"


@pytest.fixture(autouse=True)
def _token(settings):
    settings.TWILIO_AUTH_TOKEN, settings.TWILIO_AUTH_TOKENS_EXTRA, settings.PUBLIC_URL = TOKEN, [], ""


def bridged_after(seconds: int) -> CallAttempt:
    """Call 1 to Line A, bridged for 90 s, its Dial action ``seconds`` after the leg started (by the
    server's clock: the attempt's start moved back)."""
    assert "+15125550101" in post("/carriers/twilio/voice", CallSid=sid(1), AccountSid="AC" + "0" * 32,
                                  From="+17205550142", To=PLUMBING, FromZip="78701", FromState="TX",
                                  CallStatus="ringing")
    CallAttempt.objects.update(started_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds))
    post("/carriers/twilio/dial?seq=1", CallSid=sid(1), DialCallStatus="completed", DialCallSid="CA" + "d" * 32,
         CallStatus="in-progress", DialCallDuration="90", DialBridged="true")
    return CallAttempt.objects.get()


def shown() -> str:
    out = io.StringIO()
    call_command("calls", "show", sid(1), stdout=out)
    return out.getvalue()


def test_a_leg_whose_talk_time_is_longer_than_the_server_saw_it_last_has_no_ring_time():
    attempt = bridged_after(0)  # the emulator at --time-scale 0
    assert (attempt.result, attempt.talk_seconds, attempt.ring_seconds) == ("bridged", 90, None)
    assert "ring time unknown, talked 90 s" in shown() and "rang 0 s" not in shown()

