"""On PostgreSQL with SQL counters, a late no-answer and a no-answer of one line handled at once don't deadlock.

Given the e2e missed-calls campaign (2 misses within an hour pause a line) and its Sleepy line with one miss
already, a call whose final status came first (its leg closed canceled, its slot given back) and another
call still ringing Sleepy, when the first call's late no-answer (missed-call protection: the misses lock,
then the pause written on Sleepy's state row) and the second call's no-answer (its slot given back: an
UPDATE of Sleepy's state row, then the misses lock) are handled at the same time, then neither waits for
the other in a cycle: no webhook ends in a deadlock and is run again, and Sleepy is paused.
"""

from __future__ import annotations


def test_a_late_miss_and_a_miss_of_one_line_at_once_dont_deadlock(fresh_pg):
    found = fresh_pg.probe("late_miss_beside_a_miss")
    assert found["pause_reason"].startswith("missed ")
    assert found["retried"] == []
