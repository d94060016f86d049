"""On PostgreSQL with Redis counters, no-answers handled at the same time still trigger missed-call protection.

Given the e2e missed-calls campaign (2 misses within an hour pause a line for 30 min) and two calls
ringing its Sleepy line, when both no-answers are handled at the same time (the first holding its
transaction open after its work, as two workers or nodes would), then the second counts both misses and
pauses the line, and a third call is not put through to it. With Redis counters nothing else in those
two transactions touches a row they share: without a lock each counted only its own miss.
"""

from __future__ import annotations

import uuid


def test_two_simultaneous_misses_pause_the_line(fresh_pg, redis_server):
    found = fresh_pg.probe("misses_at_once", redis_url=redis_server.url, redis_prefix=f"cb-{uuid.uuid4().hex}:")
    sleepy = found["sleepy"]
    assert [rang[0] for rang in found["rang"][:2]] == [sleepy, sleepy]
    assert found["pause_reason"].startswith("missed 2 calls within 60 min")
    assert sleepy not in found["rang"][2]
