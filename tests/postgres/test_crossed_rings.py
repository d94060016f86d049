"""On PostgreSQL with SQL counters, two unanswered legs' Dial actions whose rings cross don't deadlock.

Given the e2e plumbing campaign, a call ringing Line A that goes on to Line B (a new caller from 78701) and a
call ringing Line B that goes on to Line A (a caller who reached Line B yesterday: sticky), when both first
legs go unanswered and both Dial actions are handled at the same moment, each having taken its first lock
before it asks for the other's, whichever goes first, then neither waits for the other in a cycle: no
transaction is stopped by PostgreSQL and run again, each call rings its second line, and each line holds the
one slot of the call now ringing it.

Until the fix each Dial action gave its line's slot back (an UPDATE of that target's ``network_targetstate``
row) and then waited for the other's row to take its next slot: a deadlock, one of them stopped by PostgreSQL
after a second and run again. The Dial action now locks the rows of the target it gives back and of the
targets it may take next in one statement, in target order, before writing (docs/database.md, the order of
the locks).

The same with Redis counters on nodes that can't reach Redis (every limit counted in the database): each Dial
action marked the line it gave back (its state row), then took the next line's limits lock and marked that
one, in ring order: the same deadlock. It now takes its ring's limits locks first, exclusive, in target order,
then their rows: a target's limits lock before its row, as a reservation through Redis takes them.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("first", ["ab", "ba"], ids=["A-then-B first", "B-then-A first"])
def test_two_dial_actions_whose_rings_cross_dont_deadlock(fresh_pg, first):
    found = fresh_pg.probe("crossed_rings", first=first)
    assert found["in_vain"] == [], found  # the two met as meant
    assert (found["calls"]["ab"]["ring"][:2], found["calls"]["ba"]["ring"][:2]) == (
        ["pipes-a", "pipes-b"], ["pipes-b", "pipes-a"]), found
    assert found["retried"] == [], found
    assert found["raised"] == {}, found
    assert found["calls"]["ab"] == {**found["calls"]["ab"], "lines": ["pipes-a", "pipes-b"],
                                    "results": ["no-answer", "ringing"], "slots_held": [False, True]}, found
    assert found["calls"]["ba"] == {**found["calls"]["ba"], "lines": ["pipes-b", "pipes-a"],
                                    "results": ["no-answer", "ringing"], "slots_held": [False, True]}, found
    assert found["active"] == {"pipes-a": 1, "pipes-b": 1}, found


@pytest.mark.parametrize("first", ["ab", "ba"], ids=["A-then-B first", "B-then-A first"])
def test_two_dial_actions_whose_rings_cross_dont_deadlock_when_counted_without_redis(fresh_pg, first):
    # Redis counters, Redis unreachable: each Dial action marks the line it gives back (its state row) and
    # takes the next one's limits lock, then marks it (docs/database.md, the order of the locks).
    found = fresh_pg.probe("crossed_rings", first=first, counters="database")
    assert found["in_vain"] == [], found  # the two met as meant
    assert (found["calls"]["ab"]["ring"][:2], found["calls"]["ba"]["ring"][:2]) == (
        ["pipes-a", "pipes-b"], ["pipes-b", "pipes-a"]), found
    assert found["retried"] == [], found
    assert found["raised"] == {}, found
    for label, lines in (("ab", ["pipes-a", "pipes-b"]), ("ba", ["pipes-b", "pipes-a"])):
        assert found["calls"][label] == {**found["calls"][label], "limits": "database", "lines": lines,
                                         "results": ["no-answer", "ringing"], "slots_held": [False, True]}, found
    assert found["marked"] == ["pipes-a", "pipes-b"], found
