"""On PostgreSQL, a call's Dial action and final status handled at the same time end as if in turn.

A carrier sends both when a call ends (the caller hangs up while the buyer talks, or while a line rings),
with no ordering guarantee; two workers (or nodes) take them at once. Given one call ringing Line A of the
e2e plumbing campaign, when its Dial action and its final status run in two transactions at the same time
(the first one holding its transaction open after its work), then the call ends exactly as when they
come one after the other: ended, the buyer's talk counted and billed once, no attempt left holding a
slot, every target's concurrency count back at zero.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("first", ["dial", "status"])
def test_a_bridged_call_is_billed_whichever_callback_takes_the_call_first(fresh_pg, first):
    found = fresh_pg.probe("racing_callbacks", first=first, bridged=True)
    assert (found["stage"], found["verdict"], found["reasons"], found["talk"]) == ("ended", "billable", [], 120)
    assert found["attempts"] == [[1, "bridged", False]]
    assert (found["active_calls"], found["charges"]) == (0, 1)


@pytest.mark.parametrize("first, attempts", [
    ("dial", [[1, "no-answer", False], [2, "canceled", False]]),  # Line B dialled, then the caller was gone
    # The call was over: the late Dial action rings no one, and records what Line A did.
    ("status", [[1, "no-answer", False]]),
])
def test_an_unanswered_line_ends_as_in_turn_with_no_slot_held(fresh_pg, first, attempts):
    found = fresh_pg.probe("racing_callbacks", first=first, bridged=False)
    assert (found["stage"], found["verdict"], found["reasons"][:1]) == ("ended", "not_billable", ["not_connected"])
    assert found["attempts"] == attempts
    assert found["active_calls"] == 0
