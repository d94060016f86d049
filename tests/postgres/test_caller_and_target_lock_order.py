"""On PostgreSQL with SQL counters, the replay of a caller's call and a live webhook of their other call on the
same line don't deadlock.

Given a caller's two calls on the e2e plumbing campaign, both ringing Line A (each holding one of its slots),
one call's final status spooled during an outage, when the replayer replays that status while a webhook of
the other call is handled live (its final status; or its Dial action, bridged, after its final status, Line
A having a daily cap), each having taken its first lock before it asks for the other's, whichever goes first,
then neither waits for the other in a cycle: no transaction is stopped by PostgreSQL and run again, both
calls end, judged, Line A has its slots back and counts the bridged call's cap unit only.

Until the fix the live webhook gave its slot back (an UPDATE of Line A's state row), or counted its cap unit
again (Line A's usage row), before it took the caller's lock to judge its call, while the replay took the
caller's lock first and then gave its slot and unit back on those rows: a deadlock, the live webhook stopped
by PostgreSQL after a second and run again. Every writer now takes the caller's lock before a target's rows
(docs/database.md, the order of the locks).
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("replay_first", [True, False], ids=["replay first", "live first"])
def test_a_replayed_and_a_live_final_status_of_one_caller_on_one_line_dont_deadlock(fresh_pg, replay_first):
    found = fresh_pg.probe("replayed_status_beside_a_final_status", replay_first=replay_first)
    assert found["in_vain"] == [], found  # the two met as meant
    assert (found["calls"]["live"]["lines"], found["calls"]["replayed"]["lines"]) == (["pipes-a"], ["pipes-a"])
    assert found["retried"] == [], found
    assert found["raised"] == {"replay": []}, found
    for call in found["calls"].values():
        assert (call["stage"], call["verdict"], call["reasons"], call["slots_held"]) == (
            "ended", "not_billable", ["not_connected"], 0), found
    assert (found["spooled"], found["line_a_active"]) == (False, 0)


@pytest.mark.parametrize("replay_first", [True, False], ids=["replay first", "live first"])
def test_a_replayed_final_status_and_a_late_bridge_of_one_caller_on_one_line_dont_deadlock(fresh_pg, replay_first):
    found = fresh_pg.probe("replayed_status_beside_a_final_status", replay_first=replay_first,
                           live_webhook="late bridge")
    assert found["in_vain"] == [], found
    assert (found["calls"]["live"]["lines"], found["calls"]["replayed"]["lines"]) == (["pipes-a"], ["pipes-a"])
    assert found["retried"] == [], found
    assert found["raised"] == {"replay": []}, found
    assert (found["calls"]["live"]["stage"], found["calls"]["live"]["verdict"]) == ("ended", "billable"), found
    assert (found["calls"]["replayed"]["stage"], found["calls"]["replayed"]["verdict"]) == ("ended", "not_billable")
    assert (found["spooled"], found["line_a_active"], found["line_a_units"]) == (False, 0, [1]), found
