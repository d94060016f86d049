"""On PostgreSQL, a call's real final status that comes after the six-hour close ends the call as it says, once.

Given a migrated database with the e2e network and a call ringing a plumber whose Dial action and final status
never came, seven hours on, when ``callbroker calls close-abandoned`` closes it (its leg canceled, its slot
given back) and its final status then comes (twice: the carrier's retry), then the call ends when the status
came, with its status and duration, its leg rang until then, the ``abandoned`` event stays, and the slot is
given back once (the plumber's line count 0, never below). Until 2026-12-07 the status changed nothing: the
call kept the close's end time and no duration (tests/calls/test_late_final_status.py: the live, replayed,
duplicate, judged-again and Redis cases).
"""

from __future__ import annotations

import uuid

from tests.e2e.conftest import TOKEN

PLUMBING = "+15125550001"


def test_a_final_status_after_the_close_ends_the_call_as_it_says_once(fresh_pg):
    sid = "CA" + uuid.uuid4().hex
    inbound = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+15125559876", "To": PLUMBING,
               "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01", "FromZip": "78701"}
    answer, = fresh_pg.probe("post_webhooks", token=TOKEN, webhooks=[["/carriers/twilio/voice", inbound]])
    assert "<Dial" in answer
    fresh_pg.sql("UPDATE calls_callattempt SET started_at = started_at - interval '7 hours'")  # its end was lost
    closed, = fresh_pg.commands(["calls", "close-abandoned"])
    assert f"  {sid}" in closed["stdout"].splitlines(), closed
    active = "SELECT coalesce(sum(active_calls), 0) FROM network_targetstate"
    assert fresh_pg.value(active) == 0
    closed_at = fresh_pg.value("SELECT ended_at FROM calls_call WHERE call_sid = %s", [sid])
    ended = {**inbound, "CallStatus": "completed", "CallDuration": "20", "SequenceNumber": "4"}

    fresh_pg.probe("post_webhooks", token=TOKEN, webhooks=[["/carriers/twilio/status", ended],
                                                           ["/carriers/twilio/status", ended]])

    [(final_status, duration, ended_at, verdict)] = fresh_pg.sql(
        "SELECT final_status, duration_seconds, ended_at, verdict FROM calls_call WHERE call_sid = %s", [sid])
    assert (final_status, duration, verdict) == ("completed", 20, "not_billable")
    came = fresh_pg.value("SELECT received_at FROM calls_callevent WHERE call_sid = %s AND kind = 'status'", [sid])
    assert closed_at < came <= ended_at  # when the status came (handled right after its event was stamped)
    assert fresh_pg.sql("SELECT a.result, a.ended_at = c.ended_at, a.slot_held FROM calls_callattempt a "
                        "JOIN calls_call c ON c.id = a.call_id WHERE c.call_sid = %s", [sid]) == [
        ("canceled", True, False)]  # rang until the status came, not until the close
    assert fresh_pg.value("SELECT count(*) FROM calls_callevent WHERE call_sid = %s AND kind = 'abandoned'",
                          [sid]) == 1
    assert fresh_pg.value(active) == 0


def test_a_late_final_status_judged_again_and_a_verdict_of_the_callers_other_call_dont_deadlock(fresh_pg):
    """The late status (shorter than the talk time) judges its call again: it took the caller's lock after
    writing the call's row, while the final status of the caller's earlier call, holding that lock, judged
    the later call again (a duplicate) and wrote that row: each waited for the other, PostgreSQL stopped one
    after a second and it was run again. It now takes the caller's lock before the call's row, as the replay
    does (docs/database.md, the order of the locks)."""
    found = fresh_pg.probe("late_status_beside_a_verdict")
    assert found["in_vain"] == [], found  # the two met as meant
    assert found["closed_verdict"] == "billable", found
    assert found["raised"] == {}, found
    assert found["retried"] == [], found
    earlier, later = found["calls"]["earlier"], found["calls"]["later"]
    assert (earlier["verdict"], earlier["reasons"]) == ("billable", []), found
    assert (later["final_status"], later["duration"], later["verdict"]) == ("completed", 60, "not_billable"), found
    assert "duplicate" in later["reasons"], found
    assert found["ledger"] == [], found
