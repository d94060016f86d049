"""Issues the hostile-input suite found, each reproduced exactly; all fixed, kept as regression tests.

docs/reliability.md ("Hostile input") lists them with their fixes.
"""

from __future__ import annotations


from callbroker.calls.models import Call
from tests.hostile.checks import spool_state
from tests.hostile.conftest import inbound, post_signed
from tests.hostile.strategies import TOKEN, canonical, sign

IVR_CALL = "CA" + "d4" * 16  # seeded in the IVR campaign (conftest.carrier_world)
IVR_NUMBER = "+15125550003"


def test_a_signed_webhook_the_database_refuses_is_not_taken_for_an_outage(carrier_world):
    """An IVR callback with ``attempt=-5`` makes ``zip_attempts`` negative: SQLite's CHECK constraint
    refuses the write (IntegrityError). carriers/views.py catches ``replay.OUTAGES`` =
    ``(DatabaseError, RedisError)`` — IntegrityError and DataError included — as "a backend is
    unreachable", answers from memory and spools the call: the call stays in degraded mode and its next,
    genuine ZIP entry no longer reaches the IVR. The replayer then meets the same error, which it also
    takes for an outage (``break``: "still down"), so the spool never drains. On PostgreSQL every signed
    webhook carrying a NUL character does the same (DataError). Same for an IVR callback on a call that
    already left the IVR (UNIQUE constraint on the attempt sequence).
    """
    client, target = carrier_world.client, carrier_world.target
    base = {"CallSid": IVR_CALL, "To": IVR_NUMBER, "From": "+15125559876", "AccountSid": "AC" + "7" * 32}
    bad = post_signed(client, target, "/carriers/twilio/ivr/zip", {**base, "Digits": "1"}, query="attempt=-5")
    assert bad.status_code == 200
    then = post_signed(client, target, "/carriers/twilio/ivr/zip", {**base, "Digits": "78701"}, query="attempt=1")
    assert spool_state() == {}, "the call was spooled as if the database were down"
    assert b"<Gather" in then.content, "the caller's valid ZIP no longer reaches the IVR"


def test_an_ivr_callback_for_a_finished_call_does_not_ring_a_buyer_again(carrier_world):
    """``services.category_answered`` / ``zip_entered`` don't check the call's stage: a (signed) category
    callback for a call that ended re-routes it and answers with a ``<Dial>`` to a buyer."""
    client, target = carrier_world.client, carrier_world.target
    sid = "CA" + "98" * 16
    assert post_signed(client, target, "/carriers/twilio/voice", inbound(sid, "+15125550001", FromZip="78701")
                       ).status_code == 200
    post_signed(client, target, "/carriers/twilio/dial", {"CallSid": sid, "DialCallStatus": "completed",
                                                          "DialBridged": "true", "DialCallDuration": "100"},
                query="seq=1&c=1")
    post_signed(client, target, "/carriers/twilio/status", {"CallSid": sid, "CallStatus": "completed",
                                                            "CallDuration": "120", "SequenceNumber": "3"})
    assert Call.objects.get(call_sid=sid).stage == "ended"
    late = post_signed(client, target, "/carriers/twilio/ivr/category",
                       {"CallSid": sid, "Digits": "1", "To": "+15125550001", "From": "+15125559876"})
    assert late.status_code == 200
    assert b"<Dial" not in late.content, "an ended call was routed to a buyer again"


def test_a_get_webhook_signed_as_twilio_signs_it_is_accepted(carrier_world):
    """Twilio signs a GET request over the URL alone (its parameters are in the query). twilio.verify()
    is given ``request.GET`` as the POST parameters, so it appends them a second time and every genuine
    GET webhook (a number or ``<Redirect>`` configured with method GET) is refused with 403."""
    client, target = carrier_world.client, carrier_world.target
    query = "CallSid=CA" + "71" * 16 + "&To=%2B15125550001&From=%2B15125559876&CallStatus=ringing"
    url = f"{target.base}/carriers/twilio/voice?{query}"
    response = client.get(f"/carriers/twilio/voice?{query}", headers={"X-Twilio-Signature": sign(TOKEN, url, {})})
    assert response.status_code == 200


def test_a_captured_webhook_cannot_be_recut_into_another_under_the_same_signature(carrier_world):
    """Twilio's signature concatenates sorted names and values with no separator, so moving the boundary
    between parameters keeps the signature: from one captured (e.g. logged, or sent over plain HTTP) voice
    webhook, anyone can make ``CallSid=CA…CallStatusringing`` (CallStatus folded into CallSid) — a new
    call the server creates and routes. Defence in depth: refuse SIDs that don't have a SID's shape."""
    client, target = carrier_world.client, carrier_world.target
    genuine = inbound("CA" + "72" * 16, "+15125550001", FromZip="78701")
    url = f"{target.base}/carriers/twilio/voice"
    signature = sign(TOKEN, url, genuine)
    twin = {k: v for k, v in genuine.items() if k != "CallStatus"}
    twin["CallSid"] = genuine["CallSid"] + "CallStatus" + genuine["CallStatus"]
    assert canonical(url, twin) == canonical(url, genuine)  # the same signed text
    from urllib.parse import urlencode

    client.post("/carriers/twilio/voice", data=urlencode(genuine), content_type="application/x-www-form-urlencoded",
                headers={"X-Twilio-Signature": signature})
    calls = Call.objects.count()
    response = client.post("/carriers/twilio/voice", data=urlencode(twin),
                           content_type="application/x-www-form-urlencoded", headers={"X-Twilio-Signature": signature})
    # Refused as malformed (a CallSid must look like one): safe TwiML to whoever sent it, and no call.
    assert response.status_code in (200, 403)
    assert Call.objects.count() == calls, "a re-cut webhook created a call"


def test_the_fallback_url_answers_without_the_database_even_when_its_handler_fails(carrier_world):
    """A NUL character makes the handler refuse the request; the safe answer for the Fallback URL must not
    look the call up in the database (it is the carrier's way out when the database is what failed)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        answer = post_signed(carrier_world.client, carrier_world.target, "/carriers/twilio/fallback",
                             {"CallSid": "CA" + "12" * 16, "ErrorCode": "11205\x00"})
    assert answer.status_code == 200 and "<Dial" in answer.content.decode()  # the installation's number
    assert queries.captured_queries == []
