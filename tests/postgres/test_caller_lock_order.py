"""A replayed late bridge of a caller's later call and the live final status of their earlier call, at the
same moment on PostgreSQL. The final status holds the caller's lock and, judging the later call again,
writes its row; the replay took that row (FOR UPDATE) before asking for the caller's lock, and the two
waited for each other: a deadlock, the replay pass stopped as in an outage. The replay now takes the
caller's lock before the row (``replay._lock_for_replay``), whichever of the two comes first."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("live_first", [False, True], ids=["replay first", "final status first"])
def test_replay_and_final_status_of_one_caller_dont_deadlock(fresh_pg, live_first):
    found = fresh_pg.probe("replayed_late_bridge_beside_a_verdict", live_first=live_first)
    assert found["raised"] == {}, found
    assert found["retried"] == []
    # The earlier call is billable; the later one, bridged after all, is its duplicate.
    assert found["calls"]["earlier"] == ["billable", []]
    assert found["calls"]["later"][0] == "not_billable" and "duplicate" in found["calls"]["later"][1]
