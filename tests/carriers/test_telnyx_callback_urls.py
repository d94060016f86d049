"""The parameters of callbroker's own callback URLs (``dial?seq=N&c=…``, ``whisper?c=…&v=…``,
``ivr/zip?attempt=N``, ``ivr/category?zip=…``) signed by the TwiML (``sig=``, an HMAC of the path and the
parameters) and checked on every Telnyx webhook: Telnyx signs ``telnyx-timestamp|body``, never the URL, so
until 2026-12-08 one captured Telnyx request could be replayed within 300 s with another seq, ZIP, attempt or
campaign in its URL, and was taken. Twilio and SignalWire sign the URL itself: nothing changes for them.

Given the e2e network, Telnyx requests with real Ed25519 signatures (``test_telnyx_signature``'s), following
the URLs of the TwiML answered, as the carrier does, or altered as a replay would."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.db import OperationalError
from django.test import Client

from callbroker.calls import replay, services, spool
from callbroker.calls import steps as s
from callbroker.calls.models import Call, CallEvent
from callbroker.carriers import twilio
from tests.carriers.test_telnyx_signature import FORM, carrier, inbound, sid, telnyx_post  # noqa: F401 - a fixture
from tests.hostile.strategies import TOKEN, sign

IVR_LINE = "+15125550003"  # e2e-ivr: asks the ZIP always, then the category


def urls(twiml: str, attribute: str = "action") -> list[str]:
    """The callback URLs of a TwiML answer (``attribute``: ``action`` or ``url``), as the carrier reads them."""
    return [u.replace("&amp;", "&") for u in re.findall(rf' {attribute}="([^"]+)"', twiml)]


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def altered(url: str, name: str, value: str) -> str:
    """``url`` with parameter ``name`` set to ``value``, its ``sig=`` kept: a replay with another query."""
    parts = urlsplit(url)
    query = [(n, value if n == name else v) for n, v in parse_qsl(parts.query, keep_blank_values=True)]
    assert dict(query)[name] == value and parts.query != urlencode(query)
    return f"{parts.path}?{urlencode(query)}"


def unsigned(url: str) -> str:
    """``url`` as the previous release built it: no ``sig=``."""
    parts = urlsplit(url)
    return f"{parts.path}?{urlencode([(n, v) for n, v in parse_qsl(parts.query) if n != 'sig'])}"


def events(n: int) -> list[str]:
    return sorted(CallEvent.objects.filter(call_sid=sid(n)).values_list("kind", flat=True))


def refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]


def test_a_dial_action_replayed_with_another_seq_or_without_its_sig_is_refused_and_stores_nothing(carrier, caplog):
    answer = telnyx_post("/carriers/twilio/voice", inbound(1)).content.decode()
    [action] = urls(answer)
    assert "seq=1&" in action and "&sig=" in action
    outcome = inbound(1, CallStatus="in-progress", DialCallStatus="completed", DialCallDuration="95",
                      DialBridged="true")
    before = events(1)

    with caplog.at_level(logging.WARNING, logger="callbroker.carriers"):
        replays = [telnyx_post(altered(path_of(action), "seq", "2"), outcome),
                   telnyx_post(altered(path_of(action), "c", "2"), outcome),
                   telnyx_post(unsigned(path_of(action)), outcome),
                   telnyx_post(path_of(action) + "&seq=2", outcome)]

    assert [(r.status_code, r.content) for r in replays] == [(403, b"Forbidden: invalid signature")] * 4
    assert events(1) == before and Call.objects.get(call_sid=sid(1)).talk_seconds == 0
    lines = refusals(caplog)
    assert len(lines) == 4 and all("/carriers/twilio/dial refused: Telnyx signature, and the callback URL's"
                                   in line for line in lines), lines
    assert "doesn't sign its parameters" in lines[0] and "without sig=" in lines[2]

    taken = telnyx_post(path_of(action), outcome)  # the URL as given
    assert taken.status_code == 200
    assert "dial" in events(1) and Call.objects.get(call_sid=sid(1)).talk_seconds == 95
    parts = urlsplit(action)  # the same URL, a value percent-encoded on the way: the same parameters, taken
    again = telnyx_post(f"{parts.path}?" + parts.query.replace("seq=1&", "seq=%31&"), outcome)
    assert (again.status_code, again.content) == (200, taken.content)  # the carrier's retry: the same answer


def test_a_dial_action_replayed_with_a_sig_not_in_ascii_is_refused_not_answered_500(carrier, caplog):
    """``sig=%C3%A9`` (read as ``é``) or the raw bytes of ``é`` in the query: no MAC of ours (base64url), and
    ``hmac.compare_digest`` raises ``TypeError`` on a non-ASCII ``str``: the check, outside the views' net,
    answered 500 to one captured Telnyx request altered so."""
    [action] = urls(telnyx_post("/carriers/twilio/voice", inbound(8)).content.decode())
    signed_part = path_of(action).rpartition("&sig=")[0]
    outcome = inbound(8, CallStatus="in-progress", DialCallStatus="completed", DialCallDuration="95",
                      DialBridged="true")
    before = events(8)

    with caplog.at_level(logging.WARNING, logger="callbroker.carriers"):
        replays = [telnyx_post(signed_part + "&sig=%C3%A9", outcome),  # parsed: "é"
                   telnyx_post(signed_part + "&sig=\u00e9", outcome)]  # its bytes as they are: the query as sent

    assert [(r.status_code, r.content) for r in replays] == [(403, b"Forbidden: invalid signature")] * 2
    assert events(8) == before
    lines = refusals(caplog)
    assert len(lines) == 2 and all("doesn't sign its parameters" in line for line in lines), lines


def test_the_ivr_answers_replayed_with_another_attempt_or_zip_are_refused_and_store_nothing(carrier, caplog):
    call = inbound(2, To=IVR_LINE, FromZip="")
    [ask_zip] = urls(telnyx_post("/carriers/twilio/voice", call).content.decode())
    assert "ivr/zip?attempt=1&sig=" in ask_zip
    typed = {**call, "CallStatus": "in-progress", "Digits": "80202"}
    before = events(2)

    with caplog.at_level(logging.WARNING, logger="callbroker.carriers"):
        other_attempt = telnyx_post(altered(path_of(ask_zip), "attempt", "2"), typed)
    assert other_attempt.status_code == 403 and events(2) == before

    [ask_category] = urls(telnyx_post(path_of(ask_zip), typed).content.decode())
    assert "ivr/category?zip=80202&sig=" in ask_category
    after_zip = events(2)
    answered = {**call, "CallStatus": "in-progress", "Digits": "1"}
    with caplog.at_level(logging.WARNING, logger="callbroker.carriers"):
        other_zip = telnyx_post(altered(path_of(ask_category), "zip", "78701"), answered)
        no_sig = telnyx_post(unsigned(path_of(ask_category)), answered)
    assert (other_zip.status_code, no_sig.status_code) == (403, 403) and events(2) == after_zip
    assert len(refusals(caplog)) == 3

    connected = telnyx_post(path_of(ask_category), answered)
    assert connected.status_code == 200 and "+13035550101" in connected.content.decode()


def test_a_whisper_fetched_for_another_campaign_is_refused(carrier):
    answer = telnyx_post("/carriers/twilio/voice", inbound(3)).content.decode()
    [whisper] = urls(answer, "url")
    assert "whisper?c=" in whisper and "&sig=" in whisper
    buyer_leg = {**inbound(3), "CallSid": "v3:telnyx-leg-00000003", "CallStatus": "in-progress"}
    assert telnyx_post(altered(path_of(whisper), "c", "2"), buyer_leg).status_code == 403
    assert telnyx_post(unsigned(path_of(whisper)), buyer_leg).status_code == 403
    assert telnyx_post(path_of(whisper), buyer_leg).status_code == 200


def test_degraded_mode_signs_its_urls_the_same_way_and_a_replay_spools_nothing(carrier, monkeypatch):
    def database_down(*args, **kwargs):
        raise OperationalError("connection refused (the test's outage)")

    monkeypatch.setattr(services, "handle_once", database_down)
    monkeypatch.setattr(replay, "replay_now", lambda call_sid: None)
    answer = telnyx_post("/carriers/twilio/voice", inbound(4))
    [action] = urls(answer.content.decode())
    assert answer.status_code == 200 and "&sig=" in action
    outcome = inbound(4, CallStatus="in-progress", DialCallStatus="completed", DialCallDuration="95",
                      DialBridged="true")
    spooled = spool.path_of(sid(4)).read_text()

    assert telnyx_post(altered(path_of(action), "seq", "2"), outcome).status_code == 403
    assert spool.path_of(sid(4)).read_text() == spooled and not spool.holds(sid(4), "dial")
    assert telnyx_post(path_of(action), outcome).status_code == 200
    assert spool.holds(sid(4), "dial")


def test_a_url_signed_with_the_key_before_a_rotation_is_taken_while_it_is_a_fallback(carrier):
    carrier.SECRET_KEY = "the-key-before-the-rotation-" + "x" * 30
    [action] = urls(telnyx_post("/carriers/twilio/voice", inbound(5)).content.decode())
    outcome = inbound(5, CallStatus="in-progress", DialCallStatus="no-answer", DialCallDuration="0")

    carrier.SECRET_KEY, carrier.SECRET_KEY_FALLBACKS = "the-key-after-the-rotation-" + "y" * 30, []
    assert telnyx_post(path_of(action), outcome).status_code == 403
    carrier.SECRET_KEY_FALLBACKS = ["the-key-before-the-rotation-" + "x" * 30]
    assert telnyx_post(path_of(action), outcome).status_code == 200
    [next_action] = urls(telnyx_post("/carriers/twilio/voice", inbound(6)).content.decode())
    carrier.SECRET_KEY_FALLBACKS = []
    assert telnyx_post(path_of(next_action), {**outcome, "CallSid": sid(6)}).status_code == 200  # the new key's


def test_every_parameter_the_twiml_puts_in_a_url_is_one_a_telnyx_request_must_sign():
    """``READ_FROM_URL`` names what a Telnyx request must carry signed: a name added to a URL and not there
    would be taken unsigned."""
    steps = (s.AskZip(prompt="Your ZIP?", attempt=1), s.AskCategory(prompt="Roofer? Press 1.", typed_zip="80202"),
             s.DialTarget(number="+13035550101", sequence=1, timeout=20, record=True, campaign_id=3, rest=(4, 5),
                          target_id=7, network_version=9, counted_periods="H2026120814 D20261208"),
             s.TakeMessage(prompt="Leave a message.", max_seconds=60))
    twiml = twilio.render(steps, "https://cb.example.com")
    names = {name for u in urls(twiml) + urls(twiml, "url") + urls(twiml, "recordingStatusCallback")
             for name, _ in parse_qsl(urlsplit(u).query)}
    assert names - {"sig"} == set(twilio.READ_FROM_URL) and "sig" in names


def test_twilio_follows_the_signed_urls_and_an_unsigned_one_of_the_previous_release_as_before(carrier):
    """Twilio's signature covers the URL: ``sig=`` is not checked there (its cost not paid)."""
    path = "/carriers/twilio/voice"
    call = {**inbound(7), "CallSid": "CA" + "7" * 32, "AccountSid": "AC" + "7" * 32}
    answer = Client().post(path, urlencode(call), content_type=FORM,
                           headers={"X-Twilio-Signature": sign(TOKEN, f"http://testserver{path}", call)})
    [action] = urls(answer.content.decode())
    assert "&sig=" in action
    outcome = {**call, "CallStatus": "in-progress", "DialCallStatus": "no-answer", "DialCallDuration": "0"}
    for url in (path_of(action), unsigned(path_of(action))):
        taken = Client().post(url, urlencode(outcome), content_type=FORM,
                              headers={"X-Twilio-Signature": sign(TOKEN, f"http://testserver{url}", outcome)})
        assert taken.status_code == 200 and "<Dial" in taken.content.decode()  # the next line rung
