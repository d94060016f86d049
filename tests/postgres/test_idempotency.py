"""Idempotency under PostgreSQL: the same webhook delivered at once by many connections.

Given the real server (4 gunicorn workers) on PostgreSQL, when the carrier's voice webhook for one
CallSid arrives 8 times at the same moment, then exactly one call, one attempt and one event exist, one
concurrency slot is taken, and every delivery gets the same answer.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from twilio.request_validator import RequestValidator

from tests.e2e.conftest import TOKEN

PLUMBING = "+15125550001"
DELIVERIES = 8


def test_concurrent_deliveries_of_one_voice_webhook_create_one_call(pg_server, pg):
    url = pg_server.base_url + "/carriers/twilio/voice"
    for round_number in range(3):
        sid = "CA" + uuid.uuid4().hex
        params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": f"+1737555{round_number:04d}",
                  "To": PLUMBING, "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01",
                  "FromZip": "78701", "FromState": "TX"}
        headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)}
        start = threading.Barrier(DELIVERIES)

        def deliver(_: int) -> httpx.Response:
            with httpx.Client(timeout=30) as client:  # one connection each, opened before the barrier
                start.wait()
                return client.post(url, data=params, headers=headers)

        with ThreadPoolExecutor(max_workers=DELIVERIES) as pool:
            responses = list(pool.map(deliver, range(DELIVERIES)))

        assert [r.status_code for r in responses] == [200] * DELIVERIES
        assert len({r.text for r in responses}) == 1, {r.text for r in responses}
        assert "<Dial" in responses[0].text
        assert pg.value("SELECT count(*) FROM calls_call WHERE call_sid = %s", [sid]) == 1
        assert pg.value("SELECT count(*) FROM calls_callevent WHERE dedupe_key = %s", [f"{sid}:voice"]) == 1
        assert pg.value("SELECT count(*) FROM calls_callattempt a JOIN calls_call c ON c.id = a.call_id "
                        "WHERE c.call_sid = %s", [sid]) == 1
    # Every slot taken belongs to an attempt still ringing: the losing deliveries took none.
    slots = pg.sql("SELECT target_id, active_calls FROM network_targetstate WHERE active_calls > 0")
    held = pg.sql("SELECT target_id, count(*) FROM calls_callattempt WHERE slot_held GROUP BY target_id")
    assert slots == held
    assert "Traceback" not in pg_server.log_path.read_text()


IVR = "+15125550003"  # e2e-ivr: asks the ZIP always, then the category question


def test_concurrent_deliveries_of_a_zip_answer_after_a_stray_one_all_get_the_question(pg_server, pg):
    """The caller's answer to ZIP prompt 2, delivered 8 times at once, after a stray answer to prompt 2 came
    while prompt 1 waited (stored apart, ``services.OutOfTurn``). A delivery that waited for the call's lock
    finds the call moved on, the answer out of turn: it must answer what the first answered, the category
    question, not a hang-up. Until the fix every delivery got the stray answer's hang-up."""
    sid = "CA" + uuid.uuid4().hex
    call = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+17375559999", "To": IVR,
            "CallStatus": "in-progress", "Direction": "inbound", "FromZip": "", "FromState": "CO"}

    def post(client: httpx.Client, path: str, params: dict[str, str]) -> httpx.Response:
        url = pg_server.base_url + path
        headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)}
        return client.post(url, data=params, headers=headers)

    with httpx.Client(timeout=30) as client:
        assert "attempt=1" in post(client, "/carriers/twilio/voice", call).text
        assert "<Hangup" in post(client, "/carriers/twilio/ivr/zip?attempt=2", {**call, "Digits": "80204"}).text
        assert "attempt=2" in post(client, "/carriers/twilio/ivr/zip?attempt=1", {**call, "Digits": "00000"}).text
    start = threading.Barrier(DELIVERIES)

    def deliver(_: int) -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            start.wait()
            return post(client, "/carriers/twilio/ivr/zip?attempt=2", {**call, "Digits": "80203"})

    with ThreadPoolExecutor(max_workers=DELIVERIES) as pool:
        responses = list(pool.map(deliver, range(DELIVERIES)))
    assert [r.status_code for r in responses] == [200] * DELIVERIES
    assert len({r.text for r in responses}) == 1, {r.text for r in responses}
    assert "press 1" in responses[0].text
    assert pg.sql("SELECT caller_zip, ivr_prompt FROM calls_call WHERE call_sid = %s", [sid]) == [("80203", "category")]
    assert pg.sql("SELECT dedupe_key FROM calls_callevent WHERE call_sid = %s AND kind = 'ivr_zip' ORDER BY id",
                  [sid]) == [(f"{sid}:zip:2:out-of-turn",), (f"{sid}:zip:1",), (f"{sid}:zip:2",)]
    assert "Traceback" not in pg_server.log_path.read_text()
