"""The whisper answers the buyer's leg: even when it fails inside, it never answers with a ``<Dial>``.

Given the carrier fetching the whisper when a buyer picks up (the buyer's leg: its own CallSid, ``To`` the
buyer's number), when the whisper handler fails (the network can't be read), then the buyer hears a plain
line and is bridged to the caller: the forward that other webhooks fall back to is not allowed in a
whisper (CARRIER-PROTOCOL.md) and would never connect the caller.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from django.db import OperationalError
from django.test import Client
from twilio.request_validator import RequestValidator

from callbroker.carriers import views

TOKEN = "whisper-test-token"
PUBLIC = "https://cb.example.com"
BUYER_LEG = {"CallSid": "CA" + "5" * 32, "ParentCallSid": "CA" + "a1" * 16, "AccountSid": "AC" + "0" * 32,
             "To": "+15125550101", "From": "+15125559876", "CallStatus": "in-progress", "Direction": "outbound-api"}


@pytest.fixture
def whisper(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.TWILIO_AUTH_TOKENS_EXTRA = []
    settings.PUBLIC_URL = PUBLIC
    settings.FALLBACK_NUMBER = "+15125550999"
    return lambda: _fetch("/carriers/twilio/whisper?c=1")


@pytest.fixture
def whisper_for(whisper):
    """The whisper of campaign ``pk`` (the carrier fetching ``?c=pk``)."""
    return lambda pk: _fetch(f"/carriers/twilio/whisper?c={pk}")


def _fetch(path: str) -> str:
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, BUYER_LEG)
    response = Client().post(path, data=urlencode(BUYER_LEG), content_type="application/x-www-form-urlencoded",
                             headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_a_failed_whisper_bridges_the_buyer_with_a_plain_line(whisper, monkeypatch):
    def unreadable():
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(views.services, "cached_snapshot", lambda: None)
    monkeypatch.setattr(views.services, "current_snapshot", unreadable)
    answer = whisper()
    assert "<Dial" not in answer and "+15125550999" not in answer
    assert f">{views.WHISPER_DEFAULT}</Say></Response>" in answer


def test_a_control_character_in_a_campaign_text_is_left_out_of_the_twiml():
    """A vertical tab pasted into a text (the admin takes it) made the whole answer unreadable XML (12100)."""
    import xml.etree.ElementTree as ET

    from callbroker.calls import steps as s
    from callbroker.carriers import twilio

    body = twilio.render((s.Say("We are closed now.\vPlease call back\x00 tomorrow."), s.Hangup()), "https://cb.test")
    root = ET.fromstring(body)  # well-formed
    assert root.find("Say").text == "We are closed now.Please call back tomorrow."


@pytest.mark.django_db
def test_a_campaign_added_since_this_worker_routed_is_named_in_the_whisper(whisper_for):
    """Until 2026-12-08 the whisper read only the worker's own snapshot: a campaign added after it last routed
    a call (its first calls routed by another worker) was unknown there, and the buyer heard "Incoming call."."""
    from callbroker.network.loader import load_network
    from callbroker.network.models import Campaign
    from callbroker.network.snapshot import current_snapshot, reset_snapshot
    from tests.network.conftest import BASE_NETWORK

    reset_snapshot()
    load_network(BASE_NETWORK)
    current_snapshot()  # this worker's network: before the campaign below
    added = {**BASE_NETWORK, "campaigns": [*BASE_NETWORK["campaigns"], {
        "key": "austin-electric", "name": "Austin Electric", "category": "electrician", "payout": "12.00",
        "whisper": "Electrical call from callbroker."}]}
    load_network(added)
    try:
        answer = whisper_for(Campaign.objects.get(key="austin-electric").pk)
    finally:
        reset_snapshot()
    assert ">Electrical call from callbroker.</Say></Response>" in answer


@pytest.mark.django_db(transaction=True)
def test_a_whisper_edited_while_running_is_said_as_edited_by_a_worker_that_had_not_routed_since(
        settings, tmp_path, monkeypatch):
    """Until 2026-12-08 a worker said the whisper of the network it last routed by: a campaign's whisper edited
    while running was said as it was before by every worker that had not routed a call since (its first calls'
    legs answered by another worker than the one that routed them), until it routed one. The Dial now carries
    the version of the network the call was routed by (``v``), and a worker holding an older one reads the
    network once."""
    from callbroker.calls import replay
    from callbroker.network.loader import load_network
    from callbroker.network.snapshot import current_snapshot, reset_snapshot
    from tests.hostile.strategies import TOKEN as SIGNING_TOKEN
    from tests.hostile.strategies import sign, signing_carrier_settings
    from tests.network.conftest import BASE_NETWORK

    signing_carrier_settings(settings, tmp_path / "data")
    settings.COUNTERS_BACKEND = "sql"
    monkeypatch.setattr(replay, "ensure_running", lambda: None)

    def post(path: str, params: dict[str, str]) -> str:
        signature = sign(SIGNING_TOKEN, f"http://testserver{path}", params)
        answer = Client().post(path, urlencode(params), content_type="application/x-www-form-urlencoded",
                               headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 200
        return answer.content.decode()

    def network(whisper: str) -> dict:
        return {**BASE_NETWORK, "campaigns": [{**BASE_NETWORK["campaigns"][0], "whisper": whisper}]}

    reset_snapshot()
    try:
        load_network(network("Plumbing lead, as first written."))
        this_worker = current_snapshot()  # its network: the whisper before the edit
        load_network(network("Plumbing lead, as edited."))
        # The call is routed (by another worker: its network is the edited one) ...
        dial = post("/carriers/twilio/voice", {
            "CallSid": "CA" + "e" * 32, "AccountSid": "AC" + "0" * 32, "From": "+15125559876",
            "To": "+15125550101", "CallStatus": "ringing", "Direction": "inbound", "FromZip": "78701"})
        whisper_url = re.search(r'<Number [^>]*url="http://testserver([^"]+)"', dial).group(1).replace("&amp;", "&")
        # ... and its buyer's leg fetches the whisper from this worker, still on its network of before.
        monkeypatch.setattr(views.services, "cached_snapshot", lambda: this_worker)
        answer = post(whisper_url, {**BUYER_LEG, "AccountSid": "AC" + "0" * 32})
    finally:
        reset_snapshot()
    assert ">Plumbing lead, as edited.</Say></Response>" in answer, (whisper_url, answer)


@pytest.mark.django_db
def test_a_whisper_of_a_campaign_gone_reads_nothing_when_this_worker_is_as_new_as_the_routing(
        whisper_for, django_assert_num_queries):
    """A campaign deleted while its calls ring: with ``v`` no newer than this worker's network, the whisper is
    answered from memory ("Incoming call."), not with a read of the network per whisper."""
    from callbroker.network.loader import load_network
    from callbroker.network.snapshot import current_snapshot, reset_snapshot
    from tests.network.conftest import BASE_NETWORK

    reset_snapshot()
    load_network(BASE_NETWORK)
    version = current_snapshot().version
    try:
        with django_assert_num_queries(0):
            answer = _fetch(f"/carriers/twilio/whisper?c=999999&v={version}")
    finally:
        reset_snapshot()
    assert f">{views.WHISPER_DEFAULT}</Say></Response>" in answer
