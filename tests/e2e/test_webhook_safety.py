"""Signatures, idempotency, replays, reordering and malformed input against the real server."""

from __future__ import annotations

import itertools
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from twilio.request_validator import RequestValidator

from callbroker.sim.emulator import BuyerBehaviour, CallerScript, Delivery
from tests.e2e.conftest import TOKEN

pytestmark = pytest.mark.e2e

PLUMBING = "+15125550001"
PIPES_A, PIPES_B = "+15125550101", "+15125550102"
_n = itertools.count(5000)


def new_caller() -> str:
    return f"+1737444{next(_n):04d}"


def signed_post(server, path: str, params: dict[str, str], *, token: str = TOKEN, sign_url: str | None = None):
    url = server.base_url + path
    signature = RequestValidator(token).compute_signature(sign_url or url, params)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)


def inbound(sid: str, to: str = PLUMBING) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": new_caller(), "To": to, "CallStatus": "ringing",
            "Direction": "inbound", "ApiVersion": "2010-04-01", "FromZip": "78701"}


def test_forged_signature_is_refused_and_changes_nothing(server):
    sid = "CA" + "f" * 32
    response = signed_post(server, "/carriers/twilio/voice", inbound(sid), token="not-the-token")
    assert response.status_code == 403
    unsigned = httpx.post(server.base_url + "/carriers/twilio/voice", data=inbound(sid), timeout=10)
    assert unsigned.status_code == 403
    other_url = signed_post(server, "/carriers/twilio/voice", inbound(sid),
                            sign_url=server.base_url + "/carriers/twilio/status")
    assert other_url.status_code == 403
    assert server.cli("calls", "show", sid, "--json", check=False).returncode != 0
    assert "invalid signature" in server.log_path.read_text()


def test_carrier_answers_carry_their_length_and_are_not_chunked(server):
    answers = [signed_post(server, "/carriers/twilio/voice", inbound("CA" + uuid.uuid4().hex)),
               signed_post(server, "/carriers/twilio/voice", inbound("CA" + "d" * 32), token="not-the-token"),
               signed_post(server, "/carriers/twilio/fallback", inbound("CA" + uuid.uuid4().hex))]
    assert [r.status_code for r in answers] == [200, 403, 200]
    for response in answers:
        assert response.headers["content-length"] == str(len(response.content))
        assert "transfer-encoding" not in response.headers


def test_tampered_parameters_are_refused(server):
    params = inbound("CA" + "e" * 32)
    url = server.base_url + "/carriers/twilio/voice"
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    params["FromZip"] = "99999"
    response = httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert response.status_code == 403


@pytest.mark.parametrize(
    "path,params",
    [
        ("/carriers/twilio/voice", {"From": "+15125550000"}),  # no CallSid, no To
        ("/carriers/twilio/voice", {"CallSid": "CA" + "1" * 32, "From": "x" * 500, "To": "garbage"}),
        ("/carriers/twilio/dial?seq=1", {"CallSid": "CA" + "2" * 32, "DialCallStatus": "exploded"}),
        ("/carriers/twilio/dial", {"CallSid": "CA" + "3" * 32, "DialCallStatus": "completed"}),  # no seq
        ("/carriers/twilio/ivr/zip?attempt=x", {"CallSid": "CA" + "4" * 32, "Digits": "78701"}),
        ("/carriers/twilio/status", {"CallSid": "CA" + "5" * 32, "CallStatus": "completed", "CallDuration": "-4"}),
        ("/carriers/twilio/recording", {"CallSid": "CA" + "6" * 32}),
        ("/carriers/twilio/dial?seq=1", {"CallSid": "CA-never-seen", "DialCallStatus": "no-answer"}),
    ],
)
def test_malformed_signed_webhooks_get_safe_twiml_never_a_500(server, path, params):
    response = signed_post(server, path, params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.startswith("<?xml")
    assert "<Response" in response.text


def test_voice_webhook_for_unknown_number_forwards_somewhere(server):
    response = signed_post(server, "/carriers/twilio/voice", inbound("CA" + "7" * 32, to="+15125550000"))
    assert response.status_code == 200
    assert "<Dial" in response.text and "+15125550999" in response.text


def test_fallback_url_answers_from_memory(server):
    params = {**inbound("CA" + "8" * 32), "ErrorCode": "11200", "ErrorUrl": server.base_url + "/carriers/twilio/voice"}
    response = signed_post(server, "/carriers/twilio/fallback", params)
    assert response.status_code == 200
    assert "<Dial" in response.text or "<Say" in response.text


def test_replayed_voice_webhook_returns_the_same_answer_and_changes_nothing(server, carrier):
    record = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "78701"},
                                buyers={PIPES_A: BuyerBehaviour(talk_seconds=100)})
    before = server.call(record.call_sid)
    first_request = record.requests[0]
    replay = signed_post(server, "/carriers/twilio/voice", dict(first_request.params))
    assert replay.status_code == 200
    assert replay.text == first_request.body
    after = server.call(record.call_sid)
    assert after["attempts"] == before["attempts"]
    assert after["verdict"] == before["verdict"] == "billable"


def test_a_final_status_before_the_bridged_dial_result_ends_in_the_same_record(server, carrier):
    """The caller hangs up while talking to the buyer: the call's end and the Dial result go out together and
    the end arrives first (``Delivery.status_first``). The server first closes the call as not connected,
    then the Dial result says the buyer talked: the record must end as if they had come in order."""
    talk, hangs_up = {PIPES_A: BuyerBehaviour(talk_seconds=300)}, CallerScript(hangs_up_after=100)
    plain = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "78701"}, buyers=talk, caller=hangs_up)
    raced = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "78701"}, buyers=talk, caller=hangs_up,
                               delivery=Delivery(status_first=True, duplicate=True))
    paths = [urlsplit(r.url).path for r in raced.requests]
    assert paths.index("/carriers/twilio/status") < paths.index("/carriers/twilio/dial")
    a, b = server.call(plain.call_sid), server.call(raced.call_sid)
    assert_same_record(a, b)
    assert b["verdict"] == "billable" and b["talk_seconds"] >= 60
    assert [x["result"] for x in b["attempts"]] == ["bridged"]


def assert_same_record(a: dict, b: dict) -> None:
    """Two calls' records (``calls show --json``) agree on their outcome, money and attempts."""
    fields = ("verdict", "reasons", "revenue", "payout", "talk_seconds", "stage", "in_area")
    assert {f: a[f] for f in fields} == {f: b[f] for f in fields}
    assert [(x["number"], x["result"]) for x in a["attempts"]] == [(x["number"], x["result"]) for x in b["attempts"]]


def test_duplicated_and_reordered_callbacks_end_in_the_same_record(server, carrier):
    behaviours = {PIPES_A: BuyerBehaviour(answers=False, ring_seconds=40), PIPES_B: BuyerBehaviour(talk_seconds=95)}
    plain = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "78703"}, buyers=behaviours)
    messy = carrier.place_call(PLUMBING, new_caller(), params={"FromZip": "78703"}, buyers=behaviours,
                               delivery=Delivery(duplicate=True, reorder=True))
    a, b = server.call(plain.call_sid), server.call(messy.call_sid)
    assert_same_record(a, b)
    assert a["caller"]["zip"] == b["caller"]["zip"] == "78703"
    assert b["recording"]["url"] and b["recording"]["url"] != a["recording"]["url"]
    assert b["verdict"] == "billable"
