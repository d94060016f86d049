"""On PostgreSQL with SQL counters, an inbound call refused by a target whose cap was just reached and a Dial
action whose ring crosses its own don't deadlock.

Given the e2e plumbing campaign, Line B with an hourly cap, a call ringing Line A (its ring: A, B, C) and a
new call from a caller who reached Line B yesterday (sticky: its ring B, A, C, against target order), when
another call takes Line B's last unit of the hour between the new call's routing and its reservation (the
reservation refused for the cap) and the first call's leg on Line A goes unanswered, its Dial action handled
while the inbound webhook holds what the refused reservation left and before it goes on to Line A, then
neither waits for the other in a cycle: no transaction is stopped by PostgreSQL and run again, the new call
rings Line A, the first call rings Line C (Line B refused for its cap), and Line B counts no more units than
its cap.

Until the fix the refused reservation kept Line B's rows locked until the commit (its slot taken then given
back on the state row, the usage row locked by ``INSERT … ON CONFLICT DO UPDATE … WHERE`` although its
``WHERE`` was false) while the inbound webhook waited for Line A's row, held by the Dial action, which had
locked its ring's rows in target order (A, then B): a deadlock, one of them stopped by PostgreSQL after a
second and run again. A reservation that a lock out of target order may follow (a target after it in the
ring comes before it in target order) is now taken under a savepoint, rolled back when it is refused, which
releases those rows (docs/database.md, the order of the locks).

The same with Redis counters on nodes that can't reach Redis (every limit counted in the database, the unit
taken elsewhere a call attempt on Line B): the refused reservation kept Line B's limits lock (exclusive) and
its row (the mark) while the webhook waited for Line A's limits lock, held by the Dial action, which takes its
ring's limits locks in target order. It is taken under the same savepoint there. And where the inbound
webhook's node tries Redis again first (its last failure long enough ago) and Redis fails again, the try took
Line B's limits lock shared, then the count in the database exclusive, and the refusal kept both: the same
deadlock with a Dial action of a node counting in the database at once, until that reservation was taken
under the savepoint too. So was, last, a reservation refused through a Redis that answers (the inbound
webhook's node reaching Redis, the Dial action's not): it kept Line B's limits lock, shared, until the commit,
and the Dial action waited for it exclusive while holding Line A's, which the webhook asked for next.
"""

from __future__ import annotations

import uuid

import pytest


@pytest.mark.parametrize("counters", ["sql", "database", "tried", "redis"],
                         ids=["SQL counters", "counted without Redis", "Redis tried first, then counted without",
                              "refused through Redis, the Dial action counted without"])
def test_an_inbound_call_refused_for_a_cap_and_a_crossing_dial_action_dont_deadlock(fresh_pg, counters, request):
    redis = {}
    if counters == "redis":
        redis = {"redis_url": request.getfixturevalue("redis_server").url, "redis_prefix": f"cb-{uuid.uuid4().hex}:"}
    found = fresh_pg.probe("refused_then_crossed", counters=counters, **redis)
    assert found["in_vain"] == [], found  # the two met as meant
    assert found["dial_waited"], found  # the Dial action waited for a row the inbound webhook held
    assert (found["calls"]["ba"]["ring"][:2], found["calls"]["ba"]["against_target_order"]) == (
        ["pipes-b", "pipes-a"], True), found
    assert found["retried"] == [], found
    assert found["raised"] == {}, found
    assert found["calls"]["ba"] == {**found["calls"]["ba"], "refused_at_dial": [["pipes-b", "hourly_cap"]],
                                    "lines": ["pipes-a"], "results": ["ringing"], "slots_held": [True]}, found
    assert found["calls"]["ab"] == {**found["calls"]["ab"], "refused_at_dial": [["pipes-b", "hourly_cap"]],
                                    "lines": ["pipes-a", "pipes-c"], "results": ["no-answer", "ringing"],
                                    "slots_held": [False, True]}, found
    if counters == "sql":
        assert found["active"] == {"pipes-a": 1, "pipes-b": 0, "pipes-c": 1}, found
        assert found["line_b_hour_units"] == [2], found
    elif counters == "redis":  # the Dial action's node counted in the database, the inbound webhook's in Redis
        assert (found["calls"]["ab"]["limits"], found["calls"]["ba"]["limits"]) == ("database", None), found
    else:  # the slots are the attempts holding one (above); the state rows' counters are not used
        assert (found["calls"]["ab"]["limits"], found["calls"]["ba"]["limits"]) == ("database", "database"), found
    # Redis tried first: the refusal's mark rolled back with the savepoint, Redis (whose command may have run)
    # counts Line B again at this node's next read instead.
    assert found["recount_later"] == (["pipes-b"] if counters == "tried" else []), found


@pytest.mark.parametrize("reaching", [False, True], ids=["Redis tried first, then counted without",
                                                         "refused through Redis"])
def test_a_dial_action_refused_on_a_node_trying_redis_again_and_a_crossing_one_dont_deadlock(fresh_pg, reaching,
                                                                                              request):
    """Redis counters, Redis unreachable: a node that tries Redis again before each operation (its last failure
    long enough ago) took no limits locks in target order for its Dial action (only a node counting in the
    database at once did). Its reservation of the next line, refused in the database for a cap just reached,
    kept that line's limits lock while it took the line after, before it in target order: Line B then Line A,
    beside another node's Dial action locking A then B, a deadlock. Such a node (its outage not over) now
    takes its ring's limits locks and rows in target order first, as a node counting in the database does.

    The same where that node reaches Redis (``reaching``): it locks nothing first, and its reservation of Line B
    refused through Redis kept Line B's limits lock, shared, while it took Line A's, the same deadlock. That
    reservation now lets go of it (a savepoint rolled back), as the inbound webhook's does."""
    redis = {}
    if reaching:
        redis = {"redis_url": request.getfixturevalue("redis_server").url, "redis_prefix": f"cb-{uuid.uuid4().hex}:"}
    found = fresh_pg.probe("refused_in_a_dial_action_trying_redis", **redis)
    assert found["in_vain"] == [], found  # the two met as meant
    assert found["counting_waited"], found
    assert (found["calls"]["x"]["ring"], found["calls"]["y"]["ring"][:2]) == (
        ["pipes-c", "pipes-b", "pipes-a"], ["pipes-b", "pipes-a"]), found
    assert found["retried"] == [], found
    assert found["raised"] == {}, found
    assert found["calls"]["x"] == {**found["calls"]["x"], "refused_at_dial": [["pipes-b", "hourly_cap"]],
                                   "limits": None if reaching else "database", "lines": ["pipes-c", "pipes-a"],
                                   "results": ["no-answer", "ringing"], "slots_held": [False, True]}, found
    assert found["calls"]["y"] == {**found["calls"]["y"], "lines": ["pipes-b", "pipes-a"],
                                   "results": ["no-answer", "ringing"], "slots_held": [False, True]}, found


def test_a_reservation_refused_after_rebuilding_the_counters_keeps_the_rebuild(fresh_pg, redis_server):
    """A reservation under the savepoint that found its line's counters unknown in Redis rebuilt them there,
    clearing the line's mark (counted without Redis), then was refused and rolled back: the mark came back,
    so the next read forgot the counters again and the next such reservation rebuilt them again (a quarter
    of a second's wait and a count of the attempts, call after call, while the line stayed full)."""
    found = fresh_pg.probe("refused_after_a_rebuild", redis_url=redis_server.url,
                           redis_prefix=f"cb-{uuid.uuid4().hex}:")
    assert found["refused"] == ["hourly_cap", "hourly_cap"], found
    assert found["marked"] == [False, False], found
    assert found["rebuilds"] == 1, found
