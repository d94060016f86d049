"""On PostgreSQL, one caller's two calls ending at the same time are judged as if one after the other.

Given a caller's two calls on the e2e plumbing campaign (duplicate window 1 day), a minute apart, each
bridged 120 s on a line of its own (so no row they share makes them take turns), when both final statuses
are handled at the same time (one holding its transaction open after its work, as two workers or nodes
would), then whichever is judged first the earlier call is billable and charged, the later one is a
duplicate and charged nothing: as on SQLite, and as when they end one after the other. Without a lock
per caller each transaction judged its call without the other's verdict, and both were billed.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("first", ["earlier", "later"])
def test_the_later_call_is_a_duplicate_whichever_is_judged_first(fresh_pg, first):
    found = fresh_pg.probe("verdicts_at_once", first=first)
    assert (found["earlier"]["line"], found["later"]["line"]) == ("pipes-a", "pipes-c")
    assert (found["earlier"]["verdict"], found["earlier"]["reasons"], found["earlier"]["charged"]) == (
        "billable", [], "40.00")
    assert (found["later"]["verdict"], found["later"]["reasons"], found["later"]["charged"]) == (
        "not_billable", ["duplicate"], "0.00")
