"""On PostgreSQL (the call table partitioned by month, the calls' advisory locks), staff judge ended calls left
``pending`` with ``callbroker calls judge``: all or none, refused calls named, nothing posted to the ledger.

Given two ended calls with no campaign (their campaign deleted while they went on), in two months'
partitions, and one call still at the IVR, when staff judge the three at once, nothing is written and the one
in progress is named; when they judge the two ended ones, both are not billable (``judged_by_staff``), each
with its event, the ledger empty and ``billing check`` agreeing; a CallSid holding a NUL character (which
PostgreSQL refuses in a text) is no call, one line, not a traceback.
"""

from __future__ import annotations

import datetime as dt
import uuid


def test_staff_judge_ended_calls_left_pending_all_or_none(fresh_pg):
    older, newer, at_ivr = ("CA" + uuid.uuid4().hex for _ in range(3))
    now = dt.datetime.now(dt.UTC)
    fresh_pg.probe("insert_calls", calls=[  # an old month's call is in the default partition, this month's not
        {"call_sid": older, "started_at": "2026-09-14T10:00:00+00:00"},
        {"call_sid": newer, "started_at": (now - dt.timedelta(seconds=2)).isoformat()},
        {"call_sid": at_ivr, "started_at": now.isoformat()}])
    fresh_pg.sql("UPDATE calls_call SET stage = 'ended', ended_at = started_at + interval '2 minutes' "
                 "WHERE call_sid IN (%s, %s)", [older, newer])
    assert fresh_pg.partition_of(older) != fresh_pg.partition_of(newer)

    refused, nul, judged, check = fresh_pg.commands(
        ["calls", "judge", older, newer, at_ivr, "--not-billable"],
        ["calls", "judge", "CA\x00" + older, "--not-billable"],
        ["calls", "judge", older, newer, "--not-billable", "--note", "campaign deleted mid-call"],
        ["billing", "check"])

    assert refused["code"] == 1 and refused["stderr"] == (
        f"CommandError: Nothing judged (all or none): {at_ivr} is still in progress (in IVR): its final status "
        "judges it, or the six-hour close (calls close-abandoned).\n")
    assert nul["code"] == 1 and "is no call." in nul["stderr"], nul
    assert judged["code"] == 0 and judged["stdout"].splitlines()[1:] == [f"  {older}", f"  {newer}"], judged
    assert fresh_pg.sql("SELECT call_sid, verdict, reason_codes::text, revenue::text, payout::text, "
                        "qualified_at IS NOT NULL FROM calls_call ORDER BY started_at") == [
        (older, "not_billable", '["judged_by_staff"]', "0.00", "0.00", True),
        (newer, "not_billable", '["judged_by_staff"]', "0.00", "0.00", True),
        (at_ivr, "pending", "[]", "0.00", "0.00", False)]
    assert sorted(fresh_pg.sql("SELECT call_sid, dedupe_key, params->>'by', params->>'note' FROM calls_callevent "
                               "WHERE kind = 'judged_by_staff'")) == sorted([
        (older, f"{older}:judged_by_staff", "cli", "campaign deleted mid-call"),
        (newer, f"{newer}:judged_by_staff", "cli", "campaign deleted mid-call")])
    assert fresh_pg.value("SELECT count(*) FROM billing_ledgerentry") == 0
    assert check["code"] == 0 and "OK: the ledger agrees with every call." in check["stdout"], check
