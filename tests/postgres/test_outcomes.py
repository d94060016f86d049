"""On PostgreSQL, two staff members saving one call's outcome in the admin at the same moment.

Given a booked call, when one staff member clears its outcome while another records its job value, the
clearing form's copy of the call read before the other's save commits and written after it, then the call
keeps the other's job value and the time an outcome was recorded. Until 2026-12-07 whether the outcome was
cleared was judged from the form's copy (no job value): the call kept the job value with no time it was
recorded (tests/calls/test_admin.py: the same interleaving on SQLite, made deterministic by hand).
"""

from __future__ import annotations


def test_an_outcome_cleared_beside_a_job_value_saved_keeps_the_time_it_was_recorded(fresh_pg):
    found = fresh_pg.probe("outcomes_at_once")

    assert found["in_vain"] == [], found  # the two met as meant
    assert found["codes"] == {"clearing": 302, "valuing": 302}, found  # both saved
    assert (found["outcome"], found["job_value"], found["note"]) == ("", "350.00", ""), found
    assert found["recorded"] is True, found
