"""On PostgreSQL, a call's webhooks answered from memory are logged at the times they were received.

Given a migrated database with the e2e network, when a call's inbound webhook and final status are answered
from memory during an outage three hours ago (spooled, their lines' times put back three hours) and the
spool is replayed now, then each of the call's events in ``calls_callevent`` (not partitioned: any time
goes) says when its webhook came, as the call's ``started_at`` and ``ended_at`` do, and not the replay's
time. Until 2026-12-07 ``received_at`` was set on insert (``auto_now_add``) whatever the replay gave.
"""

from __future__ import annotations

import datetime as dt
import uuid

from tests.e2e.conftest import TOKEN

PLUMBING = "+15125550001"


def test_a_call_replayed_hours_after_its_outage_logs_its_webhooks_when_they_came(fresh_pg):
    sid = "CA" + uuid.uuid4().hex
    inbound = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+15125559876", "To": PLUMBING,
               "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01", "FromZip": "78701"}
    ended = {**inbound, "CallStatus": "completed", "CallDuration": "42", "SequenceNumber": "4"}

    replayed = fresh_pg.probe("replayed_hours_later", token=TOKEN, hours=3,
                              webhooks=[["/carriers/twilio/voice", inbound], ["/carriers/twilio/status", ended]])

    assert replayed["errors"] == []
    received = {key: dt.datetime.fromisoformat(at) for key, at in replayed["received"].items()}
    assert list(received) == [f"{sid}:voice", f"{sid}:status:completed:4"]
    logged = dict(fresh_pg.sql("SELECT dedupe_key, received_at FROM calls_callevent WHERE call_sid = %s", [sid]))
    assert logged == received
    started, stage = fresh_pg.sql("SELECT started_at, stage FROM calls_call WHERE call_sid = %s", [sid])[0]
    assert (started, stage) == (received[f"{sid}:voice"], "ended")
    assert fresh_pg.value("SELECT now() - max(received_at) FROM calls_callevent WHERE call_sid = %s",
                          [sid]) > dt.timedelta(hours=2)
