"""``ops/repeated_failure.py``: a failure that repeats is logged once with its traceback, then once a
minute with a count, then once when it works again (formerly: a traceback per failure, ten a second)."""

from __future__ import annotations

import logging

from callbroker.ops.repeated_failure import RepeatedFailure

log = logging.getLogger("callbroker.test.repeated")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog) -> list[tuple[str, str, bool]]:
    return [(r.levelname, r.getMessage(), bool(r.exc_info)) for r in caplog.records if r.name == log.name]


def test_the_first_failure_with_its_traceback_then_a_line_a_minute_then_the_recovery(caplog):
    clock = Clock()
    failures = RepeatedFailure(log, "SQLite checkpoint of /var/db", clock=clock)
    with caplog.at_level(logging.INFO, logger=log.name):
        for _ in range(300):  # a minute of passes every 0.2 s
            failures.failed(OSError(28, "database or disk is full"))
            clock.now += 0.2
        failures.failed(OSError(28, "database or disk is full"))  # 60 s after the first line
        clock.now += 30
        failures.succeeded()
        failures.succeeded()  # working on: nothing more to say

    said = lines(caplog)
    assert [(level, traceback) for level, _, traceback in said] == [("ERROR", True), ("ERROR", False),
                                                                   ("WARNING", False)]
    assert said[0][1].startswith("SQLite checkpoint of /var/db failed: [Errno 28] database or disk is full")
    assert said[1][1].startswith("SQLite checkpoint of /var/db still failing: 300 more failures in 60 s "
                                 "(301 since it started 60 s ago); latest: OSError")
    assert said[2][1] == "SQLite checkpoint of /var/db works again, after 301 failures over 90 s"


def test_a_new_streak_after_a_recovery_is_told_in_full_again(caplog):
    failures = RepeatedFailure(log, "writing metrics", clock=Clock(), level=logging.WARNING)
    with caplog.at_level(logging.INFO, logger=log.name):
        failures.failed(OSError("full"))
        failures.succeeded()
        failures.failed(OSError("full again"))
    assert [(level, traceback) for level, _, traceback in lines(caplog)] == [
        ("WARNING", True), ("WARNING", False), ("WARNING", True)]
