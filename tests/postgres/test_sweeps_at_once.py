"""On PostgreSQL, two nodes sweeping at the same moment close each abandoned call and keep each kept status once.

Given three calls whose final status never came (two ringing a plumber and holding its slot, one at the IVR)
and two final statuses kept for an inbound webhook that never came, seven hours on, when two nodes' sweeps
run at the same moment (SQL counters; the first holding open the transaction of the first call it closes
until the second waits for that call's lock, having read the list before), then every call is closed once
and every kept status recorded once, each reported by one node only, no slot is left held and no kept
status is left behind. Until the fix both nodes reported the calls they met closed (each listed, each
logged): the second found the call ended by the first and took it for one it closed.
"""

from __future__ import annotations

from tests.e2e.conftest import TOKEN


def test_two_nodes_sweeping_at_once_close_and_record_each_call_once(fresh_pg):
    found = fresh_pg.probe("sweeps_at_once", token=TOKEN)
    first, second = found["reported"]["first"], found["reported"]["second"]
    assert sorted(first["closed"] + second["closed"]) == sorted(found["abandoned"]), found["reported"]
    assert sorted(first["recorded"] + second["recorded"]) == sorted(found["kept"]), found["reported"]
    assert found["calls"] == sorted([sid, 1, "ended", "not_billable"] for sid in found["abandoned"] + found["kept"])
    assert sorted(found["events"]) == sorted([[sid, "abandoned", 1] for sid in found["abandoned"]]
                                             + [[sid, "status_only", 1] for sid in found["kept"]])
    assert (found["slots_held"], found["active_calls"], found["kept_left"]) == (0, 0, 0)
