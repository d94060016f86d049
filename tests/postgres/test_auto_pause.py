"""Missed-call protection's pause on PostgreSQL: read before the counters, for every target of the campaign.

Given the e2e network with Line A of e2e-plumbing auto-paused for an hour, when a caller from 78701
(served by all three lines) calls through the whole webhook stack, then the decision leaves Line A out as
paused, names it among the auto-paused targets, and rings the others.
"""

from __future__ import annotations

from tests.e2e.conftest import TOKEN


def test_an_auto_paused_target_is_left_out_as_paused(fresh_pg):
    line_a = fresh_pg.value("SELECT id FROM network_target WHERE key = 'pipes-a'")
    others = {row[0] for row in fresh_pg.sql("SELECT id FROM network_target WHERE key IN ('pipes-b', 'pipes-c')")}
    fresh_pg.sql("UPDATE network_targetstate SET paused_until = now() + interval '1 hour', "
                 "pause_reason = '3 missed calls' WHERE target_id = %s", [line_a])
    [sid] = fresh_pg.probe("place_calls", count=1, token=TOKEN)
    decision = fresh_pg.value("SELECT decision FROM calls_call WHERE call_sid = %s", [sid])
    assert decision["excluded"] == {"paused": [line_a]}
    assert decision["auto_paused"] == [line_a]
    assert set(decision["ring"]) == others
