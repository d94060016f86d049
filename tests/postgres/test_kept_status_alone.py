"""On PostgreSQL, a final status kept for an inbound webhook that never comes is kept as a call, once.

Given a migrated database with the e2e network, when a call's final status reaches us with the database up
and no call recorded (twice, as two final statuses: the list keeps the first, ``ON CONFLICT DO NOTHING``),
and an hour later ``callbroker calls close-abandoned`` runs twice, then the call is recorded once from the
status's facts (``status_only``, not billable), its inbound webhook handled afterwards answers ``<Hangup/>``
and writes no second call, and the list of kept statuses is empty again and has no index but its keys.
"""

from __future__ import annotations

import uuid

from tests.e2e.conftest import TOKEN

PLUMBING = "+15125550001"


def test_a_final_status_whose_inbound_webhook_never_came_is_kept_as_a_call_once(fresh_pg):
    sid = "CA" + uuid.uuid4().hex
    inbound = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+15125559876", "To": PLUMBING,
               "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01", "FromZip": "78701"}
    ended = {**inbound, "CallStatus": "completed", "CallDuration": "42", "SequenceNumber": "4"}
    again = {**ended, "SequenceNumber": "5"}
    fresh_pg.probe("post_webhooks", token=TOKEN, webhooks=[["/carriers/twilio/status", ended],
                                                           ["/carriers/twilio/status", again]])
    assert fresh_pg.value("SELECT count(*) FROM calls_callevent WHERE call_sid = %s AND kind = 'status'",
                          [sid]) == 2  # both answered and stored (a webhook that fails is answered 200 too)
    assert fresh_pg.sql("SELECT call_sid FROM calls_keptstatus") == [(sid,)]
    fresh_pg.sql("UPDATE calls_keptstatus SET received_at = received_at - interval '2 hours'")

    first, second = fresh_pg.commands(["calls", "close-abandoned"], ["calls", "close-abandoned"])

    assert f"  {sid}" in first["stdout"].splitlines() and sid not in second["stdout"], (first, second)
    assert fresh_pg.sql("SELECT stage, final_status, duration_seconds, fallback_applied, verdict, "
                        "reason_codes::text, extract(epoch FROM ended_at - started_at)::int FROM calls_call "
                        "WHERE call_sid = %s", [sid]) == [
        ("ended", "completed", 42, "status_only", "not_billable", '["not_connected"]', 42)]
    answer, = fresh_pg.probe("post_webhooks", token=TOKEN, webhooks=[["/carriers/twilio/voice", inbound]])
    assert "<Hangup" in answer and "<Dial" not in answer
    assert fresh_pg.value("SELECT count(*) FROM calls_call WHERE call_sid = %s", [sid]) == 1
    assert fresh_pg.value("SELECT count(*) FROM calls_callattempt a JOIN calls_call c ON c.id = a.call_id "
                          "WHERE c.call_sid = %s", [sid]) == 0
    assert fresh_pg.value("SELECT count(*) FROM calls_callevent WHERE call_sid = %s AND kind = 'status_only'",
                          [sid]) == 1
    assert fresh_pg.sql("SELECT count(*) FROM calls_keptstatus") == [(0,)]
    assert sorted(fresh_pg.sql("SELECT indexname FROM pg_indexes WHERE tablename = 'calls_keptstatus'")) == [
        ("calls_keptstatus_pkey",), ("kept_status_once_per_call",)]  # no varchar_pattern_ops copy (database.md)


def test_a_final_status_kept_before_the_list_existed_is_put_on_it_by_the_upgrade(fresh_pg):
    """``calls/0013`` on the partitioned call table: a status kept in the event log only (as the previous
    release kept it) goes on the list, one whose call is in an older month's partition doesn't."""
    alone, recorded = "CA" + uuid.uuid4().hex, "CA" + uuid.uuid4().hex
    fresh_pg.probe("insert_calls", calls=[{"call_sid": recorded, "started_at": "2026-09-14T10:00:00+00:00"}])
    webhooks = []
    for sid in (alone, recorded):
        ended = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+15125559876", "To": PLUMBING,
                 "CallStatus": "completed", "CallDuration": "42", "SequenceNumber": "4", "FromZip": "78701"}
        webhooks.append(["/carriers/twilio/status", ended])
    fresh_pg.probe("post_webhooks", token=TOKEN, webhooks=webhooks)
    fresh_pg.sql("DELETE FROM calls_keptstatus")  # kept by the previous release: in the event log only
    came = fresh_pg.value("SELECT received_at FROM calls_callevent WHERE call_sid = %s", [alone])
    fresh_pg.commands(["migrate", "calls", "0012", "--verbosity", "0"])

    fresh_pg.commands(["migrate", "--verbosity", "0"])

    assert fresh_pg.sql("SELECT call_sid, received_at, inbound->>'to', inbound->>'from_zip' FROM calls_keptstatus"
                        ) == [(alone, came, PLUMBING, "78701")]
    fresh_pg.sql("UPDATE calls_keptstatus SET received_at = received_at - interval '2 hours'")
    swept, = fresh_pg.commands(["calls", "close-abandoned"])
    assert f"  {alone}" in swept["stdout"].splitlines() and recorded not in swept["stdout"], swept
    assert fresh_pg.value("SELECT fallback_applied FROM calls_call WHERE call_sid = %s", [alone]) == "status_only"
